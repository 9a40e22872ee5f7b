"""What the statistics cost beside the run they summarise (budget: under 5 %).

Times each stage of :func:`l2i_bench.results.publish` on a published results folder
(read the cells; metric validity; paired tests and ranks; agreement; the long table with
per-cell intervals; the leaderboard with intervals over cells; the per-instance
records) in a copy of the folder, and sets their sum against the compute the cells cost
(the sum of every cell's seconds and each fold and seed's classifier training, from the
run manifests; what a fresh run of the folder costs). Best of ``--repeats``, since the
CPUs may be shared.

    .venv/bin/python benchmarks/bench_statistics.py results/5-folds/synth
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from l2i_bench.agreement import agreement
from l2i_bench.instances import instance_table, write_instances
from l2i_bench.results import leaderboard, long_table, read_cells
from l2i_bench.significance import significance
from l2i_bench.validity import failing_columns, metric_validity


def compute_seconds(folder: Path) -> float:
    """Seconds of compute behind the folder's cells: each cell's time as its run
    recorded it (last record wins) plus each classifier's training time."""
    cells: dict[tuple, float] = {}
    classifiers: dict[str, float] = {}
    for path in sorted((folder / "runs").glob("*.json")):
        manifest = json.loads(path.read_text())
        for record in manifest.get("cells", {}).get("computed", []):
            *key, seconds = record
            cells[tuple(str(k) for k in key)] = float(seconds)
        for key, clf in manifest.get("classifier", {}).items():
            if clf.get("train_seconds") and not clf.get("reused"):
                classifiers[key] = float(clf["train_seconds"])
    return sum(cells.values()) + sum(classifiers.values())


def stages(out: Path, dataset: str) -> dict[str, float]:
    seconds: dict[str, float] = {}

    def timed(name, fn, *args):
        started = time.perf_counter()
        result = fn(*args)
        seconds[name] = time.perf_counter() - started
        return result

    cells = timed("read cells", read_cells, out, dataset)
    validity = timed("metric validity", metric_validity, cells)
    _, ranks = timed("paired tests + ranks", significance, cells, validity)
    timed("agreement", agreement, cells, validity)
    timed("long table + cell intervals", long_table, cells)
    timed("leaderboard + intervals", leaderboard, cells, failing_columns(validity), ranks)
    frame, summaries = timed("instance table", instance_table, cells)
    timed("write instances.parquet", write_instances, frame, summaries, out / "i.parquet")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="results/<dataset>")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = args.folder.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        shutil.copytree(folder / "cells", out / folder.name / "cells")
        runs = [stages(out, folder.name) for _ in range(args.repeats)]
    best = {k: min(r[k] for r in runs) for k in runs[0]}
    total = sum(best.values())
    compute = compute_seconds(folder)
    cells = len(read_cells(folder.parent, folder.name))
    print(f"{folder}: {cells} cells, {compute:.0f} s of compute behind them")
    print(f"{'stage':<30} {'seconds':>8}")
    for name, value in best.items():
        print(f"{name:<30} {value:>8.2f}")
    share = 100 * total / compute if compute else float("nan")
    print(f"{'total':<30} {total:>8.2f}   = {share:.2f} % of the compute (budget 5 %)")


if __name__ == "__main__":
    main()
