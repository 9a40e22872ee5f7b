"""A BatchSource for tests whose clips never change: features are computed once, so
training epochs in explainer tests do not recompute STFTs."""

from __future__ import annotations

import numpy as np

from l2i_bench.data import ClipSet


class InMemory:
    def __init__(self, clip_set: ClipSet) -> None:
        self.clips = clip_set.clips
        self.everything = clip_set.batch(range(len(clip_set)))

    def __len__(self) -> int:
        return len(self.clips)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0):
        order = np.arange(len(self))
        if shuffle:
            np.random.default_rng(seed).shuffle(order)
        for start in range(0, len(order), batch_size):
            yield self.everything.select(order[start : start + batch_size].tolist())
