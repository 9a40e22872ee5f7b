"""``l2i-bench run`` on the fault suite's registry, as a separate process: what a kill
(through ``L2I_BENCH_FAILPOINT``) or a second concurrent run is tested on. Exit codes as
the CLI's: 0 done, 1 some cells failed, 2 a BenchError, 130 interrupted."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_plugins import CLASSIFIER, registry

from l2i_bench.errors import BenchError
from l2i_bench.runner import RunConfig, run_benchmark


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--explainers", default="random,profile")
    args = parser.parse_args()
    config = RunConfig(
        dataset="synth-tiny",
        explainers=args.explainers.split(","),
        folds=["1"],
        data_dir=args.data_dir,
        device="cpu",
        out=args.out,
        cache_dir=args.cache_dir,
        classifier=CLASSIFIER,
        listen=0,
        show_progress=False,
        threads=1,
    )
    try:
        summary = run_benchmark(config, registry())
    except KeyboardInterrupt:
        return 130
    except BenchError as err:
        print(f"error: {err.problem}", file=sys.stderr)
        return 2
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
