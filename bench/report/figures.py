"""The report's charts: one bar chart per headline column with its 95 % intervals,
faithfulness against localisation, and quality against cost per clip.

Method: matplotlib (Agg), one PNG each at screen resolution; reference rows drawn in
grey and hatched so they never read as contenders; a column that failed the metric
validity check says so in its title. Cost: a few tenths of a second per figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from l2i_bench.report.board import Board, Column

CONTENDER = "#3b6ea8"
REFERENCE = "#9a9a9a"


def bar_chart(board: Board, column: Column, path: Path) -> Path:
    """Mean per explainer with its interval (where the results have one)."""
    names = [n for n in board.explainers if board.value(n, column).mean is not None]
    values = [board.value(n, column) for n in names]
    fig, ax = plt.subplots(figsize=(7.0, 0.32 * len(names) + 1.2))
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        reference = board.is_reference(name)
        ax.barh(
            i,
            value.mean,
            color=REFERENCE if reference else CONTENDER,
            hatch="//" if reference else None,
            edgecolor="white",
        )
        if value.ci_low is not None and value.ci_high is not None:
            ax.plot([value.ci_low, value.ci_high], [i, i], color="black", linewidth=1.2)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    if column.name == "explain_ms_median":
        ax.set_xscale("log")
    title = f"{column.label or column.name} ({column.name}, {column.arrow} better)"
    if column.fails_validity:
        title += ": FAILED metric validity"
    ax.set_title(title, fontsize=10)
    ax.axvline(0, color="black", linewidth=0.5)
    fig.tight_layout()
    return _save(fig, path)


def scatter(board: Board, x: Column, y: Column, path: Path, *, log_x: bool = False) -> Path:
    """One point per explainer with both values; intervals as whiskers."""
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    for name in board.explainers:
        vx, vy = board.value(name, x), board.value(name, y)
        if vx.mean is None or vy.mean is None or (log_x and vx.mean <= 0):
            continue
        colour = REFERENCE if board.is_reference(name) else CONTENDER
        ax.scatter([vx.mean], [vy.mean], color=colour, zorder=3)
        if vy.ci_low is not None and vy.ci_high is not None:
            ax.plot([vx.mean, vx.mean], [vy.ci_low, vy.ci_high], color=colour, linewidth=1)
        if vx.ci_low is not None and vx.ci_high is not None and not log_x:
            ax.plot([vx.ci_low, vx.ci_high], [vy.mean, vy.mean], color=colour, linewidth=1)
        ax.annotate(name, (vx.mean, vy.mean), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(f"{x.label or x.name} ({x.name} {x.arrow})")
    ax.set_ylabel(f"{y.label or y.name} ({y.name} {y.arrow})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
