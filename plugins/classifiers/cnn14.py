"""``cnn14``: the PANNs CNN14 (Kong et al. 2020), the classifier SpeechBrain's L-MAC
recipe explains, on its own log-mel bands.

Architecture (Kong, Cao, Iqbal, Wang, Wang, Plumbley, "PANNs: Large-Scale Pretrained
Audio Neural Networks for Audio Pattern Recognition", IEEE/ACM TASLP 2020): ``bn0``
(batch norm over the 64 mel bands), six conv blocks (two 3x3 convolutions without bias,
each with batch norm and ReLU; 64, 128, 256, 512, 1024, 2048 channels) each followed by
a 2x2 average pool (1x1 after the sixth) and dropout 0.2, the mean over frequency, max
plus mean over time, dropout 0.5, ``fc1`` (2048 -> 2048) with ReLU. Module and
parameter names are the published ones (``bn0``, ``conv_block1.conv1.weight``,
``conv_block1.bn1.running_mean``, ..., ``fc1.weight``), so a state dict of the public
AudioSet checkpoint (``Cnn14_mAP=0.431.pth``, its tensors under ``model``) loads with
``--classifier name=cnn14 --classifier pretrained=PATH --classifier width=1``.

What is ours:

* **The head.** PANNs' AudioSet layer ``fc_audioset`` (527 classes) is not built; a
  new ``fc`` (2048 -> C) takes its place on dropout of the embedding, as PANNs'
  transfer model does, and is trained on the dataset (the rest fine-tuned with it).
* **The front end.** CNN14's features are its own: 64 Slaney mel bands from 50 Hz to
  14 kHz of the *power* spectrum, ``10 log10(max(1e-10, .))`` with no floor, as
  published (:attr:`features`). They are computed by the host's front end on the
  host's STFT (44.1 kHz, n_fft 1024: a 23.2 ms window and an 11.6 ms hop, against
  PANNs' 32 ms and 10 ms at 32 kHz), so that every explainer, metric and resynthesis
  works on them as on any classifier's input. The bands are the published ones in Hz,
  and the power scale is the same (the same 1024-sample Hann window, unnormalised);
  the time grid is 16 % coarser, as in SpeechBrain's CNN14 (11.6 ms hop). The
  checkpoint's own STFT and filterbank tensors (``spectrogram_extractor.*``,
  ``logmel_extractor.*``) are checked and left out. SpecAugment and mixup are the
  host's training choices, not the module's.
* **Taps.** ``block1`` ... ``block6`` are the blocks' outputs before pooling, ``(B, C,
  T / 2^(k-1), 64 / 2^(k-1))``; the late taps are ``block4``, ``block5``, ``block6``
  (SpeechBrain's L-MAC decoder reads blocks 3-6). Randomisation levels, top-down:
  ``head`` (``fc``), ``fc1``, ``block6`` ... ``block1`` (with ``bn0``).
* **Width.** ``width`` scales every channel count (``max(4, round(n * width))``) so that
  a narrow CNN14 trains on a CPU; the published network is width 1 (79.7 M parameters
  without the AudioSet head; 1.2 M at width 0.125, 5.0 M at 0.25).

Cost: at width 1, 8.5 G multiply-adds per forward of a 5 s clip on the host's grid (431
frames, convolutions and linear layers counted), against 0.96 G for ``kumar`` at
width 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from l2i_bench import hookimpl
from l2i_bench.classifier import read_state_dict
from l2i_bench.errors import BenchError
from l2i_bench.types import Classifier, FeatureSpec, Task

CHANNELS = (64, 128, 256, 512, 1024, 2048)
MEL_BANDS = 64
FRONT_END_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.")
"""Checkpoint tensors of PANNs' own STFT and filterbank: the host's front end computes
the same bands (checked by shape), so they are not loaded."""
AUDIOSET_HEAD = "fc_audioset."


def scaled(n: int, width: float) -> int:
    return max(4, round(n * width))


class ConvBlock(nn.Module):
    """Two 3x3 convolutions without bias, each with batch norm and ReLU (PANNs'
    ``ConvBlock``, its parameter names); pooling is the caller's."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class Cnn14(Classifier):
    """PANNs CNN14 with a new head: input ``(B, 1, T, 64)`` log-mel power in dB."""

    name = "cnn14"
    description = "PANNs CNN14 (six conv blocks, 2048-d embedding) on its 64 mel bands"
    reference = "Kong et al., PANNs, IEEE/ACM TASLP 2020"
    tap_names = tuple(f"block{k}" for k in range(1, 7))
    late_taps = ("block4", "block5", "block6")
    levels = (
        ("head", ("fc",)),
        ("fc1", ("fc1",)),
        *((f"block{k}", (f"conv_block{k}",)) for k in range(6, 1, -1)),
        ("block1", ("conv_block1", "bn0")),
    )
    min_frames = 32
    """Five 2x average pools must leave one time frame."""
    features = FeatureSpec(n_mels=MEL_BANDS, fmin=50.0, fmax=14_000.0, power=2.0, top_db=None)

    def __init__(self, num_classes: int, task: Task, width: float = 1.0) -> None:
        super().__init__(num_classes, task, width)
        channels = [scaled(n, width) for n in CHANNELS]
        self.bn0 = nn.BatchNorm2d(MEL_BANDS)
        inputs = [1, *channels[:-1]]
        for k, (c_in, c_out) in enumerate(zip(inputs, channels, strict=True), start=1):
            setattr(self, f"conv_block{k}", ConvBlock(c_in, c_out))
        self.fc1 = nn.Linear(channels[-1], channels[-1])
        self.fc = nn.Linear(channels[-1], self.num_classes)
        self.tap_channels = {f"block{k}": c for k, c in enumerate(channels, start=1)}

    def forward_with_taps(
        self, logmel: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.check_input(logmel, MEL_BANDS)
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)  # normalise each mel band
        taps: dict[str, torch.Tensor] = {}
        for k in range(1, 7):
            x = getattr(self, f"conv_block{k}")(x)
            taps[f"block{k}"] = x
            if k < 6:
                x = F.avg_pool2d(x, 2)
            x = F.dropout(x, 0.2, self.training)
        x = x.mean(dim=3)  # over frequency
        x = x.amax(dim=2) + x.mean(dim=2)  # over time: max plus mean
        x = F.dropout(x, 0.5, self.training)
        x = F.relu(self.fc1(x))
        logits = self.fc(F.dropout(x, 0.5, self.training))
        return logits, taps

    def load_pretrained(self, path: Path) -> dict[str, Any]:
        """Load a CNN14 state dict under the published names (PANNs' AudioSet checkpoint,
        or one fine-tuned elsewhere): every backbone tensor must be there with the
        shape of this width; the AudioSet head and the front end's tensors are left out
        (the latter checked to be 64 bands); a ``module.`` or ``base.`` prefix is
        accepted. The first key that does not fit is named."""
        path = Path(path)
        fix = (
            "pass a CNN14 state dict with the PANNs layer names (e.g. Cnn14_mAP=0.431.pth, "
            "tensors under 'model') and --classifier width=1 for the published weights"
        )
        loaded = read_state_dict(path, fix)
        own = self.state_dict()
        update: dict[str, torch.Tensor] = {}
        skipped: list[str] = []
        for raw_key, tensor in loaded.items():
            key = str(raw_key)
            for prefix in ("module.", "base."):
                key = key.removeprefix(prefix)
            if key.startswith(AUDIOSET_HEAD):
                skipped.append(key)
                continue
            if key.startswith(FRONT_END_PREFIXES):
                if key == "logmel_extractor.melW" and tensor.shape[-1] != MEL_BANDS:
                    raise BenchError(
                        f"pretrained checkpoint {path}: {raw_key} has {tensor.shape[-1]} mel "
                        f"bands, CNN14 here has {MEL_BANDS}",
                        "use a CNN14 trained on 64 mel bands (the published one)",
                    )
                skipped.append(key)
                continue
            if key not in own:
                raise BenchError(
                    f"pretrained checkpoint {path}: {raw_key} is not a CNN14 layer "
                    f"(first unknown key; CNN14 has e.g. conv_block1.conv1.weight, fc1.weight)",
                    fix,
                )
            if tuple(tensor.shape) != tuple(own[key].shape):
                raise BenchError(
                    f"pretrained checkpoint {path}: {raw_key} has shape "
                    f"{tuple(tensor.shape)} but CNN14 at width {self.width:g} expects "
                    f"{tuple(own[key].shape)}",
                    "set --classifier width to the checkpoint's (1 for the published "
                    "weights), or use a checkpoint of this width",
                )
            update[key] = tensor.to(own[key].dtype)
        head = {k for k in own if k.startswith("fc.")}
        missing = [k for k in own if k not in update and k not in head]
        if missing:
            raise BenchError(
                f"pretrained checkpoint {path} lacks {len(missing)} CNN14 tensor(s), first "
                f"{missing[0]}",
                fix,
            )
        own.update(update)
        self.load_state_dict(own)
        return {"loaded": len(update), "skipped": len(skipped)}


@hookimpl
def register_classifiers(register) -> None:
    register(Cnn14)
