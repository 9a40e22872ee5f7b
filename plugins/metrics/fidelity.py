"""Fidelity of a surrogate model to the classifier it explains (L2I notes §5.1).

Top-k fidelity keeps its per-clip hits (1 or 0) as row values, so its interval and
paired tests rest on clips. The AUPRC columns are set-level (a precision-recall curve
over all clips and classes has no per-clip share): they carry no row values, and their
uncertainty is the spread over folds and seeds only.

Only explainers with a surrogate (L2I's interpreter, FLINT, VIBI) have predictions of
their own to compare; the others get empty cells with the reason.
"""

from __future__ import annotations

import torch

from l2i_bench import scores
from l2i_bench.types import Column, Direction, Evaluation, Metric, RowValues, Task

from ._common import clip_keys

NO_SURROGATE = "explainer has no surrogate model"


class _SurrogateMetric(Metric):
    def not_applicable(self, evaluation: Evaluation) -> str | None:
        reason = super().not_applicable(evaluation)
        if reason is None and (
            not evaluation.explainer_has_surrogate or evaluation.surrogate_logits is None
        ):
            return NO_SURROGATE
        return reason


class FidelityTopK(_SurrogateMetric):
    """Does the surrogate agree with the classifier's decision on the test clips?"""

    name = "fidelity_topk"
    version = "2"  # per-clip hits kept as row values
    description = "Surrogate's top-k contains the classifier's top-1 (multiclass)"
    reference = "Parekh et al. 2022 (L2I) code: test()/analyze() top-k fidelity"
    tasks = frozenset({Task.MULTICLASS})
    columns = tuple(
        Column(
            f"fidelity_top{k}",
            Direction.HIGHER,
            "fraction",
            f"share of test clips whose classifier argmax is in the surrogate's top-{k} logits",
        )
        for k in (1, 3, 5)
    )

    def compute(self, evaluation: Evaluation) -> dict[str, RowValues]:
        ref, cand = evaluation.classifier_logits, evaluation.surrogate_logits
        keys = clip_keys(evaluation)
        return {
            f"fidelity_top{k}": RowValues.of(keys, scores.top_k_agreement_rows(ref, cand, k))
            for k in (1, 3, 5)
        }


class FidelityAUPRC(_SurrogateMetric):
    """Surrogate scores ranked against the classifier's decisions, in both published
    AUPRC definitions (they differ; see :mod:`l2i_bench.scores`).

    A class the classifier never decides on the test clips has no positive target: both
    macro columns leave it out (a surrogate cannot be scored on recalling nothing), so
    the two macros average over the same classes; its surrogate scores still count as
    false positives in the micro columns. See :func:`l2i_bench.scores.dcase_auprc`.
    """

    name = "fidelity_auprc"
    description = "AUPRC of the surrogate's sigmoid scores against the classifier's decisions"
    reference = (
        "DCASE 2020 Task 5 metrics.py (all unique thresholds); "
        "Parekh et al. 2022 (L2I) code calc_PRC_metrics (11 fixed thresholds)"
    )
    tasks = frozenset({Task.MULTILABEL})
    _target = "targets: classifier sigmoid > its decision thresholds (0.5 if none)"
    _skip = "classes the classifier never decides are left out"
    columns = (
        Column(
            "fidelity_auprc_macro_dcase",
            Direction.HIGHER,
            "AUPRC",
            f"DCASE 2020 T5, unique thresholds >= 0.01 and 1.0, class mean ({_skip}); " + _target,
        ),
        Column(
            "fidelity_auprc_micro_dcase",
            Direction.HIGHER,
            "AUPRC",
            f"DCASE 2020 T5, unique thresholds >= 0.01 and 1.0, pooled classes; {_target}",
        ),
        Column(
            "fidelity_auprc_macro_fixed11",
            Direction.HIGHER,
            "AUPRC",
            f"L2I code, 11 thresholds 0.95..0.05, class mean ({_skip}); {_target}",
        ),
        Column(
            "fidelity_auprc_micro_fixed11",
            Direction.HIGHER,
            "AUPRC",
            f"L2I code, 11 thresholds 0.95..0.05, pooled classes; {_target}",
        ),
    )

    def compute(self, evaluation: Evaluation) -> dict[str, float]:
        targets = scores.classifier_decisions(
            evaluation.classifier_logits, evaluation.task, evaluation.decision_thresholds
        ).float()
        surrogate = torch.sigmoid(evaluation.surrogate_logits.float())
        return {
            f"fidelity_auprc_{avg}_{kind}": fn(surrogate, targets, avg)
            for kind, fn in (("dcase", scores.dcase_auprc), ("fixed11", scores.fixed11_auprc))
            for avg in ("macro", "micro")
        }
