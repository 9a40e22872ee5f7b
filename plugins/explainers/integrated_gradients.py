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

from collections.abc import Mapping
from typing import ClassVar

import torch
from captum.attr import IntegratedGradients

from l2i_bench import hookimpl
from l2i_bench.plugins.explainers._attribution import AttributionExplainer, silence_floor
from l2i_bench.types import Option


class IntegratedGradientsExplainer(AttributionExplainer):
    name = "integrated-gradients"
    description = "Integrated Gradients from the silence floor on the log-mel input (captum)"
    version = "1"
    passes = "{steps} forward + backward"
    options: ClassVar[Mapping[str, Option]] = {
        "steps": Option(32, "Gauss-Legendre nodes on the path from the silence floor (count)"),
        "internal_batch_size": Option(
            64, "path points per classifier pass (rows; memory only, same result)"
        ),
    }

    def attribute(self, logmel: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logmel = logmel.detach().requires_grad_(True)
        steps = int(self.context.option("steps"))
        chunk = int(self.context.option("internal_batch_size"))
        return IntegratedGradients(self.logits).attribute(
            logmel,
            baselines=silence_floor(logmel, self.context.front_end.floor_db),
            target=classes,
            n_steps=steps,
            method="gausslegendre",
            internal_batch_size=chunk,
        )


@hookimpl
def register_explainers(register):
    register(IntegratedGradientsExplainer)
