"""Cost of an explainer: fit time, explain time per clip, peak memory.

The runner measures them (CUDA-synchronised) into ``Evaluation.timing``; this plugin
only publishes them as columns, so they sit in the leaderboard next to the scores.
The device name is text and belongs to the run manifest, not to a numeric column.
The explain time keeps its per-row values (each row gets its batch's time per row, so
rows of one batch are not independent: its interval is optimistic); fit time, the IQR
and peak memory are one number per cell, with no rows behind them.
"""

from __future__ import annotations

import numpy as np

from l2i_bench.types import Column, Direction, Evaluation, Metric, RowValues

from ._common import row_keys


class Timing(Metric):
    name = "timing"
    version = "2"  # per-row explain times kept
    description = "Fit seconds, explain milliseconds per clip (median, IQR), peak memory"
    reference = "torch.utils.benchmark conventions (median, IQR, max_memory_allocated)"
    columns = (
        Column(
            "fit_seconds",
            Direction.LOWER,
            "s",
            "wall time of Explainer.fit (the original fit when reused from cache)",
            meta_evaluated=False,
        ),
        Column(
            "explain_ms_median",
            Direction.LOWER,
            "ms/clip",
            "median over explained rows",
            meta_evaluated=False,
        ),
        Column(
            "explain_ms_iqr",
            Direction.LOWER,
            "ms/clip",
            "75th - 25th percentile (linear)",
            meta_evaluated=False,
        ),
        Column(
            "peak_memory_mb",
            Direction.LOWER,
            "MB",
            "peak during fit + explain: torch.cuda.max_memory_allocated on CUDA; "
            "process resident set size sampled every 20 ms on CPU",
            meta_evaluated=False,
        ),
    )

    def not_applicable(self, evaluation: Evaluation) -> str | None:
        reason = super().not_applicable(evaluation)
        if reason is None and not evaluation.timing.explain_ms_per_clip:
            return "no explain timings were recorded"
        return reason

    def compute(self, evaluation: Evaluation) -> dict[str, float | RowValues]:
        t = evaluation.timing
        ms = np.asarray(t.explain_ms_per_clip, dtype=np.float64)
        q25, q75 = np.percentile(ms, [25, 75])
        return {
            "fit_seconds": float(t.fit_seconds),
            "explain_ms_median": RowValues.of(row_keys(evaluation), ms, "median"),
            "explain_ms_iqr": float(q75 - q25),
            "peak_memory_mb": float(t.peak_memory_mb),
        }
