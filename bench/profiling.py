"""A run's stage profile: where its seconds went, per fold, per cell and for the run.

Method. Each stage is timed where it runs, with ``time.perf_counter()`` around it,
synchronised first on CUDA (:func:`l2i_bench.timing.stage`): a fold's audio loading and
decoding, its classifier's training or loading and the classifier's test and condition
logits (:class:`~l2i_bench.workspace.FoldWorkspace`); a cell's explainer fit (or the
loading of a cached fit, marked as such), the explanation of the test set and of the
condition sets, the evaluation's test STFTs, each metric and the listening examples
(:func:`~l2i_bench.runner.run_cell`); the run's setup, publishing and report. Both
executors hand these to the :class:`~l2i_bench.grid.GridLedger`, which keeps them in the
manifest's ``profile`` (never in the cell files, whose keys stay as they were), and
``l2i-bench run --profile`` prints them as a table (:func:`profile_table`). A cell's
``other`` is its total less its timed stages; the table's "driver" row is the wall time
no stage claims (manifests, cell files, skipping finished cells, the progress bar).

On the Ray executor the folds and cells run in parallel on workers: their seconds are
task seconds, which overlap, so their sum can exceed the wall time; a cell task that
had to rebuild its fold's workspace on its worker says so (``workspace``).

What is ours: the stage names, the layout and the table. Cost: a clock read (and on CUDA
a synchronisation) per stage, nothing measurable beside the stages; about 400 bytes of
manifest per cell.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from l2i_bench.results import write_json_atomic

FOLD_STAGES: tuple[tuple[str, str], ...] = (
    ("audio", "audio load/decode"),
    ("classifier", "classifier train/load"),
    ("classifier_eval", "classifier logits (test, conditions)"),
    ("other", "fold, other (split, front end, keys)"),
)
"""A fold's stages in the manifest, with the table's label."""
CELL_STAGES: tuple[tuple[str, str], ...] = (
    ("workspace", "workspace rebuilt on a worker"),
    ("fit", "explainer fit"),
    ("explain_test", "explain test set"),
    ("surrogate", "surrogate predictions"),
    ("explain_conditions", "explain condition sets"),
    ("evaluation", "evaluation (test STFTs)"),
    ("metrics", "metrics"),
    ("listening", "listening examples"),
    ("other", "cell, other"),
)
"""A cell's stages in the manifest, with the table's label; ``metrics`` is per metric."""
WIDTH = 100


def new_profile(executor: str) -> dict[str, Any]:
    """The manifest's empty profile; the ledger adds the run's ``setup`` (dataset,
    checks, provenance, executor start) once it is made."""
    return {
        "unit": "seconds",
        "executor": executor,
        "wall": None,
        "run": {},
        "folds": {},
        "cells": {},
    }


def fold_profile(stages: Mapping[str, Any], total: float | None) -> dict[str, Any]:
    """A fold's stages with its ``total`` (the workspace's making) and ``other`` (the
    total no stage claims: the split, the front end, the data's fingerprint)."""
    record = dict(stages)
    if total is not None:
        record["total"] = total
        timed = sum(float(record.get(k, 0.0)) for k, _ in FOLD_STAGES if k != "other")
        record["other"] = max(0.0, total - timed)
    return record


def cell_profile(stages: Mapping[str, Any], total: float | None) -> dict[str, Any]:
    """A cell's stages with its ``total`` and ``other`` (the total no stage claims);
    a failed cell (no total) keeps only the stages it finished."""
    record = dict(stages)
    if total is not None:
        record["total"] = total + float(record.get("workspace", 0.0))
        record["other"] = max(0.0, record["total"] - timed_seconds(record))
    return record


def timed_seconds(record: Mapping[str, Any]) -> float:
    """The seconds of a cell's timed stages (``other`` and ``total`` left out)."""
    total = 0.0
    for key, _ in CELL_STAGES:
        if key == "other":
            continue
        value = record.get(key, 0.0)
        total += sum(value.values()) if isinstance(value, Mapping) else float(value or 0.0)
    return total


def rounded(value: Any) -> Any:
    """Seconds to the millisecond, in nested records; other values as they are."""
    if isinstance(value, Mapping):
        return {str(k): rounded(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 3)
    return value


def record_report(manifest_path: Path, seconds: float, since: float) -> dict[str, Any]:
    """Add the web report's build to a finished run's profile, and the time since the
    run returned (``since``: its ``perf_counter()``) to the wall time; returns the
    manifest. The report is built after the run released its folder, so its manifest
    is rewritten here, whole."""
    manifest = json.loads(Path(manifest_path).read_text())
    profile = manifest.setdefault("profile", new_profile("?"))
    profile["run"]["report"] = round(seconds, 3)
    if profile.get("wall") is not None:
        profile["wall"] = round(profile["wall"] + time.perf_counter() - since, 3)
    write_json_atomic(Path(manifest_path), manifest)
    return manifest


# -- the table ---------------------------------------------------------------------------


def stage_totals(profile: Mapping[str, Any]) -> list[tuple[str, float, str]]:
    """(label, seconds, note) per stage over the whole run, in the order a run goes
    through them; metrics one row each under their total, a long tail folded."""
    folds = list(profile.get("folds", {}).values())
    cells = [c for c in profile.get("cells", {}).values()]
    run = profile.get("run", {})
    rows: list[tuple[str, float, str]] = [
        ("setup: dataset, checks, executor", run.get("setup", 0.0), "")
    ]
    for key, label in FOLD_STAGES:
        seconds = sum(float(f.get(key, 0.0)) for f in folds)
        note = ""
        if key == "audio":
            note = f"{len(folds)} fold(s)"
        if key == "classifier":
            trained = sum(1 for f in folds if not f.get("classifier_reused"))
            note = f"{trained} trained, {len(folds) - trained} loaded"
        rows.append((label, seconds, note))
    metrics: dict[str, float] = {}
    for cell in cells:
        for name, seconds in cell.get("metrics", {}).items():
            metrics[name] = metrics.get(name, 0.0) + float(seconds)
    for key, label in CELL_STAGES:
        if key == "metrics":
            rows.append((label, sum(metrics.values()), f"{len(metrics)} metric(s)"))
            rows += _metric_rows(metrics, profile.get("wall") or 0.0)
            continue
        seconds = sum(float(c.get(key, 0.0)) for c in cells)
        if key in ("workspace", "surrogate") and not seconds:
            continue
        note = ""
        if key == "fit":
            note = _fit_note(cells)
        rows.append((label, seconds, note))
    rows.append(("publish", float(run.get("publish", 0.0)), ""))
    if "report" in run:
        rows.append(("report", float(run["report"]), ""))
    return rows


def _metric_rows(metrics: Mapping[str, float], wall: float) -> list[tuple[str, float, str]]:
    """The metrics as indented rows, slowest first; those under 1 % of the wall time
    beyond the fifth folded into one row."""
    ordered = sorted(metrics.items(), key=lambda kv: -kv[1])
    shown = [(n, s) for i, (n, s) in enumerate(ordered) if i < 5 or s >= 0.01 * wall]
    rest = ordered[len(shown) :]
    rows = [(f"  {name}", seconds, "") for name, seconds in shown]
    if rest:
        rows.append((f"  {len(rest)} other metric(s)", sum(s for _, s in rest), ""))
    return rows


def _fit_note(cells: list[Mapping[str, Any]]) -> str:
    sources = [c.get("fit_source", "none") for c in cells]
    cached = [c for c in cells if c.get("fit_source") == "cache"]
    note = f"{sources.count('fitted')} fitted, {len(cached)} cached"
    if cached:
        original = sum(float(c.get("fit_original_seconds", 0.0)) for c in cached)
        note += f" (fits took {_seconds(original)} s)"
    return note


def profile_table(profile: Mapping[str, Any]) -> str:
    """The stage profile as two tables of at most 100 columns: the run's seconds per
    stage with their share of the wall time, then one row per cell."""
    wall = float(profile.get("wall") or 0.0)
    parallel = profile.get("executor") == "ray"
    lines = [
        f"stage profile: {_seconds(wall)} s wall, {profile.get('executor', '?')} executor "
        "(seconds; share of the wall time)"
    ]
    if parallel:
        lines.append(
            "  folds and cells ran in parallel on Ray workers: their seconds overlap and "
            "can add to more than 100 %"
        )
    lines.append(f"{'stage':<38}{'seconds':>9}{'share':>8}  note")
    rows = stage_totals(profile)
    for label, seconds, note in rows:
        lines.append(_row(label, seconds, wall, note))
    claimed = sum(s for label, s, _ in rows if not label.startswith("  "))
    if not parallel:
        lines.append(
            _row("driver (records, skips), unaccounted", max(0.0, wall - claimed), wall, "")
        )
    lines.append(_row("wall", wall, wall, ""))
    cells = profile.get("cells", {})
    if cells:
        lines += ["", _cell_header()]
        for key, cell in cells.items():
            lines.append(_cell_row(key, cell, wall))
        if any(c.get("fit_source") == "cache" for c in cells.values()):
            lines.append("  * fit loaded from the cache: the seconds are the loading's")
    return "\n".join(line[:WIDTH] for line in lines)


def _row(label: str, seconds: float, wall: float, note: str) -> str:
    share = f"{100 * seconds / wall:.1f} %" if wall > 0 else ""
    return f"{label[:38]:<38}{_seconds(seconds):>9}{share:>8}  {note}".rstrip()


CELL_COLUMNS = (
    ("fit", ("fit",)),
    ("explain", ("explain_test", "surrogate")),
    ("cond.", ("explain_conditions",)),
    ("metrics", ("metrics",)),
    ("listen", ("listening",)),
    ("other", ("workspace", "evaluation", "other")),
)
"""The per-cell table's columns and the stages each sums."""


def _cell_header() -> str:
    names = "".join(f"{name:>9}" for name, _ in CELL_COLUMNS)
    return f"{'cell (fold/seed/explainer)':<28}{names}{'total':>9}{'share':>8}"


def _cell_row(key: str, cell: Mapping[str, Any], wall: float) -> str:
    parts = []
    for name, stages in CELL_COLUMNS:
        seconds = 0.0
        for stage in stages:
            value = cell.get(stage, 0.0)
            seconds += sum(value.values()) if isinstance(value, Mapping) else float(value or 0)
        mark = "*" if name == "fit" and cell.get("fit_source") == "cache" else ""
        parts.append(f"{_seconds(seconds) + mark:>9}")
    total = cell.get("total")
    if total is None:
        tail = f"{'failed':>9}"
    else:
        share = f"{100 * total / wall:.1f} %" if wall > 0 else ""
        tail = f"{_seconds(total):>9}{share:>8}"
    return f"{key[:27]:<28}{''.join(parts)}{tail}"


def _seconds(value: float) -> str:
    """Seconds with two decimals under 10 s, one above."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"
