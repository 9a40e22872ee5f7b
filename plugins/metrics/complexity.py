"""Complexity of an explanation: how concentrated it is (Quantus Sparseness/Complexity,
as the L-MAC evaluation uses them). Gini index of the max-normalised absolute values
(Quantus defaults): 0 = flat, towards 1 = a few bins; entropy (nats) of the normalised
absolute values: low = concentrated. Both are scale-free, averaged over rows; all-zero
rows are left out, as SpeechBrain does. Each row's value is kept (row values), so the
intervals and paired tests rest on explained rows.

The relevance columns are descriptive only (direction NEUTRAL): each explainer scores
its own units (4 to 336 of them: NMF components, attributes, B4 cells), and both
statistics depend on how many units there are (the entropy's maximum is ``ln d``), so
a higher or lower value is not better across explainers."""

from __future__ import annotations

import torch

from l2i_bench import scores
from l2i_bench.types import Column, Direction, Evaluation, Metric, RowValues

from ._common import row_keys


def _nonzero_rows(fn, values: torch.Tensor, keys: list[str]) -> RowValues:
    """``fn`` per row, all-zero rows left out (NaN, dropped with their key)."""
    flat = values.detach().flatten(1)
    per_row = fn(flat).double()
    per_row[flat.abs().sum(dim=1) == 0] = float("nan")
    return RowValues.of(keys, per_row)


class MaskComplexity(Metric):
    name = "mask_complexity"
    version = "2"  # per-row values kept
    description = "Gini sparseness and entropy of the time-frequency mask"
    reference = "Chalasani et al. 2020 (Sparseness), Bhatt et al. 2020 (Complexity); Quantus"
    columns = (
        Column(
            "mask_gini", Direction.HIGHER, "index", "Gini of |M|/max|M|+1e-7 over F x T bins, mean"
        ),
        Column("mask_entropy", Direction.LOWER, "nats", "entropy of |M|/sum|M| over F x T, mean"),
    )

    def compute(self, evaluation: Evaluation) -> dict[str, RowValues]:
        mask, keys = evaluation.explanations.mask, row_keys(evaluation)
        return {
            "mask_gini": _nonzero_rows(scores.gini_index, mask, keys),
            "mask_entropy": _nonzero_rows(scores.entropy, mask, keys),
        }


class RelevanceComplexity(Metric):
    name = "relevance_complexity"
    version = "2"  # per-row values kept
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

    def compute(self, evaluation: Evaluation) -> dict[str, RowValues]:
        rel, keys = evaluation.explanations.relevance, row_keys(evaluation)
        return {
            "relevance_gini": _nonzero_rows(scores.gini_index, rel, keys),
            "relevance_entropy": _nonzero_rows(scores.entropy, rel, keys),
        }
