"""Which gaps in a column are real? Paired tests between every two ranked explainers,
Holm-corrected per column, and the tied ranks they imply.

A leaderboard prints 0.73 against 0.67; whether the gap is more than the luck of the
clips is a question about the *same* clips explained by both. For every directed column
and every pair of ranked explainers (the contenders and the controls ``random`` and
``loudest``; ``oracle`` and ``anti-oracle`` are built from the ground truth and are not
ranked), this module pairs what both scored and runs the suite's paired test
(:mod:`l2i_bench.stats`: two-sided Wilcoxon signed-rank). The paired units are the
rows behind the published numbers where the column keeps them (test clips; the
condition sets' mixtures for the ground-truth columns; keyed by seed, fold, set, clip
and class, pooled over folds and seeds), and otherwise cells (one value per fold and seed: fit time, AUPRC). The
p-values of one column form one family and are Holm-adjusted
(:func:`l2i_bench.stats.holm`); a pair is separated when its adjusted p is below
:data:`l2i_bench.stats.SIGNIFICANCE`, and the direction comes from the rank-biserial
correlation. An explainer's rank in the column is one plus the number of explainers
separated from it and better (:func:`l2i_bench.stats.tied_ranks`).

``significance.csv`` has one row per column and pair: ``versus`` is the control for
pairs with ``random`` or ``loudest`` (role ``control``), the column's best contender
(highest mean; role ``best``) for the pairs with it, and otherwise the pair's weaker
mean (role ``pair``). ``column_validity`` copies the column's verdict from
``metric_validity.csv``: separating two explainers on a column that cannot tell truth
from falsehood says nothing about truth.

Ours (the reporting and the rank rule, not the tests). Cost: one signed-rank test per
pair and column, about 20 pairs x 60 columns, well under a second.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from l2i_bench.stats import SIGNIFICANCE, holm, summarise, tied_ranks
from l2i_bench.validity import paired

CONTROLS = ("random", "loudest")
COLUMNS = [
    "column",
    "direction",
    "column_validity",
    "explainer",
    "versus",
    "role",
    "units",
    "n",
    "explainer_value",
    "versus_value",
    "median_difference",
    "rank_biserial",
    "p",
    "p_holm",
    "verdict",
    "explainer_rank",
    "versus_rank",
]


def ranked_explainers(cells: Sequence) -> list[str]:
    """The contenders, then the controls present: who gets a rank."""
    present = {c.explainer for c in cells}
    contenders = sorted({c.explainer for c in cells if not c.reference})
    return contenders + [c for c in CONTROLS if c in present]


def directed_columns(cells: Sequence) -> dict[str, tuple[str, bool]]:
    """Every directed column: (direction, whether it claims to measure truth)."""
    found: dict[str, tuple[str, bool]] = {}
    for cell in cells:
        for score in cell.scores:
            if score.direction in ("higher", "lower"):
                found.setdefault(score.column, (score.direction, score.meta_evaluated))
    return found


def cell_mean(cells: Sequence, explainer: str, column: str) -> float:
    """The leaderboard's number: the mean over cells (folds x seeds) of the cell values."""
    values = [
        s.value
        for c in cells
        if c.explainer == explainer
        for s in c.scores
        if s.column == column and s.value is not None
    ]
    return float(np.mean(values)) if values else float("nan")


def paired_units(cells: Sequence, explainer: str, column: str) -> tuple[dict[str, float], str, str]:
    """What a column pairs on for one explainer: the rows behind its published number
    (``seed/fold/set/clip/class``; the references' extra ``column@set`` rows, kept for
    metric validity, are not among them) where kept, else its cells (``seed/fold``);
    returns (values, summary, unit)."""
    rows: dict[str, float] = {}
    cell_values: dict[str, float] = {}
    how = "mean"
    for cell in cells:
        if cell.explainer != explainer:
            continue
        rv = cell.row_values(column)
        if rv is not None:
            how = rv.summary
            rows.update(
                (f"{cell.seed}/{cell.fold}/{k}", v) for k, v in zip(rv.keys, rv.values, strict=True)
            )
        for score in cell.scores:
            if score.column == column and score.value is not None:
                cell_values[f"{cell.seed}/{cell.fold}"] = score.value
    if rows:
        return rows, how, "rows"
    return cell_values, "mean", "cells"


def significance(
    cells: Sequence, validity: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """``significance.csv`` and the tied ranks ``{column: {explainer: rank}}``."""
    names = ranked_explainers(cells)
    verdicts = _column_verdicts(validity)
    records: list[dict[str, object]] = []
    ranks: dict[str, dict[str, int]] = {}
    for column, (direction, _) in directed_columns(cells).items():
        higher = direction == "higher"
        sign = 1.0 if higher else -1.0
        means = {n: cell_mean(cells, n, column) for n in names}
        scored = [n for n in names if np.isfinite(means[n])]
        if not scored:
            continue
        units = {n: paired_units(cells, n, column) for n in scored}
        contenders = [n for n in scored if n not in CONTROLS]
        best = max(contenders, key=lambda n: sign * means[n]) if contenders else None
        column_records = []
        for a, b in itertools.combinations(scored, 2):
            a, b = _orient(a, b, best, means, sign)
            (va, how, unit), (vb, _, _) = units[a], units[b]
            keys = sorted(set(va) & set(vb))
            if not keys:
                continue
            test = paired(va, vb, higher, alternative="two-sided")
            column_records.append(
                {
                    "column": column,
                    "direction": direction,
                    "column_validity": verdicts.get(column, "untestable"),
                    "explainer": a,
                    "versus": b,
                    "role": "control" if b in CONTROLS else "best" if b == best else "pair",
                    "units": unit,
                    "n": test.n,
                    "explainer_value": summarise([va[k] for k in keys], how),
                    "versus_value": summarise([vb[k] for k in keys], how),
                    "median_difference": test.median_difference,
                    "rank_biserial": test.rank_biserial,
                    "p": test.p_value,
                }
            )
        adjusted = holm([r["p"] for r in column_records])
        better: dict[tuple[str, str], bool] = {}
        for rec, p_holm in zip(column_records, adjusted, strict=True):
            separated = bool(np.isfinite(p_holm) and p_holm < SIGNIFICANCE)
            winner_first = rec["rank_biserial"] > 0
            rec["p_holm"] = p_holm
            rec["verdict"] = (
                ("better" if winner_first else "worse") if separated else "not separated"
            )
            if separated:
                pair = (rec["explainer"], rec["versus"])
                better[pair if winner_first else pair[::-1]] = True
        ranks[column] = tied_ranks(scored, better)
        for rec in column_records:
            rec["explainer_rank"] = ranks[column][rec["explainer"]]
            rec["versus_rank"] = ranks[column][rec["versus"]]
        records.extend(column_records)
    return pd.DataFrame(records, columns=COLUMNS), ranks


def _orient(a: str, b: str, best: str | None, means: dict[str, float], sign: float):
    """Which of a pair is ``versus``: a control, else the best, else the weaker mean."""
    for anchor in (*CONTROLS, best):
        if b == anchor:
            return a, b
        if a == anchor:
            return b, a
    return (a, b) if sign * means[a] >= sign * means[b] else (b, a)


def _column_verdicts(validity: pd.DataFrame | None) -> dict[str, str]:
    if validity is None or validity.empty:
        return {}
    rows = validity[validity["verdict_rows"].astype(bool)]
    return dict(zip(rows["column"], rows["verdict"], strict=True))
