"""What `--executor ray` buys on one machine: speed-up over the sequential runner, and
the overhead Ray adds per cell.

The same grid (synth, ``--folds`` x ``--explainers``, every metric) runs three ways,
each from its own empty cache so that each trains its classifiers and decodes its audio
(the same work): sequential with one torch thread; Ray with a local instance of
``--workers`` CPUs (one CPU and one thread per task); and Ray with a one-CPU instance,
which does the sequential run's work one task at a time, so that its extra wall time
over the sequential run is what Ray adds: once per run (Ray's start and stop, timed on
their own) and per cell (the rest divided by the cells: task round trips, worker
processes starting and importing torch, workspaces rebuilt on a worker that last held
another fold). Non-timing numbers of the three runs are checked equal before anything
is printed.

    .venv/bin/python benchmarks/bench_ray.py            # 2 folds x 2 explainers, 24 clips
    .venv/bin/python benchmarks/bench_ray.py --folds 1,2,3 --explainers random,saliency

Targets (issue 17, 2 cores): speed-up with 2 workers at least 1.6x on at least 4
independent cells; overhead under 2 s per cell.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ray
import torch

from l2i_bench.ray_executor import RayOptions
from l2i_bench.registry import load_registry
from l2i_bench.results import read_cells
from l2i_bench.runner import RunConfig, run_benchmark


def _values(out: Path) -> dict:
    return {
        (c.fold, c.explainer): {s.column: s.value for s in c.scores if s.metric != "timing"}
        for c in read_cells(out, "synth")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("datasets/synth"))
    parser.add_argument("--folds", default="1,2")
    parser.add_argument("--explainers", default="saliency,smoothgrad")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    registry = load_registry()
    folds = args.folds.split(",")
    explainers = args.explainers.split(",")
    cells = len(folds) * len(explainers)

    started = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING")
    ray.shutdown()
    ray_start = time.perf_counter() - started

    walls, outs = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        modes = {
            "sequential, 1 thread": None,
            f"ray, {args.workers} workers": RayOptions(cpus=1, local_cpus=args.workers),
            "ray, 1 worker": RayOptions(cpus=1, local_cpus=1),
        }
        for index, (mode, options) in enumerate(modes.items()):
            out = Path(tmp) / f"out{index}"
            config = RunConfig(
                dataset="synth",
                explainers=explainers,
                folds=folds,
                data_dir=args.data_dir,
                device="cpu",
                threads=1,
                limit=args.limit,
                out=out,
                cache_dir=Path(tmp) / f"cache{index}",
                classifier={"epochs": args.epochs, "width": 0.125},
                listen=0,
                show_progress=False,
            )
            torch.set_num_threads(1)
            started = time.perf_counter()
            summary = run_benchmark(config, registry, options)
            walls[mode] = time.perf_counter() - started
            assert not summary.failed, summary.failed
            outs[mode] = _values(out)
        reference = outs["sequential, 1 thread"]
        for mode, values in outs.items():
            assert values == reference, f"{mode}: numbers differ from the sequential run's"

    sequential = walls["sequential, 1 thread"]
    print(
        f"grid: synth, folds {args.folds} x {args.explainers} = {cells} cells, "
        f"{args.limit} test clips, classifier {args.epochs} epochs; "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end; "
        f"ray {ray.__version__}, torch {torch.__version__}"
    )
    print(f"{'mode':<24}{'wall s':>9}{'speed-up':>10}{'added s/cell':>14}")
    for mode, wall in walls.items():
        added = (wall - sequential - ray_start) / cells if mode == "ray, 1 worker" else None
        shown = f"{added:>14.2f}" if added is not None else f"{'':>14}"
        print(f"{mode:<24}{wall:>9.1f}{sequential / wall:>9.2f}x{shown}")
    print(
        f"Ray's start and stop, once per run (local, 1 CPU): {ray_start:.1f} s; "
        "added s/cell: the one-worker run's extra wall time less that, per cell"
    )
    print("non-timing numbers of all three runs: equal")


if __name__ == "__main__":
    main()
