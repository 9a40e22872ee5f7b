"""Saliency (Simonyan, Vedaldi & Zisserman 2014): the gradient's magnitude.

Method: ``|d logit_c / d logmel|`` at the input, captum's ``Saliency`` (``abs=True``, the
paper's definition). Ours: the log-mel input and the mask rule of
:mod:`l2i_bench.plugins.explainers._attribution`. Cost: 1 forward + 1 backward pass per
clip.
"""

from __future__ import annotations

import torch
from captum.attr import Saliency

from l2i_bench import hookimpl
from l2i_bench.plugins.explainers._attribution import AttributionExplainer


class SaliencyExplainer(AttributionExplainer):
    name = "saliency"
    groups = frozenset({"quick"})
    description = "Saliency: |gradient| of the class logit on the log-mel input (captum)"
    version = "1"
    passes = "1 forward + 1 backward"

    def attribute(self, logmel: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logmel = logmel.detach().requires_grad_(True)
        return Saliency(self.logits).attribute(logmel, target=classes, abs=True)


@hookimpl
def register_explainers(register):
    register(SaliencyExplainer)
