"""The leaderboard as the report and the terminal read it: which columns are the
headline, and each cell's value with its interval, spread and tied rank.

The leaderboard CSV (:func:`l2i_bench.results.leaderboard`) is the one source: a header
``<column> <arrow>[ [unit]][ ✗]`` per metric column (the unit when it is not a number in [0, 1]), then ``<column>_std``, ``_ci_low``,
``_ci_high`` and ``_rank`` beside it. This module parses that layout once, so the web
page, its figures and the terminal table cannot disagree about a number.

Headline (ours): what a reader asks first, one column per question, the first that the
results hold from each list: fidelity (top-1 for multiclass, micro AUPRC for
multilabel), faithfulness at equal coverage (the drop beyond random patches that remove
as much energy: FF alone follows coverage, see the README), localisation on the overlap
mixtures (datasets with stems only), deletion, L-MAC's input fidelity, and cost (explain
milliseconds per clip).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from l2i_bench.results import ARROWS, FAILS_VALIDITY

HEADLINE: list[tuple[str, str, tuple[str, ...]]] = [
    # (the question, its terminal label of at most 9 characters, candidate columns)
    ("fidelity", "fidelity", ("fidelity_top1", "fidelity_auprc_micro_dcase")),
    ("FF at equal coverage", "FF-random", ("ff_prob_drop_minus_random",)),
    ("localisation", "localise", ("gt_auroc_overlap",)),
    ("deletion", "deletion", ("deletion_auc",)),
    ("L-MAC input fidelity", "fid-in", ("lmac_fid_in", "lmac_ai")),
    ("cost: ms per clip", "ms/clip", ("explain_ms_median",)),
]

BOOKKEEPING = ("explainer", "reference", "folds", "seeds", "cells", "notes")


@dataclass(frozen=True)
class Column:
    """One metric column of the leaderboard."""

    name: str  # e.g. ``fidelity_top1``
    header: str  # as in the CSV, e.g. ``fidelity_top1 ↑``
    direction: str  # higher, lower, neutral
    fails_validity: bool
    unit: str = ""  # shown in the header when it is not a number in [0, 1], e.g. ``%``
    label: str = ""  # the headline's question, when it is a headline column
    short: str = ""  # its terminal label

    @property
    def arrow(self) -> str:
        return ARROWS.get(self.direction, "")


@dataclass(frozen=True)
class Value:
    """One explainer's number in one column, with what the CSV says about it."""

    mean: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    std: float | None = None
    rank: int | None = None


@dataclass
class Board:
    """The parsed leaderboard."""

    frame: pd.DataFrame
    columns: list[Column]

    def __post_init__(self) -> None:
        self._rows = {str(r["explainer"]): r for r in self.frame.to_dict("records")}

    @property
    def explainers(self) -> list[str]:
        return list(self._rows)

    def is_reference(self, explainer: str) -> bool:
        return bool(self._rows[explainer]["reference"])

    def notes(self, explainer: str) -> str:
        """Why the row's empty columns are empty, and whether its fit was reused."""
        note = self._rows[explainer].get("notes")
        return "" if note is None or _is_nan(note) else str(note)

    def value(self, explainer: str, column: Column) -> Value:
        row = self._rows[explainer]

        def number(key: str) -> float | None:
            value = row.get(key)
            return None if value is None or _is_nan(value) else float(value)

        rank = number(f"{column.name}_rank")
        return Value(
            mean=number(column.header),
            ci_low=number(f"{column.name}_ci_low"),
            ci_high=number(f"{column.name}_ci_high"),
            std=number(f"{column.name}_std"),
            rank=None if rank is None else int(rank),
        )

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def headline(self) -> list[Column]:
        chosen = []
        for label, short, candidates in HEADLINE:
            for name in candidates:
                column = self.column(name)
                if column is not None:
                    chosen.append(replace(column, label=label, short=short))
                    break
        return chosen


def read_board(path: Path) -> Board:
    """Parse ``leaderboard.csv`` (module docstring)."""
    frame = pd.read_csv(path)
    directions = {arrow: direction for direction, arrow in ARROWS.items()}
    columns = []
    for header in frame.columns:
        if header in BOOKKEEPING:
            continue
        parts = header.split(" ")
        if len(parts) < 2 or parts[1] not in directions:
            continue  # _std, _ci_low, _ci_high, _rank travel with their column
        unit = re.search(r"\[([^\]]+)\]", header)
        columns.append(
            Column(
                name=parts[0],
                header=header,
                direction=directions[parts[1]],
                fails_validity=FAILS_VALIDITY in parts[2:],
                unit=unit.group(1) if unit else "",
            )
        )
    return Board(frame=frame, columns=columns)


def format_number(value: float | None, column: Column | None = None) -> str:
    """Three significant decimals for scores, whole milliseconds and seconds for cost."""
    if value is None or _is_nan(value):
        return "–"
    if column is not None and column.name in ("explain_ms_median", "explain_ms_iqr"):
        return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.1f}"
    if column is not None and column.name in ("fit_seconds", "peak_memory_mb"):
        return f"{value:,.0f}"
    return f"{value:.3f}"


def terminal_table(board: Board, width: int = 100) -> str:
    """The headline as plain text that fits ``width`` columns: explainer, then one
    column per headline question (mean, and the tied rank in brackets where the
    results have one); reference rows after a rule. Columns that do not fit are
    dropped from the right, never wrapped."""
    columns = board.headline()
    name_width = max([len("explainer"), *(len(n) for n in board.explainers)]) + 2
    cell_width = 13  # "-0.123 (12)" or a 9-character label with its arrow, and a gap
    fit = max(0, (width - name_width) // cell_width)
    columns = columns[:fit]
    header = "explainer".ljust(name_width) + "".join(
        f"{c.short} {c.arrow}{' ✗' if c.fails_validity else ''}".rjust(cell_width) for c in columns
    )
    lines = [header, "-" * len(header)]
    contenders = [n for n in board.explainers if not board.is_reference(n)]
    references = [n for n in board.explainers if board.is_reference(n)]
    for group in (contenders, references):
        if group is references and references:
            lines.append("- reference rows " + "-" * max(0, len(header) - 17))
        for name in group:
            cells = []
            for column in columns:
                value = board.value(name, column)
                text = format_number(value.mean, column)
                if value.rank is not None:
                    text += f" ({value.rank})"
                cells.append(text.rjust(cell_width))
            lines.append(name.ljust(name_width) + "".join(cells))
    reasons = _empty_reasons(board, columns)
    if reasons:
        lines.append("– no value: " + "; ".join(reasons) + " (notes in leaderboard.csv)")
    return "\n".join(lines)


def _empty_reasons(board: Board, columns: list[Column]) -> list[str]:
    """Why headline cells are empty, once per reason, from the board's ``notes``."""
    if "notes" not in board.frame.columns:
        return []
    reasons: dict[str, str] = {}
    for notes in board.frame["notes"].dropna().astype(str):
        for note in notes.split("; "):
            names, _, why = note.partition(": ")
            for column in columns:
                if column.name in names.split(", "):
                    reasons.setdefault(f"{column.short}: {why}", "")
    return list(reasons)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)
