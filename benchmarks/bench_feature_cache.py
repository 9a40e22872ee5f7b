"""Seconds per training epoch with and without the feature cache (:mod:`l2i_bench.data`).

The classifier and the learned explainers iterate the training split for 15 to 60
epochs; before the cache, every batch recomputed its STFT and log-mel. This script
trains the classifier and fits each learned explainer on the same ESC-50-shaped split
(``--clips`` synthetic 5 s clips at 44.1 kHz, 50 classes, Kumar's CNN at width 0.25),
with the cache off and on, interleaved, best of ``--repeats``, for 1 and for
``--epochs`` epochs: the difference divided by the extra epochs is the steady per-epoch
time; ``fit, 1 epoch`` is the whole one-epoch fit with
the cache (building it, set-up and validation included). It also checks that both fits
give the same numbers (validation history and fitted tensors): the cache's contract.

    .venv/bin/python benchmarks/bench_feature_cache.py --clips 48 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from l2i_bench.audio import SAMPLE_RATE, FrontEnd
from l2i_bench.classifier import ClassifierConfig, train_or_load_classifier
from l2i_bench.data import ClipSet
from l2i_bench.plugins.classifiers.kumar import KumarCNN
from l2i_bench.plugins.explainers.flint import FlintExplainer
from l2i_bench.plugins.explainers.l2i import L2IExplainer
from l2i_bench.plugins.explainers.lmac import LmacExplainer
from l2i_bench.plugins.explainers.vibi import VibiExplainer
from l2i_bench.timing import synchronize
from l2i_bench.types import Clip, ExplainerContext, ExplainerDefaults, Task

CLASSES = 50
LEARNED = {
    "lmac": LmacExplainer,
    "flint": FlintExplainer,
    "vibi": VibiExplainer,
    "l2i": L2IExplainer,
}
"""Plus ``classifier``: Kumar's CNN trained by the host (the same batches)."""


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
    if name == "classifier":
        return fit_classifier(train, valid, epochs, device)
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


def fit_classifier(train: ClipSet, valid: ClipSet, epochs: int, device: torch.device):
    """Seconds of training Kumar's CNN from scratch (an empty cache folder), its
    validation history and its weights."""
    config = ClassifierConfig(width=0.25, epochs=epochs, patience=epochs)
    with tempfile.TemporaryDirectory() as cache_dir:
        synchronize(device)
        start = time.perf_counter()
        trained = train_or_load_classifier(
            train,
            valid,
            task=Task.MULTICLASS,
            num_classes=CLASSES,
            config=config,
            cache_dir=Path(cache_dir),
            cache_key="bench",
            device=device,
            show_progress=False,
        )
        synchronize(device)
        seconds = time.perf_counter() - start
    return seconds, {"history": trained.history}, trained.model.state_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--explainers", default=",".join(["classifier", *LEARNED]))
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
        f"{'fit, 1 epoch':>14}{'same fit':>10}"
    )
    for name in args.explainers.split(","):
        runs: dict = {}
        for _ in range(args.repeats):  # interleaved, best of: the CPUs may be shared
            for epochs in (1, args.epochs):
                for cache in (False, True):
                    result = fit(name, epochs, args.clips, device, cache)
                    best = runs.get((cache, epochs))
                    if best is None or result[0] < best[0]:
                        runs[cache, epochs] = result
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
    return all(_untimed(facts_a[k]) == _untimed(facts_b[k]) for k in history) and _equal(
        state_a, state_b
    )


def _untimed(history):
    """A history without its wall-clock entries (they differ between any two runs)."""
    if isinstance(history, list):
        return [_untimed(h) for h in history]
    if isinstance(history, dict):
        return {k: v for k, v in history.items() if "second" not in k and "time" not in k}
    return history


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
