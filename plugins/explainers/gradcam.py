"""Grad-CAM (Selvaraju et al. 2017) at the classifier's late layers.

Method: for a tapped layer with activations ``A_k`` (channel ``k``), weights
``w_k = mean_{t,f} d logit_c / d A_k`` and the map ``ReLU(sum_k w_k A_k)``. Ours: the taps
are read through the classifier contract (``forward_with_taps``: B4, B5 and B6, the
layers L2I's interpreter reads), one map per layer ``layers`` (default ``B4,B5,B6``),
each upsampled bilinearly to the log-mel grid and divided by its maximum per clip, then
averaged over the layers, so that B6's coarse localisation and B4's finer one both
count; the mask rule of :mod:`l2i_bench.plugins.explainers._attribution` follows. Cost:
1 forward + 1 backward pass per clip (all layers from one pass).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F

from l2i_bench import hookimpl
from l2i_bench.errors import BenchError
from l2i_bench.plugins.explainers._attribution import AttributionExplainer
from l2i_bench.types import Option, late_taps_of


def gradcam_maps(
    logits: torch.Tensor, taps: dict[str, torch.Tensor], classes: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Grad-CAM map ``(B, T', F')`` of each tap for each row's class logit."""
    score = logits.gather(1, classes[:, None]).sum()
    grads = torch.autograd.grad(score, list(taps.values()))
    maps = {}
    for (name, activation), grad in zip(taps.items(), grads, strict=True):
        weights = grad.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        maps[name] = F.relu((weights * activation).sum(dim=1)).detach()
    return maps


class GradCamExplainer(AttributionExplainer):
    name = "gradcam"
    groups = frozenset({"quick"})
    description = "Grad-CAM at the classifier's three late taps (B4-B6 on kumar), averaged"
    version = "1"
    passes = "1 forward + 1 backward"
    options: ClassVar[Mapping[str, Option]] = {
        "layers": Option(
            "late",
            "comma-separated classifier taps whose maps are averaged; 'late': the "
            "classifier's three late taps (B4, B5, B6 on kumar)",
        ),
    }

    def attribute(self, logmel: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        classifier = self.context.classifier
        spec = str(self.context.option("layers")).strip()
        if spec == "late":
            wanted = list(late_taps_of(classifier, self.name))
        else:
            wanted = [s.strip() for s in spec.split(",") if s.strip()]
        available = tuple(classifier.tap_names)
        unknown = [name for name in wanted if name not in available]
        if unknown or not wanted:
            raise BenchError(
                f"gradcam: layer(s) {', '.join(unknown) or '(none)'} are not taps of this "
                f"classifier ({', '.join(available)})",
                f"set --option gradcam.layers to some of {','.join(available)} (or 'late')",
            )
        logmel = logmel.clone().requires_grad_(True)
        logits, taps = self.context.classifier.forward_with_taps(logmel)
        maps = gradcam_maps(logits, {name: taps[name] for name in wanted}, classes)
        frames, mels = logmel.shape[2:]
        total = torch.zeros(logmel.shape[0], frames, mels, device=logmel.device)
        for cam in maps.values():
            up = F.interpolate(
                cam[:, None], size=(frames, mels), mode="bilinear", align_corners=False
            )
            up = up[:, 0].clamp_min(0.0)
            total += up / up.amax(dim=(1, 2), keepdim=True).clamp_min(1e-30)
        return (total / len(maps))[:, None]


@hookimpl
def register_explainers(register):
    register(GradCamExplainer)
