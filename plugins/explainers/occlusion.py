"""Occlusion (Zeiler & Fergus 2014): the class logit's drop when a patch is removed.

Method: captum's ``Occlusion``: a window slides over the log-mel input, each position is
replaced by the baseline and the drop of the class logit is credited to the window's
bins (averaged where windows overlap). Zeiler & Fergus occlude with a grey square, a
value that carries no content; ours: the baseline is the clip's own noise floor per mel
band (``baseline=floor``, the suite's ``floor`` removal; ``silence`` for the clip's
peak - 80 dB), since a patch of digital silence inside a recording is itself a sound the
classifier reacts to (module docstring of
:mod:`l2i_bench.plugins.explainers._attribution`, with the measurement that made version
2 switch); ``window`` 16 frames x 16 mel bands
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
from l2i_bench.errors import BenchError
from l2i_bench.plugins.explainers._attribution import (
    AttributionExplainer,
    noise_floor_baseline,
    silence_floor,
)
from l2i_bench.types import Option


class OcclusionExplainer(AttributionExplainer):
    name = "occlusion"
    description = "Occlusion: class-logit drop when a log-mel patch is silenced (captum)"
    version = "2"  # 2: the noise-floor baseline (1: silence, below chance on synth overlap)
    passes = (
        "one forward per window position plus one ({window_frames} x {window_mels} log-mel "
        "patches, stride {stride_frames} x {stride_mels}), no backward"
    )
    options: ClassVar[Mapping[str, Option]] = {
        "window_frames": Option(16, "patch length along time (log-mel frames)"),
        "window_mels": Option(16, "patch height along frequency (mel bands)"),
        "stride_frames": Option(8, "step between patches along time (log-mel frames)"),
        "stride_mels": Option(8, "step between patches along frequency (mel bands)"),
        "baseline": Option(
            "floor", "what a patch is replaced by: floor (its bands' noise floor) or silence"
        ),
        "perturbations_per_eval": Option(
            32, "occluded copies per classifier pass (memory only, same result)"
        ),
    }

    def attribute(self, logmel: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        option = self.context.option
        window = (1, int(option("window_frames")), int(option("window_mels")))
        stride = (1, int(option("stride_frames")), int(option("stride_mels")))
        floor_db = self.context.front_end.floor_db
        baselines = {
            "floor": noise_floor_baseline,
            "silence": lambda x: silence_floor(x, floor_db),
        }
        chosen = str(option("baseline")).strip().lower()
        if chosen not in baselines:
            raise BenchError(
                f"occlusion option baseline={chosen!r} is not floor or silence",
                "pass --option occlusion.baseline=floor (default) or silence",
            )
        with torch.no_grad():
            return Occlusion(self.logits).attribute(
                logmel,
                sliding_window_shapes=window,
                strides=stride,
                baselines=baselines[chosen](logmel),
                target=classes,
                perturbations_per_eval=int(option("perturbations_per_eval")),
            )


@hookimpl
def register_explainers(register):
    register(OcclusionExplainer)
