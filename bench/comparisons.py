"""Does a method beat the controls? Paired tests of every contender against ``random``
and ``loudest``, per column, on the same clips.

A leaderboard mean says how an explainer scored; it does not say whether it scored
better than chance or than the naive "the classifier heard what is loud" explanation on
the *same* clips. This module answers that with the suite's one paired test
(:mod:`l2i_bench.stats`, one-sided Wilcoxon signed-rank): for every contender, every
directed column that keeps per-row values, and each control present (``random``,
``loudest``), the rows both explained (test clips, or the condition sets' mixtures for
the ground-truth columns; keyed by seed, fold, set, clip and class, pooled over folds)
are paired and tested for "the contender is better". The controls' extra mixture rows
of the other columns (kept for the validity check) have no contender partner and drop
out of the pairing. The verdict is
``beats`` when p < :data:`l2i_bench.validity.ALPHA`, otherwise ``does not beat``; and
``column_validity`` copies the column's own verdict from ``metric_validity.csv``, since
beating a control on a column that cannot tell truth from falsehood says nothing.

Ours (the reporting, not the test). ``comparisons.csv`` sits beside each leaderboard.
Cost: one signed-rank test per contender, column and control: milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from l2i_bench.validity import ALPHA, CLEAN, MIXTURES, paired, rows_of, summary

CONTROLS = ("random", "loudest")
COLUMNS = [
    "explainer",
    "column",
    "direction",
    "control",
    "n",
    "explainer_value",
    "control_value",
    "median_difference",
    "rank_biserial",
    "p",
    "verdict",
    "column_validity",
]


def versus_controls(cells: Sequence, validity: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per contender, directed column with row values, and control present."""
    present = {c.explainer for c in cells}
    controls = [c for c in CONTROLS if c in present]
    contenders = sorted({c.explainer for c in cells if not c.reference})
    directions: dict[str, str] = {}
    for cell in cells:
        for score in cell.scores:
            if score.direction in ("higher", "lower") and score.meta_evaluated:
                directions.setdefault(score.column, score.direction)
    verdicts = _column_verdicts(validity)
    records = []
    for column, direction in directions.items():
        higher = direction == "higher"
        control_rows = {c: _all_rows(cells, c, column) for c in controls}
        for name in contenders:
            rows, how = _all_rows(cells, name, column)
            if not rows:
                continue
            for control in controls:
                other, _ = control_rows[control]
                keys = sorted(set(rows) & set(other))
                if not keys:
                    continue
                test = paired(rows, other, higher)
                records.append(
                    {
                        "explainer": name,
                        "column": column,
                        "direction": direction,
                        "control": control,
                        "n": test.n,
                        "explainer_value": summary({k: rows[k] for k in keys}, how),
                        "control_value": summary({k: other[k] for k in keys}, how),
                        "median_difference": test.median_difference,
                        "rank_biserial": test.rank_biserial,
                        "p": test.p_value,
                        "verdict": "beats" if test.p_value < ALPHA else "does not beat",
                        "column_validity": verdicts.get(column, "untestable"),
                    }
                )
    return pd.DataFrame(records, columns=COLUMNS)


def _all_rows(cells: Sequence, explainer: str, column: str) -> tuple[dict[str, float], str]:
    """Every row value of a column (test rows; the condition sets' rows for the
    ground-truth columns), keyed so that the same clip and class pair up."""
    clean, how = rows_of(cells, explainer, column, CLEAN)
    mixtures, how_mixed = rows_of(cells, explainer, column, MIXTURES)
    return {**clean, **mixtures}, how if clean else how_mixed


def _column_verdicts(validity: pd.DataFrame | None) -> dict[str, str]:
    if validity is None or validity.empty:
        return {}
    rows = validity[validity["verdict_rows"].astype(bool)]
    return dict(zip(rows["column"], rows["verdict"], strict=True))
