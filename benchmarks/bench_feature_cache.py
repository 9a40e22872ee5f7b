"""Seconds per training epoch with and without the feature cache (:mod:`l2i_bench.data`).

The classifier and the learned explainers iterate the training split for 15 to 60
epochs; before the cache, every batch recomputed its STFT and log-mel. This script fits
each of them twice on the same ESC-50-shaped split (``--clips`` synthetic 5 s clips at
44.1 kHz, 50 classes, Kumar's CNN at width 0.25), once with the cache off and once
with it on, interleaved, for 1 and for ``--epochs`` epochs: the difference divided by
the extra epochs is the steady per-epoch time (the first epoch also builds the cache,
reported apart). It also checks that both fits give the same numbers (validation
history and weights), which is the cache's contract.

    .venv/bin/python benchmarks/bench_feature_cache.py --clips 48 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from l2i_bench.audio import SAMPLE_RATE, FrontEnd
from l2i_bench.data import ClipSet
from l2i_bench.plugins.classifiers.kumar import KumarCNN
from l2i_bench.plugins.explainers.flint import FlintExplainer
from l2i_bench.plugins.explainers.lmac import LmacExplainer
from l2i_bench.plugins.explainers.vibi import VibiExplainer
from l2i_bench.timing import synchronize
from l2i_bench.types import Clip, ExplainerContext, ExplainerDefaults, Task

CLASSES = 50
LEARNED = {"lmac": LmacExplainer, "flint": FlintExplainer, "vibi": VibiExplainer}


def clip_set(count: int, seed: int, front_end: FrontEnd, cache: bool) -> ClipSet:
    rng = np.random.default_rng(seed)
    t = np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE
    waves = 0.05 * rng.standard_normal((count, t.size)).astype(np.float32)
    labels = rng.integers(0, CLASSES, count)
    for row, label in enumerate(labels):  # a class-specific tone makes the task learnable
        waves[row] += 0.3 * np.sin(2 * np.pi * (200 + 60 * label) * t).astype(np.float32)
    clips = [
        Clip(clip_id=f"c{i}", path=Path(f"c{i}.wav"), labels=(int(k),))
        for i, k in enumerate(labels)
    ]
    out = ClipSet(clips, waves, CLASSES, front_end)
    out.cache_features = cache
    return out


def classifier(device: torch.device) -> KumarCNN:
    torch.manual_seed(0)
    return KumarCNN(CLASSES, Task.MULTICLASS, width=0.25).to(device).eval().requires_grad_(False)


def fit(name: str, epochs: int, clips: int, device: torch.device, cache: bool):
    """Seconds of one fit, its facts and its weights."""
    front_end = FrontEnd(device)
    train, valid = clip_set(clips, 0, front_end, cache), clip_set(clips // 4, 1, front_end, cache)
    context = ExplainerContext(
        dataset_name="bench",
        task=Task.MULTICLASS,
        class_names=[str(i) for i in range(CLASSES)],
        classifier=classifier(device),
        front_end=front_end,
        device=device,
        seed=0,
        defaults=ExplainerDefaults(),
        cache_dir=Path("/nonexistent"),
        cache_key="bench",
        options={"epochs": epochs},
        show_progress=False,
    )
    explainer = LEARNED[name](context)
    torch.manual_seed(0)
    synchronize(device)
    start = time.perf_counter()
    facts = explainer.fit(train, valid)
    synchronize(device)
    seconds = time.perf_counter() - start
    return seconds, facts, explainer.state_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--explainers", default=",".join(LEARNED))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"{args.clips} training clips (5 s, 44.1 kHz), {args.clips // 4} validation clips, "
        f"device {device}, {args.threads} thread(s), {platform.machine()}, "
        f"load {os.getloadavg()[0]:.1f} at start"
    )
    print(
        f"{'explainer':10}{'per epoch: off':>16}{'on':>10}{'speed-up':>10}"
        f"{'1st epoch on':>14}{'same fit':>10}"
    )
    for name in args.explainers.split(","):
        runs = {}
        for epochs in (1, args.epochs):
            for cache in (False, True):  # interleaved: both see the same load
                runs[cache, epochs] = fit(name, epochs, args.clips, device, cache)
        extra = args.epochs - 1
        off = (runs[False, args.epochs][0] - runs[False, 1][0]) / extra
        on = (runs[True, args.epochs][0] - runs[True, 1][0]) / extra
        same = _same(runs[False, args.epochs], runs[True, args.epochs])
        print(
            f"{name:10}{off:>14.2f} s{on:>8.2f} s{off / on:>9.2f}x"
            f"{runs[True, 1][0]:>12.2f} s{'yes' if same else 'NO':>10}"
        )


def _same(a, b) -> bool:
    """Same validation history and the same fitted tensors, bit for bit."""
    _, facts_a, state_a = a
    _, facts_b, state_b = b
    history = [k for k in facts_a if "history" in k]
    return all(facts_a[k] == facts_b[k] for k in history) and _equal(state_a, state_b)


def _equal(x, y) -> bool:
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and torch.equal(x, y)
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple):
        return len(x) == len(y) and all(_equal(a, b) for a, b in zip(x, y, strict=True))
    return x == y


if __name__ == "__main__":
    main()
