"""One toy audio set for metric tests: 0.75 s clips (the classifier's minimum of 64
frames) of noise plus a random tone each, spectra with structure and not just flat
noise, through the shared CPU front end."""

from __future__ import annotations

import math

import torch

from l2i_bench.audio import SAMPLE_RATE, FrontEnd, num_frames

N, C = 4, 5
LENGTH = 33_075
FRAMES = num_frames(LENGTH)
FE = FrontEnd("cpu")


def clips(seed: int, n: int = N) -> torch.Tensor:
    """``n`` clips ``(n, LENGTH)``: noise plus a random tone per clip, seeded."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(LENGTH) / SAMPLE_RATE
    freq = 200 + 3000 * torch.rand(n, 1, generator=g)
    tone = torch.sin(2 * math.pi * freq * t) * (0.3 + torch.rand(n, 1, generator=g))
    return (0.05 * torch.randn(n, LENGTH, generator=g) + tone).float()
