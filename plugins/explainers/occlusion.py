"""Occlusion (Zeiler & Fergus 2014): the class logit's drop when a patch is silenced.

Method: captum's ``Occlusion``: a window slides over the log-mel input, each position is
replaced by the baseline and the drop of the class logit is credited to the window's
bins (averaged where windows overlap). Ours: the baseline is the clip's silence floor
(:mod:`l2i_bench.plugins.explainers._attribution`); ``window`` 16 frames x 16 mel bands
(0.19 s x an eighth of the bands) with ``stride`` 8 x 8 (options ``window_frames``,
``window_mels``, ``stride_frames``, ``stride_mels``), ``perturbations_per_eval`` 32
copies per forward pass. Cost: one forward pass per window position plus one, no
backward: ``(floor((T - 16) / 8) + 1) x 15 + 1`` per clip, 301 for a 2 s clip (T = 173)
and 781 for a 5 s one (T = 431).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from captum.attr import Occlusion

from l2i_bench import hookimpl
from l2i_bench.plugins.explainers._attribution import AttributionExplainer, silence_floor
from l2i_bench.types import Option


class OcclusionExplainer(AttributionExplainer):
    name = "occlusion"
    description = "Occlusion: class-logit drop when a log-mel patch is silenced (captum)"
    version = "1"
    passes = (
        "one forward per window position plus one ({window_frames} x {window_mels} log-mel "
        "patches, stride {stride_frames} x {stride_mels}), no backward"
    )
    options: ClassVar[Mapping[str, Option]] = {
        "window_frames": Option(16, "patch length along time (log-mel frames)"),
        "window_mels": Option(16, "patch height along frequency (mel bands)"),
        "stride_frames": Option(8, "step between patches along time (log-mel frames)"),
        "stride_mels": Option(8, "step between patches along frequency (mel bands)"),
        "perturbations_per_eval": Option(
            32, "occluded copies per classifier pass (memory only, same result)"
        ),
    }

    def attribute(self, logmel: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        option = self.context.option
        window = (1, int(option("window_frames")), int(option("window_mels")))
        stride = (1, int(option("stride_frames")), int(option("stride_mels")))
        with torch.no_grad():
            return Occlusion(self.logits).attribute(
                logmel,
                sliding_window_shapes=window,
                strides=stride,
                baselines=silence_floor(logmel),
                target=classes,
                perturbations_per_eval=int(option("perturbations_per_eval")),
            )


@hookimpl
def register_explainers(register):
    register(OcclusionExplainer)
