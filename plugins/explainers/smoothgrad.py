"""SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies of the input.

Method: captum's ``NoiseTunnel(Saliency)`` with ``nt_type="smoothgrad"``: the mean of
``|gradient|`` over ``samples`` copies with Gaussian noise. Ours: the noise level follows
the paper's advice of 10-20 % of the input's range: ``noise`` (default 0.15) times the
log-mel input's 80 dB range, i.e. a standard deviation of 12 dB; ``samples`` default 16.
Noise is drawn from torch's generator, seeded per cell by the runner. Cost: ``samples``
forward + backward passes per clip (16 by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from captum.attr import NoiseTunnel, Saliency

from l2i_bench import hookimpl
from l2i_bench.plugins.explainers._attribution import AttributionExplainer
from l2i_bench.types import Option


class SmoothGradExplainer(AttributionExplainer):
    name = "smoothgrad"
    description = "SmoothGrad: saliency averaged over noisy log-mel inputs (captum NoiseTunnel)"
    version = "1"
    passes = "{samples} forward + backward"
    options: ClassVar[Mapping[str, Option]] = {
        "samples": Option(16, "noisy copies of the log-mel input averaged (count)"),
        "noise": Option(
            0.15, "noise standard deviation as a share of the input's 80 dB range (0.15: 12 dB)"
        ),
    }

    def attribute(self, logmel: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logmel = logmel.detach().requires_grad_(True)
        samples = int(self.context.option("samples"))
        noise = float(self.context.option("noise"))
        return NoiseTunnel(Saliency(self.logits)).attribute(
            logmel,
            nt_type="smoothgrad",
            nt_samples=samples,
            nt_samples_batch_size=samples,
            stdevs=noise * self.context.front_end.floor_db,
            target=classes,
            abs=True,
        )


@hookimpl
def register_explainers(register):
    register(SmoothGradExplainer)
