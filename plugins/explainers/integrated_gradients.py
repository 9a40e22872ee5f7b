"""Integrated Gradients (Sundararajan, Taly & Yan 2017).

Method: ``(x - x') * integral_0^1 d logit_c(x' + a (x - x')) / dx da``, captum's
``IntegratedGradients`` with Gauss-Legendre quadrature; completeness (the attributions
sum to ``logit_c(x) - logit_c(x')``) holds up to the quadrature error, which the tests
bound. Ours: the baseline ``x'`` is the clip at its silence floor (peak - 80 dB, see
:mod:`l2i_bench.plugins.explainers._attribution`); options ``steps`` (default 32) and
``internal_batch_size`` (default 64 rows per pass). Cost: ``steps`` forward + backward
passes per clip (32 by default).
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients

from l2i_bench import hookimpl
from l2i_bench.plugins.explainers._attribution import AttributionExplainer, silence_floor


class IntegratedGradientsExplainer(AttributionExplainer):
    name = "integrated-gradients"
    description = "Integrated Gradients from the silence floor on the log-mel input (captum)"
    version = "1"
    passes = "steps (32) forward + backward"

    def attribute(self, logmel: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logmel = logmel.detach().requires_grad_(True)
        steps = int(self.context.option("steps", 32))
        chunk = int(self.context.option("internal_batch_size", 64))
        return IntegratedGradients(self.logits).attribute(
            logmel,
            baselines=silence_floor(logmel),
            target=classes,
            n_steps=steps,
            method="gausslegendre",
            internal_batch_size=chunk,
        )


@hookimpl
def register_explainers(register):
    register(IntegratedGradientsExplainer)
