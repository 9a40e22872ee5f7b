"""How much of the input an explanation keeps and removes, in energy.

Most mask scores move with how much a mask keeps: keeping everything preserves the
decision, removing much energy breaks it, recall rises with coverage. Every mask cell
therefore publishes its coverage beside its scores, so a reader compares explainers at
equal coverage or knows they are not. Both numbers use the explanation's own operator
(:mod:`l2i_bench.perturb`): for ``log1p``-domain masks the kept and the removed parts do
not add up to the input, so both are stated. Cost: elementwise on the masks.
"""

from __future__ import annotations

from l2i_bench import perturb
from l2i_bench.types import Column, Direction, Evaluation, Metric, RowValues

from . import _common


class MaskCoverage(Metric):
    name = "coverage"
    description = (
        "Share of the input's energy the interpretation keeps, and the share removal takes"
    )
    reference = "l2i-bench"
    columns = (
        Column(
            "mask_coverage",
            Direction.NEUTRAL,
            "energy share",
            "sum|kept|^2 / sum|X|^2, kept by the mask-domain operator; row mean",
            meta_evaluated=False,
        ),
        Column(
            "mask_removed_energy",
            Direction.NEUTRAL,
            "energy share",
            "1 - sum|X without M|^2 / sum|X|^2, removed by the mask-domain operator; row mean",
            meta_evaluated=False,
        ),
    )

    def compute(self, evaluation: Evaluation) -> dict[str, float | RowValues]:
        ex = evaluation.explanations
        specs = _common.row_specs(evaluation)
        keys = _common.row_keys(evaluation)
        return {
            "mask_coverage": RowValues.of(keys, perturb.coverage(specs, ex.mask, ex.mask_domain)),
            "mask_removed_energy": RowValues.of(
                keys, 1.0 - perturb.remaining_share(specs, ex.mask, ex.mask_domain)
            ),
        }
