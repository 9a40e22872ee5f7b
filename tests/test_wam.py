"""WAM: the wavelet transform inverts, the map to STFT bins follows the bands and times
of the coefficients, and the integrated variant is complete."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from explainer_contexts import explainer_context
from torch import nn

from l2i_bench.audio import HOP_LENGTH, N_FFT, SAMPLE_RATE, FrontEnd
from l2i_bench.plugins.explainers.wam import (
    LEVELS,
    WamIntegratedExplainer,
    WamSmoothExplainer,
    decompose,
    level_of_bins,
    reconstruct,
    wavelet_map_to_stft,
)
from l2i_bench.types import AudioBatch, Task

FE = FrontEnd("cpu")
LENGTH = 33_075  # 0.75 s


def _wave(rows: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(LENGTH) / SAMPLE_RATE
    tone = torch.sin(2 * math.pi * (400 + 1500 * torch.rand(rows, 1, generator=gen)) * t)
    wave = 0.5 * tone + 0.05 * torch.randn(rows, LENGTH, generator=gen)
    return wave / wave.abs().amax(-1, keepdim=True)


def test_the_inverse_transform_reproduces_the_input():
    wave = _wave()
    coeffs = decompose(wave)
    assert len(coeffs) == LEVELS + 1
    torch.testing.assert_close(reconstruct(coeffs, LENGTH), wave, atol=2e-6, rtol=0)


def test_bins_go_to_the_level_whose_band_holds_them():
    index = level_of_bins()
    hz_per_bin = SAMPLE_RATE / N_FFT
    # 3 kHz lies in level 3's details (2756-5512 Hz): position J - 3 + 1 = 6
    assert int(index[round(3000 / hz_per_bin)]) == LEVELS - 3 + 1
    assert int(index[-1]) == LEVELS  # Nyquist: level 1, the last position
    assert int(index[0]) == 0  # DC: the approximation
    assert int(index[1]) == 0  # 43 Hz: below 86 Hz, still the approximation
    assert int(index[3]) == 1  # 129 Hz: level 8's details (86-172 Hz)


def test_a_level_and_time_attribution_lands_on_its_band_and_frames():
    coeffs = decompose(_wave(1))
    attributions = [torch.zeros_like(c) for c in coeffs]
    position = LEVELS - 4 + 1  # level 4: 1378-2756 Hz, 16 samples per coefficient
    start = 16_000 // 16  # coefficients covering samples 16000..17599
    attributions[position][0, start : start + 100] = 1.0
    mask, relevance = wavelet_map_to_stft(attributions, LENGTH)
    freqs = torch.arange(mask.shape[1]) * SAMPLE_RATE / N_FFT
    in_band = (freqs >= SAMPLE_RATE / 32) & (freqs < SAMPLE_RATE / 16)
    frames = torch.nonzero(mask[0].amax(0) > 0).flatten()
    assert float(mask[0][~in_band].abs().max()) == 0.0
    assert float(mask[0][in_band].amax()) == 1.0
    centres = frames * HOP_LENGTH
    assert int(centres.min()) >= 16_000 - HOP_LENGTH and int(centres.max()) <= 17_600 + HOP_LENGTH
    assert torch.equal(relevance[0], torch.eye(LEVELS + 1)[position] * 100.0)


class LogmelNet(nn.Module):
    """A small non-linear classifier on the log-mel input."""

    tap_names = ("B4", "B5", "B6")
    late_taps = ("B4", "B5", "B6")

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.task, self.num_classes = Task.MULTICLASS, 3
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, logmel):
        return self.head(F.softplus(self.conv(logmel / 40.0)).mean(dim=(2, 3)))


class PowerNet(nn.Module):
    """Logits linear in the mel magnitudes ``10^(logmel / 10)``: along WAM-IG's straight
    path from silence they grow linearly, so completeness is exact for any quadrature
    and the test checks the path, the weights and the sum, nothing else."""

    tap_names = ("B4", "B5", "B6")
    late_taps = ("B4", "B5", "B6")

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.task, self.num_classes = Task.MULTICLASS, 3
        self.weight = nn.Parameter(torch.rand(3, 128), requires_grad=False)

    def forward(self, logmel):
        power = torch.pow(10.0, logmel / 10.0)[:, 0]  # (B, T, M)
        return power.mean(dim=1) @ self.weight.T


def test_integrated_wam_is_complete():
    net = PowerNet().eval()
    wave = _wave()
    classes = torch.tensor([0, 2])
    explainer = WamIntegratedExplainer(explainer_context(net, {"steps": 8}, front_end=FE))
    with torch.enable_grad():
        attributions = explainer.attribute(wave, classes)
    total = sum(a.sum(-1) for a in attributions)
    with torch.no_grad():
        full = net(FE.logmel(wave)).gather(1, classes[:, None])[:, 0]
        silent = net(FE.logmel(torch.zeros_like(wave))).gather(1, classes[:, None])[:, 0]
    assert (full - silent).abs().min() > 0.1
    torch.testing.assert_close(total, full - silent, rtol=1e-3, atol=1e-6)


def test_both_variants_give_masks_on_the_stft_grid():
    net = LogmelNet().eval()
    wave = _wave()
    batch = AudioBatch(["a", "b"], wave, FE.stft(wave), FE.logmel(wave), torch.zeros(2, 3))
    for cls, options in (
        (WamIntegratedExplainer, {"steps": 4}),
        (WamSmoothExplainer, {"samples": 3}),
    ):
        torch.manual_seed(0)
        explanation = cls(explainer_context(net, options, front_end=FE)).explain(
            batch, torch.tensor([1, 1])
        )
        assert explanation.mask.shape == batch.spec.shape
        assert float(explanation.mask.amax()) == 1.0 and float(explanation.mask.amin()) >= 0.0
        assert explanation.relevance.shape == (2, LEVELS + 1)
