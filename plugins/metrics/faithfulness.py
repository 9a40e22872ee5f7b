"""Faithfulness (FF): does removing what the explanation points at hurt the decision?

The masked-out input ``(1 - M) * X`` (input phase, resynthesised, features recomputed)
goes through the classifier, and the drop of the explained class's probability and
logit is summarised by its median over explained rows, as the L2I code reports it
(L2I notes §5.2). The L2I code removes NMF components in the log-magnitude domain;
here every explainer is scored on its linear-magnitude mask, so the number is the same
definition for all of them.

The control removes a random region of equal size: each row's own mask values moved
to random bins (:func:`l2i_bench.scores.shuffled_masks`), so the number of masked bins,
the mask histogram and the total mask energy match the explanation exactly, and only
the placement differs. The ``_minus_random`` columns are the difference of the two
medians: positive when the explanation removes more than chance does.
"""

from __future__ import annotations

from l2i_bench import scores
from l2i_bench.types import Column, Direction, Evaluation, Metric

from . import _common

PROB = "classifier.probabilities (softmax multiclass / sigmoid multilabel)"


class Faithfulness(Metric):
    name = "faithfulness"
    description = "Median drop of the explained class when the explanation is removed"
    reference = "Parekh et al. 2022 (L2I) code faithfulness_eval; L2I notes §5.2"
    columns = (
        Column(
            "ff_prob_drop",
            Direction.HIGHER,
            "probability",
            f"median of p_c(X) - p_c((1-M)X) over explained rows, {PROB}",
        ),
        Column(
            "ff_logit_drop",
            Direction.HIGHER,
            "logit",
            "median of f_c(X) - f_c((1-M)X) over explained rows",
        ),
        Column(
            "ff_random_prob_drop",
            Direction.NEUTRAL,
            "probability",
            "as ff_prob_drop with each row's mask values shuffled over random bins",
        ),
        Column(
            "ff_random_logit_drop",
            Direction.NEUTRAL,
            "logit",
            "as ff_logit_drop with each row's mask values shuffled over random bins",
        ),
        Column(
            "ff_prob_drop_minus_random",
            Direction.HIGHER,
            "probability",
            "ff_prob_drop - ff_random_prob_drop (difference of medians)",
        ),
        Column(
            "ff_logit_drop_minus_random",
            Direction.HIGHER,
            "logit",
            "ff_logit_drop - ff_random_logit_drop (difference of medians)",
        ),
    )

    def compute(self, evaluation: Evaluation) -> dict[str, float]:
        ex = evaluation.explanations
        original = _common.original_logits(evaluation)
        p_orig = _common.explained(_common.probabilities(evaluation, original), ex.classes)
        f_orig = _common.explained(original, ex.classes)
        random_mask = scores.shuffled_masks(ex.mask, evaluation.generator("faithfulness"))
        out: dict[str, float] = {}
        for prefix, mask in (("ff", ex.mask), ("ff_random", random_mask)):
            logits = _common.masked_logits(evaluation, 1.0 - mask, ex.rows, desc=prefix)
            p = _common.explained(_common.probabilities(evaluation, logits), ex.classes)
            out[f"{prefix}_prob_drop"] = scores.median_drop(p_orig, p)
            out[f"{prefix}_logit_drop"] = scores.median_drop(
                f_orig, _common.explained(logits, ex.classes)
            )
        for unit in ("prob", "logit"):
            out[f"ff_{unit}_drop_minus_random"] = (
                out[f"ff_{unit}_drop"] - out[f"ff_random_{unit}_drop"]
            )
        return out
