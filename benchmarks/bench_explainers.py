"""Explain time per clip of the attribution family, L-MAC and WAM on the published
``synth`` classifier (fold 1, seed 0): the numbers behind the README's explainer table.

Runs each explainer on the same test clips in one batch size, after one warm-up batch,
and prints milliseconds per clip (median of the batches) and, for the learned ones, the
fit seconds (L-MAC with ``--lmac-epochs`` epochs). CPU unless CUDA is present.

    .venv/bin/python benchmarks/bench_explainers.py --clips 16 --cache-dir .cache
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
from l2i_bench.plugins.explainers.gradcam import GradCamExplainer
from l2i_bench.plugins.explainers.gradient_shap import GradientShapExplainer
from l2i_bench.plugins.explainers.integrated_gradients import IntegratedGradientsExplainer
from l2i_bench.plugins.explainers.lmac import LmacExplainer
from l2i_bench.plugins.explainers.occlusion import OcclusionExplainer
from l2i_bench.plugins.explainers.saliency import SaliencyExplainer
from l2i_bench.plugins.explainers.smoothgrad import SmoothGradExplainer
from l2i_bench.plugins.explainers.wam import WamIntegratedExplainer, WamSmoothExplainer
from l2i_bench.registry import load_registry
from l2i_bench.timing import resolve_device
from l2i_bench.workspace import FoldWorkspace, RunConfig

EXPLAINERS = [
    SaliencyExplainer,
    GradCamExplainer,
    IntegratedGradientsExplainer,
    SmoothGradExplainer,
    GradientShapExplainer,
    OcclusionExplainer,
    WamIntegratedExplainer,
    WamSmoothExplainer,
    LmacExplainer,
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    parser.add_argument("--lmac-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    apply_determinism(args.threads)
    device = resolve_device("auto")
    dataset = load_registry().dataset("synth")(None, seed=0)
    dataset.prepare()
    config = RunConfig(
        dataset="synth", explainers=[], cache_dir=args.cache_dir, show_progress=False
    )
    ws = FoldWorkspace(dataset, "1", config, device)
    rows = np.arange(min(args.clips, len(ws.test)))
    classes = ws.test_logits.argmax(1)
    print(
        f"synth fold 1 classifier {ws.classifier.checkpoint_sha256[:10]}, device {device}, "
        f"torch threads {torch.get_num_threads()}, {len(rows)} clips in batches of "
        f"{args.batch_size}"
    )
    print(f"{'explainer':<22} {'ms/clip':>9} {'fit s':>7}")
    for cls in EXPLAINERS:
        options = {"epochs": str(args.lmac_epochs)} if cls is LmacExplainer else {}
        explainer = cls(replace(ws.context(cls.name), options=options))
        fit_seconds = float("nan")
        if cls.needs_training:
            started = time.perf_counter()
            explainer.fit(ws.train, ws.valid)
            fit_seconds = time.perf_counter() - started
        times = []
        batches = [rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
        for i, chunk in enumerate([batches[0], *batches]):  # the first is a warm-up
            batch = ws.test.batch(chunk)
            torch.manual_seed(0)
            started = time.perf_counter()
            explainer.explain(batch, classes[torch.from_numpy(chunk)])
            if i:
                times.append(1000 * (time.perf_counter() - started) / len(chunk))
        print(f"{cls.name:<22} {statistics.median(times):>9.1f} {fit_seconds:>7.1f}")


if __name__ == "__main__":
    main()
