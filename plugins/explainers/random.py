"""The ``random`` control explainer: what any score looks like without information.

Every leaderboard gets its row (as OpenXAI's control explainer), so a reader can see
at a glance whether an explainer beats chance. The mask keeps a random set of
time-frequency bins covering a fixed share of the spectrogram (``option coverage``,
default 0.2: about the area an L2I interpretation keeps), the relevance is a random
vector over frames, and its "surrogate" outputs random logits, so the fidelity columns
show chance level too. All are seeded per clip, so reruns agree. A reference row (with ``oracle``,
``anti-oracle`` and ``loudest``), the middle of the metric validity check.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import ClassVar

import torch

from l2i_bench import hookimpl
from l2i_bench.types import AudioBatch, Explainer, Explanation, Option


class RandomExplainer(Explainer):
    name = "random"
    description = "Control: a random time-frequency mask of fixed coverage"
    version = "2"
    unit = "STFT frame"
    has_surrogate = True  # a chance-level one: fidelity columns show what chance scores
    reference = True
    passes = "no classifier pass (seeded random draws)"
    options: ClassVar[Mapping[str, Option]] = {
        "coverage": Option(0.2, "share of the time-frequency bins the random mask keeps (0 to 1)"),
    }

    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        coverage = float(self.context.option("coverage"))
        n, freqs, frames = batch.spec.shape
        masks = torch.zeros(n, freqs, frames)
        relevance = torch.zeros(n, frames)
        for row, (clip_id, cls) in enumerate(zip(batch.clip_ids, classes.tolist(), strict=True)):
            gen = torch.Generator().manual_seed(
                self.context.seed * 7919 + zlib.crc32(f"{clip_id}|{cls}".encode())
            )
            scores = torch.rand(freqs * frames, generator=gen)
            keep = scores.argsort(descending=True)[: max(1, round(coverage * scores.numel()))]
            masks[row].view(-1)[keep] = 1.0
            relevance[row] = torch.rand(frames, generator=gen)
        return Explanation(mask=masks.to(batch.spec.device), relevance=relevance)

    def predict(self, batch: AudioBatch) -> torch.Tensor:
        """Random logits, seeded per clip: the fidelity a surrogate gets by chance
        (top-1 agreement about 1/C), printed beside every real surrogate's."""
        rows = []
        for clip_id in batch.clip_ids:
            gen = torch.Generator().manual_seed(
                self.context.seed * 7919 + zlib.crc32(f"{clip_id}|surrogate".encode())
            )
            rows.append(torch.randn(self.context.num_classes, generator=gen))
        return torch.stack(rows).to(batch.spec.device)


@hookimpl
def register_explainers(register):
    register(RandomExplainer)
