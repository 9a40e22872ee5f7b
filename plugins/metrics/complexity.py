"""Complexity of an explanation: how concentrated it is (Quantus Sparseness/Complexity,
as the L-MAC evaluation uses them). Gini index of the max-normalised absolute values
(Quantus defaults): 0 = flat, towards 1 = a few bins; entropy (nats) of the normalised
absolute values: low = concentrated. Both are scale-free, averaged over rows; all-zero
rows are left out, as SpeechBrain does.

The relevance columns are descriptive only (direction NEUTRAL): each explainer scores
its own units (4 to 336 of them: NMF components, attributes, B4 cells), and both
statistics depend on how many units there are (the entropy's maximum is ``ln d``), so
a higher or lower value is not better across explainers."""

from __future__ import annotations

import torch

from l2i_bench import scores
from l2i_bench.types import Column, Direction, Evaluation, Metric


def _mean_nonzero(fn, values: torch.Tensor) -> float:
    flat = values.detach().flatten(1)
    keep = flat.abs().sum(dim=1) > 0
    if not keep.any():
        return float("nan")
    return float(fn(flat[keep]).mean())


class MaskComplexity(Metric):
    name = "mask_complexity"
    description = "Gini sparseness and entropy of the time-frequency mask"
    reference = "Chalasani et al. 2020 (Sparseness), Bhatt et al. 2020 (Complexity); Quantus"
    columns = (
        Column(
            "mask_gini", Direction.HIGHER, "index", "Gini of |M|/max|M|+1e-7 over F x T bins, mean"
        ),
        Column("mask_entropy", Direction.LOWER, "nats", "entropy of |M|/sum|M| over F x T, mean"),
    )

    def compute(self, evaluation: Evaluation) -> dict[str, float]:
        mask = evaluation.explanations.mask
        return {
            "mask_gini": _mean_nonzero(scores.gini_index, mask),
            "mask_entropy": _mean_nonzero(scores.entropy, mask),
        }


class RelevanceComplexity(Metric):
    name = "relevance_complexity"
    description = "Gini sparseness and entropy of the relevance over the explainer's own units"
    reference = "Chalasani et al. 2020 (Sparseness), Bhatt et al. 2020 (Complexity); Quantus"
    columns = (
        Column(
            "relevance_gini",
            Direction.NEUTRAL,
            "index",
            "Gini of |r|/max|r|+1e-7 over the explainer's own units, mean; descriptive, "
            "not ranked: units and their number (4 to 336) differ across explainers",
        ),
        Column(
            "relevance_entropy",
            Direction.NEUTRAL,
            "nats",
            "entropy of |r|/sum|r| over the explainer's own units, mean; descriptive, "
            "not ranked: units and their number (max ln d) differ across explainers",
        ),
    )

    def not_applicable(self, evaluation: Evaluation) -> str | None:
        reason = super().not_applicable(evaluation)
        if reason is None and evaluation.explanations.relevance is None:
            return "explainer returns no relevance"
        return reason

    def compute(self, evaluation: Evaluation) -> dict[str, float]:
        rel = evaluation.explanations.relevance
        return {
            "relevance_gini": _mean_nonzero(scores.gini_index, rel),
            "relevance_entropy": _mean_nonzero(scores.entropy, rel),
        }
