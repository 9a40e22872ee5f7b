"""Benchmark explainers on your own trained model: one file, one class.

``MyNet`` stands for the ``torch.nn.Module`` you trained elsewhere (on the log-mel the
host computes: 44.1 kHz, 128 Slaney mel bands of the magnitude in dB, 80 dB floor; or
declare other bands in ``features``). ``MyClassifier`` wraps it for l2i-bench: it names
the layers explainers may read (taps), its three late layers, the randomisation levels
of the sanity check, and loads your weights. Install the folder as a package (its
``pyproject.toml`` declares the entry point) and run:

    l2i-bench plugins                       # lists "classifier my-cnn"
    l2i-bench run --dataset synth --explainers gradcam,saliency,random \\
        --classifier name=my-cnn --classifier pretrained=my_weights.pt
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from l2i_bench import hookimpl
from l2i_bench.classifier import read_state_dict
from l2i_bench.errors import BenchError
from l2i_bench.types import Classifier, Task


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class MyNet(nn.Module):
    """Your model, as you trained it: three conv blocks and a linear head."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.block1 = _block(1, 16)
        self.block2 = _block(16, 32)
        self.block3 = _block(32, 64)
        self.head = nn.Linear(64, num_classes)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(self.block1(logmel), 2)
        x = nn.functional.max_pool2d(self.block2(x), 2)
        return self.head(self.block3(x).mean(dim=(2, 3)))


class MyClassifier(Classifier):
    """``MyNet`` for l2i-bench: the same modules under the same names (so its state dict
    loads as is), the forward pass returning the taps, and the contract's metadata."""

    name = "my-cnn"
    description = "Example: a CNN trained elsewhere, wrapped in one file"
    reference = "examples/own_classifier/my_classifier.py"
    trainable = False  # load-only: used as loaded, never trained by the host
    tap_names = ("block1", "block2", "block3")
    late_taps = ("block1", "block2", "block3")  # earliest first
    levels = (
        ("head", ("head",)),
        ("block3", ("block3",)),
        ("block2", ("block2",)),
        ("block1", ("block1",)),
    )
    min_frames = 4  # two 2x pools

    def __init__(self, num_classes: int, task: Task, width: float = 1.0) -> None:
        super().__init__(num_classes, task, width)
        net = MyNet(num_classes)
        self.block1, self.block2, self.block3, self.head = (
            net.block1,
            net.block2,
            net.block3,
            net.head,
        )
        self.tap_channels = {"block1": 16, "block2": 32, "block3": 64}

    def forward_with_taps(
        self, logmel: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.check_input(logmel, 128)
        t1 = self.block1(logmel)
        t2 = self.block2(nn.functional.max_pool2d(t1, 2))
        t3 = self.block3(nn.functional.max_pool2d(t2, 2))
        return self.head(t3.mean(dim=(2, 3))), {"block1": t1, "block2": t2, "block3": t3}

    def load_pretrained(self, path: Path) -> dict[str, Any]:
        state = read_state_dict(path, "save your model with torch.save(model.state_dict(), PATH)")
        rows = state.get("head.weight")
        if rows is not None and rows.shape[0] != self.num_classes:
            raise BenchError(
                f"{path} was trained for {rows.shape[0]} classes, the dataset has {self.num_classes}",
                "use weights trained on this dataset's classes, in its class order",
            )
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BenchError(
                f"{path} does not fit MyNet: missing {missing[:3]}, unexpected {unexpected[:3]}",
                "save the state dict of the same architecture",
            )
        return {"loaded": len(state)}


@hookimpl
def register_classifiers(register) -> None:
    register(MyClassifier)
