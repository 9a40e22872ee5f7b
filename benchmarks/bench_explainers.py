"""Explain time per clip and peak memory of every registered explainer on the
``synth`` classifier (fold 1, seed 0): the numbers behind the README's explainer table,
and the GPU table when a device is present.

Runs each explainer on the same test clips in one batch size, after one warm-up batch,
and prints milliseconds per clip (median of the batches, each timed between device
synchronisations), the peak memory of explaining (CUDA allocator peak on a GPU, process
RSS on the CPU) and, for the learned ones, the fit seconds (``--epochs`` epochs for
those that take an ``epochs`` option; fits are not cached here). CPU unless CUDA is
present, or ``--device``.

    .venv/bin/python benchmarks/bench_explainers.py --clips 16 --cache-dir .cache
    .venv/bin/python benchmarks/bench_explainers.py --device cuda --explainers saliency,lmac
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from l2i_bench.determinism import apply_determinism
from l2i_bench.registry import load_registry
from l2i_bench.timing import PeakMemory, device_name, resolve_device, synchronize
from l2i_bench.workspace import FoldWorkspace, RunConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    parser.add_argument("--epochs", type=int, default=1, help="epochs of learned explainers")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--explainers", default="all", help="comma-separated names, or all")
    args = parser.parse_args()
    apply_determinism(args.threads)
    device = resolve_device(args.device)
    registry = load_registry()
    names = registry.names("explainer") if args.explainers == "all" else args.explainers.split(",")
    dataset = registry.dataset("synth")(None, seed=0)
    dataset.prepare()
    config = RunConfig(
        dataset="synth", explainers=[], cache_dir=args.cache_dir, show_progress=False
    )
    ws = FoldWorkspace(dataset, "1", config, device)
    rows = np.arange(min(args.clips, len(ws.test)))
    classes = ws.test_logits.argmax(1)
    print(
        f"synth fold 1 classifier {ws.classifier.checkpoint_sha256[:10]}, "
        f"{device_name(device)}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"{len(rows)} clips in batches of {args.batch_size}"
    )
    print(f"{'explainer':<22} {'ms/clip':>9} {'peak MB':>9} {'fit s':>7}")
    for name in names:
        cls = registry.explainer(name)
        declared = getattr(cls, "options", {}) or {}
        options = {"epochs": str(args.epochs)} if "epochs" in declared else {}
        explainer = cls(replace(ws.context(cls.name), options=options))
        fit_seconds = float("nan")
        if cls.needs_training:
            synchronize(device)
            started = time.perf_counter()
            explainer.fit(ws.train, ws.valid)
            synchronize(device)
            fit_seconds = time.perf_counter() - started
        times = []
        batches = [rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
        with PeakMemory(device) as memory:
            for i, chunk in enumerate([batches[0], *batches]):  # the first is a warm-up
                batch = ws.test.batch(chunk)
                torch.manual_seed(0)
                synchronize(device)
                started = time.perf_counter()
                explainer.explain(batch, classes[torch.from_numpy(chunk)])
                synchronize(device)
                if i:
                    times.append(1000 * (time.perf_counter() - started) / len(chunk))
        print(
            f"{cls.name:<22} {statistics.median(times):>9.1f} {memory.peak_mb:>9.0f} "
            f"{fit_seconds:>7.1f}"
        )


if __name__ == "__main__":
    main()
