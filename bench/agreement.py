"""Do the metrics agree on which explainer is best? Kendall's tau between rankings.

Faithfulness metrics, localisation against ground truth and the L-MAC scores each rank
the explainers; recent audio benchmarks report that such rankings often disagree, and a
reader choosing one metric should know whether the others would have told the same
story. For every pair of directed columns that claim to measure truth (not cost, not the
sanity check) and that score at least three explainers, this module ranks the ranked explainers (contenders and the controls
``random`` and ``loudest``, as in :mod:`l2i_bench.significance`) by their leaderboard
means, direction-adjusted so that "better" is "larger" on both sides, and computes
Kendall's tau-b and its two-sided p-value (:func:`l2i_bench.stats.kendall_tau`) over
the explainers both columns score. ``b_is_ground_truth`` marks pairs whose second
column is a ground-truth localisation column (``gt_*``, synth only): the rows that say
whether a metric agrees with the truth. ``both_valid`` says whether both columns passed
metric validity.

Caveat, stated in the file's README section: with 5 to 7 explainers tau takes few
values and its p-value is weak (tau = 1 over 5 items has p = 0.017); read the sign and
the size across many pairs, not one pair's p. Cost: one tau per pair of columns, well
under a second.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from l2i_bench.significance import cell_mean, directed_columns, ranked_explainers
from l2i_bench.stats import kendall_tau

GROUND_TRUTH_PREFIX = "gt_"
COLUMNS = [
    "column_a",
    "column_b",
    "b_is_ground_truth",
    "explainers",
    "tau",
    "p",
    "validity_a",
    "validity_b",
    "both_valid",
]


def agreement(cells: Sequence, validity: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per pair of truth-claiming directed columns (``agreement.csv``)."""
    names = ranked_explainers(cells)
    verdicts = {}
    if validity is not None and not validity.empty:
        rows = validity[validity["verdict_rows"].astype(bool)]
        verdicts = dict(zip(rows["column"], rows["verdict"], strict=True))
    scores: dict[str, list[float]] = {}
    for column, (direction, truth) in directed_columns(cells).items():
        if truth:
            sign = 1.0 if direction == "higher" else -1.0
            ranked = [sign * cell_mean(cells, n, column) for n in names]
            if sum(np.isfinite(ranked)) >= 3:  # fewer explainers have no ranking to compare
                scores[column] = ranked
    ordered = sorted(scores, key=lambda c: (c.startswith(GROUND_TRUTH_PREFIX), c))
    records = []
    for a, b in itertools.combinations(ordered, 2):
        tau, p, n = kendall_tau(scores[a], scores[b])
        va, vb = verdicts.get(a, "untestable"), verdicts.get(b, "untestable")
        records.append(
            {
                "column_a": a,
                "column_b": b,
                "b_is_ground_truth": b.startswith(GROUND_TRUTH_PREFIX),
                "explainers": n,
                "tau": tau,
                "p": p,
                "validity_a": va,
                "validity_b": vb,
                "both_valid": va == "pass" and vb == "pass",
            }
        )
    return pd.DataFrame(records, columns=COLUMNS)
