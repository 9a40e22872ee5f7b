"""Reference explainer ``loudest``: the loudest bins, as a naive explanation.

"The classifier heard whatever is loudest" is the explanation any method must beat to
be worth its cost: on a clean clip the event *is* the loudest part, so a metric that
rewards loudness or coverage will rank this row high. It keeps each clip's loudest
time-frequency bins until they hold ``coverage`` of the clip's energy (option, default
0.5; :func:`l2i_bench.perturb.loudest_masks`), a binary mask, whatever the class asked.
At the explanation's own coverage the same rule is faithfulness's ``ff_loudest``
control, so every explainer is also compared with it at equal energy. A reference, not
a contender. Cost: one sort of the bins per clip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch

from l2i_bench import hookimpl, perturb
from l2i_bench.types import AudioBatch, Explainer, Explanation, Option


class LoudestExplainer(Explainer):
    name = "loudest"
    description = "Reference: the loudest bins holding a set share of the energy"
    unit = "STFT frame"
    reference = True
    passes = "one sort of the bins, no classifier pass"
    options: ClassVar[Mapping[str, Option]] = {
        "coverage": Option(0.5, "share of the clip's energy the kept loudest bins hold (0 to 1)"),
    }

    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        coverage = float(self.context.option("coverage"))
        share = torch.full((len(batch),), coverage)
        mask = perturb.loudest_masks(batch.spec.cpu(), share)
        return Explanation(mask=mask.to(batch.spec.device), relevance=mask.mean(dim=1))


@hookimpl
def register_explainers(register):
    register(LoudestExplainer)
