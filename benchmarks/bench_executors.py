"""What the parallel executors buy on one machine: speed-up over the sequential runner,
and what each adds per cell.

The same grid (synth, ``--folds`` x ``--explainers``, every metric) runs five ways, each
from its own empty cache so that each trains its classifiers and decodes its audio (the
same work): sequential with one torch thread; the local process pool
(``--executor processes``) with ``--workers`` workers and with one; Ray with a local
instance of ``--workers`` CPUs (one CPU and one thread per task) and with one CPU. A
one-worker run does the sequential run's work one task at a time, so its extra wall
time over the sequential run is what the executor adds: for Ray, once per run (Ray's
start and stop, timed on their own) and per cell (the rest divided by the cells: task
round trips, worker processes starting and importing torch, workspaces rebuilt on a
worker that last held another fold); for the pool, per cell all of it. Ray's rows are
left out when the extra is not installed. Non-timing numbers of all runs are checked
equal before anything is printed.

    .venv/bin/python benchmarks/bench_executors.py      # 2 folds x 2 explainers, 24 clips
    .venv/bin/python benchmarks/bench_executors.py --folds 1,2,3 --explainers random,saliency
    .venv/bin/python benchmarks/bench_executors.py --executors processes --workers 1

Targets (issue 17, 2 cores): speed-up with 2 workers at least 1.6x on at least 4
independent cells; overhead under 2 s per cell.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from l2i_bench.process_executor import ProcessOptions
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
    parser.add_argument(
        "--executors",
        default="processes,ray",
        help="which to time beside the sequential runner (1 --workers: only the "
        "one-worker rows, which measure what an executor adds per cell)",
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    registry = load_registry()
    folds = args.folds.split(",")
    explainers = args.explainers.split(",")
    cells = len(folds) * len(explainers)

    executors = args.executors.split(",")
    modes: dict[str, ProcessOptions | RayOptions | None] = {"sequential, 1 thread": None}
    if "processes" in executors:
        if args.workers > 1:
            modes[f"processes, {args.workers} workers"] = ProcessOptions(workers=args.workers)
        modes["processes, 1 worker"] = ProcessOptions(workers=1)
    try:
        import ray
    except ImportError:
        ray = None
    ray_start = None
    if ray is not None and "ray" in executors:
        started = time.perf_counter()
        ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING")
        ray.shutdown()
        ray_start = time.perf_counter() - started
        if args.workers > 1:
            modes[f"ray, {args.workers} workers"] = RayOptions(cpus=1, local_cpus=args.workers)
        modes["ray, 1 worker"] = RayOptions(cpus=1, local_cpus=1)

    walls, outs = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-executors-") as tmp:
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
        f"ray {ray.__version__ if ray else 'not installed'}, torch {torch.__version__}"
    )
    print(f"{'mode':<24}{'wall s':>9}{'speed-up':>10}{'added s/cell':>14}")
    once = {"processes, 1 worker": 0.0, "ray, 1 worker": ray_start}
    for mode, wall in walls.items():
        added = (wall - sequential - once[mode]) / cells if mode in once else None
        shown = f"{added:>14.2f}" if added is not None else f"{'':>14}"
        print(f"{mode:<24}{wall:>9.1f}{sequential / wall:>9.2f}x{shown}")
    if ray_start is not None:
        print(f"Ray's start and stop, once per run (local, 1 CPU): {ray_start:.1f} s")
    print(
        "added s/cell: a one-worker run's extra wall time over the sequential one "
        "(less Ray's start and stop), per cell"
    )
    print(f"non-timing numbers of all {len(walls)} runs: equal")


if __name__ == "__main__":
    main()
