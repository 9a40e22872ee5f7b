"""Seconds per L-MAC training step, this checkout against an earlier commit's code.

L-MAC's decoder outputs one mask channel per class; training explains only the classes
the classifier decides. Until 087e00d every step upsampled all ``C`` channels to the
``(F, T)`` STFT grid and back-propagated through them; now only the decided (row,
class) pairs are taken past the coarse grid. This script times one training step
(classifier taps, decoder, the L-MAC objective's two classifier passes, backward, Adam)
on a batch of 16 clips in two shapes, ESC-50's (50 classes, 5 s) and synth's (10
classes, 2 s), Kumar's CNN at width 0.25, one thread, this checkout and ``--against
REV`` (imported ahead of the installed package in a subprocess, as
``benchmarks/against.py``), interleaved, best of ``--repeats``. It prints seconds per
step, the ratio, and the two codes' first-step losses, which must agree (the decoder's
logits are the same bit for bit; training then differs by rounding, about 1e-7).

    .venv/bin/python benchmarks/bench_lmac.py --against 2914bc1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from against import code_versions, run_json

SHAPES = {"esc50": (50, 5.0), "synth": (10, 2.0)}


def worker(shape: str, steps: int) -> dict:
    import math

    import torch

    from l2i_bench.audio import SAMPLE_RATE, FrontEnd
    from l2i_bench.plugins.classifiers.kumar import KumarCNN
    from l2i_bench.plugins.explainers.lmac import LmacExplainer
    from l2i_bench.types import AudioBatch, ExplainerContext, ExplainerDefaults, Task

    torch.set_num_threads(1)
    classes, seconds = SHAPES[shape]
    front_end = FrontEnd("cpu")
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 300 + 2000 * torch.rand(16, 1, generator=gen)
    wave = 0.3 * torch.sin(2 * math.pi * pitch * t) + 0.05 * torch.randn(16, len(t), generator=gen)
    batch = AudioBatch(
        [f"c{i}" for i in range(16)],
        wave,
        front_end.stft(wave),
        front_end.logmel(wave),
        torch.zeros(16, classes),
    )
    torch.manual_seed(0)
    net = KumarCNN(classes, Task.MULTICLASS, 0.25).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    context = ExplainerContext(
        dataset_name="bench",
        task=Task.MULTICLASS,
        class_names=[str(i) for i in range(classes)],
        classifier=net,
        front_end=front_end,
        device=torch.device("cpu"),
        seed=0,
        defaults=ExplainerDefaults(),
        cache_dir=Path(tempfile.gettempdir()),
        cache_key="bench",
        options={},
        show_progress=False,
    )
    explainer = LmacExplainer(context)
    optimiser = torch.optim.Adam(explainer.decoder.parameters(), lr=2e-4)
    times, losses = [], []
    for _ in range(steps):
        started = time.perf_counter()
        loss = explainer._step_loss(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - started)
        losses.append(float(loss))
    return {"seconds": min(times[1:]), "first_loss": losses[0]}  # the first warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REV", help="commit to compare with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="steps per process (first dropped)")
    parser.add_argument("--worker", choices=SHAPES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is a warm-up)")
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps)))
        return
    with code_versions(args.against) as modes:
        best: dict[tuple[str, str], dict] = {}
        for _ in range(args.repeats):  # interleaved: both see the same load
            for shape in SHAPES:
                for name, path in modes.items():
                    result = run_json(
                        __file__, ["--worker", shape, "--steps", str(args.steps)], path
                    )
                    print(f"  {shape} {name}: {result['seconds']:.2f} s", file=sys.stderr)
                    kept = best.setdefault((shape, name), result)
                    kept["seconds"] = min(kept["seconds"], result["seconds"])
    print(
        f"one L-MAC training step, batch 16, one thread, "
        f"{platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.1f}; "
        f"best of {args.repeats} x {args.steps - 1} steps"
    )
    names = list(modes)
    header = f"{'shape':8}" + "".join(f"{n[:16]:>18}" for n in names)
    print(header + (f"{'speed-up':>10}{'first loss':>24}" if len(names) == 2 else ""))
    for shape in SHAPES:
        line = f"{shape:8}" + "".join(f"{best[(shape, n)]['seconds']:>16.2f} s" for n in names)
        if len(names) == 2:
            old, new = (best[(shape, n)] for n in names)
            line += f"{old['seconds'] / new['seconds']:>9.2f}x"
            line += f"{old['first_loss']:>12.6f}{new['first_loss']:>12.6f}"
        print(line)


if __name__ == "__main__":
    main()
