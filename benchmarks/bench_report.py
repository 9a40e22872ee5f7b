"""Time and size of the web report per results folder: the numbers behind the README's
"building the report takes ..." (issue 15's budget: under 30 s for results/5-folds/synth
on 2 cores).

Each folder is copied to a temporary directory first, so the published one is never
touched; the report is built ``--repeat`` times from scratch (best and median wall
seconds, in this process, imports already done) and its size on disk is printed.

    .venv/bin/python benchmarks/bench_report.py results/synth results/5-folds/synth results/esc50
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from l2i_bench.registry import load_registry
from l2i_bench.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    registry = load_registry()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'folder':<28} {'best s':>7} {'median s':>9} {'files':>6} {'MB':>6}")
    for folder in args.folders:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / folder.name
            shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("report"))
            seconds = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                index = build_report(copy, registry=registry)
                seconds.append(time.perf_counter() - start)
            files = [p for p in index.parent.rglob("*") if p.is_file()]
            size = sum(p.stat().st_size for p in files) / 1e6
            print(
                f"{folder!s:<28} {min(seconds):>7.1f} {statistics.median(seconds):>9.1f} "
                f"{len(files):>6} {size:>6.1f}"
            )


if __name__ == "__main__":
    main()
