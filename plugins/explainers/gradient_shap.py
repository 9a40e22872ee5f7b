"""GradientSHAP (Lundberg & Lee 2017, as in captum): expected gradients over a background.

Method: captum's ``GradientShap``: for ``samples`` draws, a baseline ``x'`` from the
background and a point ``x' + a (x - x')`` with ``a ~ U(0, 1)``, attribution
``(x - x') * gradient`` averaged; it approximates SHAP values of the class logit.
Ours: the background is SHAP's usual one, data: ``background`` (default 8) training
clips drawn with the cell's seed at fit time (their log-mel kept as the fitted state and
cached), each cut or padded at the silence floor to the explained clips' length;
``samples`` default 16, no extra input noise. Cost: ``samples`` forward + backward passes
per clip (16 by default); fitting reads the background clips once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import torch
from captum.attr import GradientShap

from l2i_bench import hookimpl
from l2i_bench.plugins.explainers._attribution import AttributionExplainer
from l2i_bench.types import Option


class GradientShapExplainer(AttributionExplainer):
    name = "gradient-shap"
    description = "GradientSHAP: expected gradients over a background of training clips (captum)"
    version = "1"
    passes = "{samples} forward + backward"
    options: ClassVar[Mapping[str, Option]] = {
        "background": Option(8, "training clips drawn as the baseline distribution (count)"),
        "samples": Option(16, "baseline draws, each a random point on its path (count)"),
    }
    needs_training = True

    def fit(self, train, valid):
        count = min(int(self.context.option("background")), len(train))
        rows = np.sort(np.random.default_rng(self.context.seed).permutation(len(train))[:count])
        batch = train.batch(rows) if hasattr(train, "batch") else next(iter(train.batches(count)))
        self.background = batch.logmel.detach().float().cpu()
        return {"background_clips": count}

    def state_dict(self):
        return {"background": self.background}

    def load_state_dict(self, state):
        self.background = state["background"]

    def _background_like(self, logmel: torch.Tensor) -> torch.Tensor:
        """The background at the explained clips' length (padded at each clip's floor)."""
        background = self.background.to(logmel.device)
        frames = logmel.shape[2]
        if background.shape[2] >= frames:
            return background[:, :, :frames].contiguous()
        floor = background.amax(dim=(1, 2, 3), keepdim=True) - self.context.front_end.floor_db
        pad = floor.expand(-1, 1, frames - background.shape[2], background.shape[3])
        return torch.cat([background, pad], dim=2)

    def attribute(self, logmel: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logmel = logmel.detach().requires_grad_(True)
        samples = int(self.context.option("samples"))
        return GradientShap(self.logits).attribute(
            logmel,
            baselines=self._background_like(logmel),
            n_samples=samples,
            stdevs=0.0,
            target=classes,
        )


@hookimpl
def register_explainers(register):
    register(GradientShapExplainer)
