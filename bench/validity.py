"""Metric validity: can a column tell a true explanation from a false one?

A metric earns a verdict only if, on data with ground truth, it ranks explanations whose
truth is known in the known order. The reference explainers give three of them for the
same rows: ``oracle`` (the target's ideal ratio mask, from the stems), ``random`` (a
random mask), ``anti-oracle`` (the interference's mask). A valid column scores, paired
over the same clips, **oracle better than random** and **random better than
anti-oracle**, each with a one-sided Wilcoxon signed-rank p-value below
:data:`ALPHA` (:mod:`l2i_bench.stats`). Rows are paired by fold, evaluation set, clip
and class, pooled over every fold (and seed) on disk.

``metric_validity.csv`` has one row per directed column: the three summaries, the pair
counts, the effect sizes (median paired difference and rank-biserial correlation), the
p-values and the verdict: ``pass``, ``fail``, or ``untestable`` with the reason (no
stems on this dataset, so no oracle; a column the references cannot have, such as a
surrogate's fidelity; a cost or sanity column, which does not claim to measure truth).

Which rows: ``mixtures`` (the condition sets' rows the classifier decides for their
target, where the anti-oracle is a competing event or noise) give the verdict; the
``clean`` test rows are reported too, for information: there the interference is the
near-silent background, so an anti-oracle and a random removal both leave a robust
classifier untouched, and a removal metric cannot (and need not) tell them apart.
Failing columns (by the verdict rows) are flagged in the leaderboard's header (``✗``).
Cost: one signed-rank test per column and comparison, milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from l2i_bench.stats import PairedTest, paired_better, summarise

ALPHA = 0.01
ORACLE, RANDOM, ANTI = "oracle", "random", "anti-oracle"
COLUMNS = [
    "column",
    "rows",
    "verdict_rows",
    "direction",
    "oracle",
    "random",
    "anti_oracle",
    "n_oracle_random",
    "effect_oracle_random",
    "rank_biserial_oracle_random",
    "p_oracle_random",
    "n_random_anti",
    "effect_random_anti",
    "rank_biserial_random_anti",
    "p_random_anti",
    "verdict",
    "reason",
]


CLEAN, MIXTURES = "clean", "mixtures"


def row_group(key: str) -> str:
    """``clean`` for a test-set row key (``test/...``), ``mixtures`` for a condition
    set's (``overlap/...``, ``noise/...``)."""
    return CLEAN if key.split("/", 1)[0] == "test" else MIXTURES


def rows_of(
    cells: Sequence, explainer: str, column: str, group: str
) -> tuple[dict[str, float], str]:
    """Every fold's (and seed's) row values of one explainer's column in one row group,
    keyed ``seed/fold/<row key>``, and the column's summary ("mean" or "median").
    Rows kept under ``<column>@<set>`` belong to the column too."""
    values: dict[str, float] = {}
    summary = "mean"
    for cell in cells:
        if cell.explainer != explainer:
            continue
        names = [n for n in cell.rows.get("columns", {}) if n.split("@", 1)[0] == column]
        for name in names:
            rv = cell.row_values(name)
            summary = rv.summary
            for key, value in zip(rv.keys, rv.values, strict=True):
                if row_group(key) == group:
                    values[f"{cell.seed}/{cell.fold}/{key}"] = value
    return values, summary


def _groups(cells: Sequence, column: str) -> list[str]:
    """Row groups present for a column, the verdict's group first."""
    found = set()
    for cell in cells:
        for name in cell.rows.get("columns", {}):
            if name.split("@", 1)[0] == column:
                found.update(row_group(k) for k in cell.row_values(name).keys)
    return [g for g in (MIXTURES, CLEAN) if g in found] or [CLEAN]


def summary(values: dict[str, float], how: str) -> float:
    """The column's own summary (mean or median) of row values."""
    return summarise(list(values.values()), how)


def paired(
    a: dict[str, float], b: dict[str, float], higher: bool, alternative: str = "greater"
) -> PairedTest:
    """``a`` better than ``b`` (or, two-sided, different) over the keys both have."""
    keys = sorted(set(a) & set(b))
    return paired_better(
        np.array([a[k] for k in keys]),
        np.array([b[k] for k in keys]),
        higher_is_better=higher,
        alternative=alternative,
    )


def metric_validity(cells: Sequence) -> pd.DataFrame:
    """The validity verdict of every directed column found in ``cells`` (one dataset)."""
    present = {c.explainer for c in cells}
    columns: dict[str, tuple[str, bool]] = {}
    for cell in cells:
        for score in cell.scores:
            if score.direction in ("higher", "lower"):
                columns.setdefault(score.column, (score.direction, score.meta_evaluated))
    records = []
    for column, (direction, meta) in columns.items():
        for i, group in enumerate(_groups(cells, column)):
            records.append(_record(cells, present, column, direction, meta, group, i == 0))
    return pd.DataFrame(records, columns=COLUMNS)


def _record(
    cells: Sequence,
    present: set[str],
    column: str,
    direction: str,
    meta: bool,
    group: str,
    verdict_rows: bool,
) -> dict[str, object]:
    """One column's validity on one row group."""
    higher = direction == "higher"
    rec: dict[str, object] = {
        "column": column,
        "rows": group,
        "verdict_rows": verdict_rows,
        "direction": direction,
    }
    rows = {name: rows_of(cells, name, column, group) for name in (ORACLE, RANDOM, ANTI)}
    rec["oracle"] = summary(*rows[ORACLE])
    rec["random"] = summary(*rows[RANDOM])
    rec["anti_oracle"] = summary(*rows[ANTI])
    missing = [n for n in (ORACLE, RANDOM, ANTI) if n not in present]
    if not meta:
        rec.update(verdict="untestable", reason="cost or model-dependence column, not truth")
    elif missing:
        rec.update(
            verdict="untestable",
            reason=f"no {', '.join(missing)} cells (oracle needs ground-truth stems)",
        )
    elif any(not rows[n][0] for n in (ORACLE, RANDOM, ANTI)):
        rec.update(verdict="untestable", reason="no per-row values for every reference explainer")
    else:
        first = paired(rows[ORACLE][0], rows[RANDOM][0], higher)
        second = paired(rows[RANDOM][0], rows[ANTI][0], higher)
        passed = first.p_value < ALPHA and second.p_value < ALPHA
        failed = []
        if not first.p_value < ALPHA:
            failed.append(f"oracle vs random p={first.p_value:.3g}")
        if not second.p_value < ALPHA:
            failed.append(f"random vs anti-oracle p={second.p_value:.3g}")
        rec.update(
            n_oracle_random=first.n,
            effect_oracle_random=first.median_difference,
            rank_biserial_oracle_random=first.rank_biserial,
            p_oracle_random=first.p_value,
            n_random_anti=second.n,
            effect_random_anti=second.median_difference,
            rank_biserial_random_anti=second.rank_biserial,
            p_random_anti=second.p_value,
            verdict="pass" if passed else "fail",
            reason="" if passed else "; ".join(failed) + f" (needs < {ALPHA})",
        )
    return rec


def failing_columns(validity: pd.DataFrame) -> set[str]:
    """Columns whose verdict (on their verdict rows) is ``fail``: flagged in the
    leaderboard."""
    if validity.empty:
        return set()
    verdicts = validity[validity["verdict_rows"].astype(bool)]
    return set(verdicts.loc[verdicts["verdict"] == "fail", "column"])
