"""``kumar``: Kumar et al.'s CNN with L2I's head, the classifier of the L2I paper.

Architecture (Kumar, Khadkevich and Fügen, ICASSP 2018, "weak_mxh64_1024"; method notes
§1.1-§1.2): six conv blocks B1-B6 (Conv3x3+BN+ReLU, two convs per block for B1-B5 and
one for B6, ``MaxPool2d(2)`` after each), F1 (a 2x2 conv without padding +BN+ReLU to
1024 channels), then the head L2I trained for ESC-50 (``FtEx``): 1x1 conv to 256
channels + ReLU, global pooling, ``Dropout(0.2)``, ``Linear(-> C)``. Interpreters read
the B4/B5/B6 conv outputs *before* their max-pool (``late_taps``).

Global pooling is an **average**. The L2I code has ``max_pool2d`` fixed, but its comment
says the ESC-50 experiments used ``avg_pool2d`` (only the final SONYC-UST model used
max); average pooling is also the smoother choice for training from scratch on small
folds. Pooling has no parameters, so a checkpoint loads either way.

``--classifier pretrained=PATH`` loads Kumar et al.'s AudioSet backbone (B1-B6, F1)
from a local state dict, under their key names (``layer1`` ... ``layer18``) or ours;
heads are skipped. ``width`` scales every channel count
(``ch(n) = max(4, round(n * width))``) so the synth default and the tests stay fast;
1.0 is the paper's network. Cost: 4.7 M parameters at width 1.0 (0.30 M at 0.25),
0.96 G multiply-adds per forward of a 5 s clip at width 1.

This was the only classifier before classifiers became plugins; its cache keys and
weights are unchanged by that move, so published cells stay valid.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from l2i_bench import hookimpl
from l2i_bench.audio import N_MELS
from l2i_bench.classifier import read_state_dict
from l2i_bench.errors import BenchError
from l2i_bench.types import Classifier, Task

TAP_NAMES: tuple[str, ...] = ("B4", "B5", "B6")
MIN_FRAMES = 64
"""Shortest input: six 2x pools must leave at least one time frame for F1."""

# Which Kumar et al. layer (``layer{n}`` in ``weak_mxh64_1024``) each of our conv units
# is, so that the AudioSet checkpoint's keys can be translated (method notes §1.1).
KUMAR_LAYER_OF: dict[str, int] = {
    "b1.0": 1,
    "b1.1": 2,
    "b2.0": 4,
    "b2.1": 5,
    "b3.0": 7,
    "b3.1": 8,
    "b4.0": 10,
    "b4.1": 11,
    "b5.0": 13,
    "b5.1": 14,
    "b6.0": 16,
    "f1": 18,
}
_OUR_UNIT_OF_KUMAR = {n: unit for unit, n in KUMAR_LAYER_OF.items()}
BACKBONE_PREFIXES: tuple[str, ...] = ("b1.", "b2.", "b3.", "b4.", "b5.", "b6.", "f1.")


def scaled_channels(n: int, width: float) -> int:
    """Channels of a layer that has ``n`` at width 1.0 (never fewer than 4)."""
    return max(4, round(n * width))


def _conv_unit(c_in: int, c_out: int, kernel: int = 3, padding: int = 1) -> nn.Sequential:
    """Conv + BN + ReLU as one Sequential, laid out like Kumar's ``layer{n}`` so a
    checkpoint's ``.0`` (conv) and ``.1`` (BN) keys map one to one."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=kernel, padding=padding),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class KumarCNN(Classifier):
    """Kumar et al. (2018) CNN with L2I's classification head.

    Input ``(B, 1, T, 128)`` log-mel in dB (time on the height axis); output logits
    ``(B, C)``. Taps: B4 ``(T//8, 16)``, B5 ``(T//16, 8)``, B6 ``(T//32, 4)``.
    """

    name = "kumar"
    description = "Kumar et al.'s CNN (B1-B6, F1) with L2I's head; the L2I paper's classifier"
    reference = "Kumar, Khadkevich, Fügen, ICASSP 2018; head: Parekh et al., NeurIPS 2022"
    tap_names = TAP_NAMES
    late_taps = ("B4", "B5", "B6")
    levels = (
        ("head", ("head_conv", "fc")),
        ("f1", ("f1",)),
        ("b6", ("b6",)),
        ("b5", ("b5",)),
        ("b4", ("b4",)),
        ("b3", ("b3",)),
        ("b2", ("b2",)),
        ("b1", ("b1",)),
    )
    min_frames = MIN_FRAMES

    def __init__(self, num_classes: int, task: Task, width: float = 1.0) -> None:
        super().__init__(num_classes, task, width)

        def ch(n: int) -> int:
            return scaled_channels(n, width)

        self.b1 = nn.Sequential(_conv_unit(1, ch(16)), _conv_unit(ch(16), ch(16)))
        self.b2 = nn.Sequential(_conv_unit(ch(16), ch(32)), _conv_unit(ch(32), ch(32)))
        self.b3 = nn.Sequential(_conv_unit(ch(32), ch(64)), _conv_unit(ch(64), ch(64)))
        self.b4 = nn.Sequential(_conv_unit(ch(64), ch(128)), _conv_unit(ch(128), ch(128)))
        self.b5 = nn.Sequential(_conv_unit(ch(128), ch(256)), _conv_unit(ch(256), ch(256)))
        self.b6 = nn.Sequential(_conv_unit(ch(256), ch(512)))
        self.f1 = _conv_unit(ch(512), ch(1024), kernel=2, padding=0)
        self.pool = nn.MaxPool2d(2)
        # L2I's FtEx head (the AudioSet 527-way layer19 is not built: L2I discards it).
        self.head_conv = nn.Conv2d(ch(1024), ch(256), kernel_size=1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(ch(256), self.num_classes)
        self.tap_channels = {"B4": ch(128), "B5": ch(256), "B6": ch(512)}

    def forward_with_taps(
        self, logmel: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the B4/B5/B6 conv outputs before pooling, ``(B, C_tap, T', F')``."""
        self.check_input(logmel, N_MELS)
        x = self.pool(self.b1(logmel))
        x = self.pool(self.b2(x))
        x = self.pool(self.b3(x))
        t4 = self.b4(x)
        t5 = self.b5(self.pool(t4))
        t6 = self.b6(self.pool(t5))
        x = self.pool(t6)
        if x.shape[2] < 2:
            # Clips shorter than 128 frames (~1.5 s) leave one frame for the 2x2 F1
            # conv; repeating it keeps short test clips usable and never touches the
            # 5 s / 10 s shapes of the paper.
            x = F.pad(x, (0, 0, 0, 2 - x.shape[2]), mode="replicate")
        x = self.f1(x)
        x = F.relu(self.head_conv(x))
        x = x.mean(dim=(2, 3))  # global average pool, see the module docstring
        logits = self.fc(self.dropout(x))
        return logits, {"B4": t4, "B5": t5, "B6": t6}

    def load_pretrained(self, path: Path) -> dict[str, Any]:
        """Copy the backbone weights (B1-B6, F1) of a local checkpoint into the model.

        Heads are skipped (the AudioSet 527-way layer or another dataset's classifier).
        Shapes must match exactly: a width or architecture mismatch is an error, never a
        silent partial load. Returns counts of loaded and skipped tensors.
        """
        fix = (
            "pass a PyTorch state dict of the Kumar et al. CNN (raw, or under "
            "'state_dict'), saved with torch.save; convert an old pickled model with "
            "torch.save(model.state_dict(), 'weights.pt')"
        )
        loaded = read_state_dict(Path(path), fix)
        own = self.state_dict()
        update: dict[str, torch.Tensor] = {}
        skipped = 0
        for key, tensor in loaded.items():
            ours = _backbone_key(str(key))
            if ours is None or ours not in own:
                skipped += 1
                continue
            if tuple(tensor.shape) != tuple(own[ours].shape):
                raise BenchError(
                    f"pretrained checkpoint {path}: {key} has shape {tuple(tensor.shape)} "
                    f"but the classifier (width {self.width}) expects {tuple(own[ours].shape)}",
                    "set the classifier width to the checkpoint's (1.0 for Kumar et al.'s "
                    "AudioSet weights) or use a checkpoint of this width",
                )
            update[ours] = tensor.to(own[ours].dtype)
        if not update:
            raise BenchError(
                f"pretrained checkpoint {path} has no backbone weights of the Kumar et al. "
                f"CNN ({len(loaded)} keys, none named like layer1..layer18 or b1..f1)",
                fix,
            )
        own.update(update)
        self.load_state_dict(own)
        return {"loaded": len(update), "skipped": skipped}


def _backbone_key(key: str) -> str | None:
    """Our backbone key for a checkpoint key, or ``None`` for heads/unknown keys.

    Accepts our own names (``b4.1.0.weight``), Kumar et al.'s (``layer11.0.weight``)
    and either behind a ``module.`` (DataParallel) or ``fe.``-style wrapper prefix.
    """
    key = re.sub(r"^module\.", "", key)
    for _ in range(2):
        if key.startswith(BACKBONE_PREFIXES):
            return key
        match = re.match(r"^layer(\d+)\.(.+)$", key)
        if match:
            unit = _OUR_UNIT_OF_KUMAR.get(int(match.group(1)))
            return f"{unit}.{match.group(2)}" if unit is not None else None
        if "." not in key:
            return None
        key = key.split(".", 1)[1]  # drop one wrapper prefix and retry
    return None


@hookimpl
def register_classifiers(register) -> None:
    register(KumarCNN)
