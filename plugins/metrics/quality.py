"""The classifier against ground truth, repeated on every explainer's row so that each
leaderboard shows how good the model being explained is.

Top-k accuracy keeps its per-clip hits as row values (its interval rests on clips); the
AUPRC of a multilabel classifier is set-level (no per-clip share) and has none."""

from __future__ import annotations

from l2i_bench import scores
from l2i_bench.types import Column, Direction, Evaluation, Metric, RowValues, Task

from ._common import clip_keys


class ClassifierAccuracy(Metric):
    name = "classifier_accuracy"
    version = "2"  # per-clip hits kept as row values
    description = "The explained classifier's top-k accuracy on the test clips"
    reference = "standard; L2I notes §1 (ESC-50 protocol)"
    tasks = frozenset({Task.MULTICLASS})
    columns = (
        Column(
            "classifier_accuracy",
            Direction.HIGHER,
            "fraction",
            "top-1 vs ground truth",
            meta_evaluated=False,
        ),
        Column(
            "classifier_top3_accuracy",
            Direction.HIGHER,
            "fraction",
            "label in top-3 logits",
            meta_evaluated=False,
        ),
        Column(
            "classifier_top5_accuracy",
            Direction.HIGHER,
            "fraction",
            "label in top-5 logits",
            meta_evaluated=False,
        ),
    )

    def compute(self, evaluation: Evaluation) -> dict[str, RowValues]:
        logits = evaluation.classifier_logits
        labels = evaluation.test.targets.argmax(dim=1)
        keys = clip_keys(evaluation)
        return {
            name: RowValues.of(keys, scores.top_k_accuracy_rows(logits, labels, k))
            for name, k in (
                ("classifier_accuracy", 1),
                ("classifier_top3_accuracy", 3),
                ("classifier_top5_accuracy", 5),
            )
        }


class ClassifierAUPRC(Metric):
    name = "classifier_auprc"
    description = "The explained classifier's DCASE AUPRC on the test clips"
    reference = "DCASE 2020 Task 5 metrics.py"
    tasks = frozenset({Task.MULTILABEL})
    columns = (
        Column(
            "classifier_auprc_micro_dcase",
            Direction.HIGHER,
            "AUPRC",
            "DCASE 2020 T5 micro, sigmoid probabilities vs ground truth",
            meta_evaluated=False,
        ),
        Column(
            "classifier_auprc_macro_dcase",
            Direction.HIGHER,
            "AUPRC",
            "DCASE 2020 T5 macro, sigmoid probabilities vs ground truth",
            meta_evaluated=False,
        ),
    )

    def compute(self, evaluation: Evaluation) -> dict[str, float]:
        q = scores.classifier_quality(
            evaluation.classifier_logits, evaluation.test.targets, evaluation.task
        )
        return {f"classifier_{k}": v for k, v in q.items()}
