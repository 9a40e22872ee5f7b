"""Size and training speed of the Kumar et al. classifier.

Prints the parameter count at each width and the seconds per training epoch (train
steps + precise-BN pass + validation) on ``--clips`` 5 s clips. By default the clips
are seeded noise, since speed does not depend on content; ``--data-dir`` uses the
real ESC-50 FLAC files instead (decoding time is reported separately).

    .venv/bin/python benchmarks/bench_classifier.py --width 0.25 --epochs 2
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from l2i_bench.audio import SAMPLE_RATE, FrontEnd
from l2i_bench.classifier import ClassifierConfig, count_parameters
from l2i_bench.classifier import train_or_load_classifier as train_classifier
from l2i_bench.data import ClipSet
from l2i_bench.plugins.classifiers.kumar import KumarCNN
from l2i_bench.types import Clip, Task


def synthetic_clips(count: int, seconds: float, num_classes: int, seed: int) -> ClipSet:
    rng = np.random.default_rng(seed)
    waves = 0.1 * rng.standard_normal((count, round(seconds * SAMPLE_RATE))).astype(np.float32)
    clips = [Clip(f"noise-{i}", Path(f"noise-{i}.wav"), (i % num_classes,)) for i in range(count)]
    return ClipSet(clips, waves, num_classes, FrontEnd("cpu"))


def esc50_clips(data_dir: Path, count: int) -> ClipSet:
    with open(data_dir / "meta" / "esc50.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:count]
    clips = [
        Clip(r["filename"], data_dir / "audio" / r["filename"], (int(r["target"]),)) for r in rows
    ]
    return ClipSet.load(clips, 5.0, 50, FrontEnd("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--valid-clips", type=int, default=80)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", type=Path, default=None, help="real ESC-50 folder")
    args = parser.parse_args()

    report: dict[str, object] = {"torch_threads": torch.get_num_threads()}
    report["parameters"] = {
        str(w): count_parameters(KumarCNN(50, Task.MULTICLASS, w)) for w in (1.0, 0.5, 0.25, 0.125)
    }
    start = time.perf_counter()
    if args.data_dir is not None:
        clips = esc50_clips(args.data_dir, args.clips + args.valid_clips)
    else:
        clips = synthetic_clips(args.clips + args.valid_clips, 5.0, 50, seed=0)
    report["load_seconds"] = round(time.perf_counter() - start, 2)
    train = clips.subset(range(args.clips))
    valid = clips.subset(range(args.clips, len(clips)))

    config = ClassifierConfig(
        width=args.width, epochs=args.epochs, batch_size=args.batch_size, patience=args.epochs
    )
    with tempfile.TemporaryDirectory() as cache:
        result = train_classifier(
            train, valid, task=Task.MULTICLASS, num_classes=50, config=config,
            cache_dir=Path(cache), cache_key="bench", device=args.device,
        )  # fmt: skip
    seconds = [row["seconds"] for row in result.history]
    report.update(
        width=args.width,
        train_clips=len(train),
        valid_clips=len(valid),
        device=args.device,
        epoch_seconds=[round(s, 2) for s in seconds],
        median_epoch_seconds=round(float(np.median(seconds)), 2),
        median_step_seconds=round(float(np.median([r["step_seconds"] for r in result.history])), 2),
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
