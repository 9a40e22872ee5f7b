"""A BatchSource for tests whose clips never change: features are computed once, so
training epochs in explainer tests do not recompute STFTs."""

from __future__ import annotations

from l2i_bench.data import ClipSet, batch_rows


class InMemory:
    def __init__(self, clip_set: ClipSet) -> None:
        self.clips = clip_set.clips
        self.everything = clip_set.batch(range(len(clip_set)))

    def __len__(self) -> int:
        return len(self.clips)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0):
        for rows in batch_rows(len(self), batch_size, shuffle=shuffle, seed=seed):
            yield self.everything.select(rows.tolist())
