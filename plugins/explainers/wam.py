"""WAM, Wavelet Attribution Method (Kasmi et al., ICML 2025): gradients of the class score
with respect to the wavelet coefficients of the waveform.

Method: the waveform ``x`` (peak-normalised, as the classifier hears it) is decomposed by
a discrete wavelet transform into detail coefficients at levels 1..J and the approximation
at level J (``ptwt``, differentiable in torch); the classifier is run on the log-mel of
the reconstruction, so the class logit is a function of the coefficients and its
gradient says which scales at which times carry the evidence. Two variants, as WAM:

- ``wam-ig`` (integrated): integrated gradients along the straight path from all-zero
  coefficients (silence) to the clip's, ``steps`` Gauss-Legendre nodes (default 32);
  attribution ``c * mean gradient``, complete in exact arithmetic (sums to
  ``logit(x) - logit(silence)``; tested exactly on a classifier linear in the mel
  magnitudes). On the suite's dB front end the integrand grows like ``1/alpha`` near
  silence (the logarithm), which 32 nodes integrate poorly: on a small log-mel network
  the sum missed the logit gap by 55 %. The map still ranks scales and times; its sum is
  not a decomposition of the logit.
- ``wam-sg`` (smoothed): the mean of ``|gradient|`` over ``samples`` (default 16) copies
  with Gaussian noise on the coefficients; an orthogonal wavelet spreads white noise
  evenly, so this is white noise of standard deviation ``noise`` (default 0.1) times the
  clip's range (max - min, about 2 after peak normalisation): the low end of SmoothGrad's
  10-20 % rule, since audio at 0 dB SNR says little.

What is ours: the wavelet ``db4`` and ``levels`` J = 8 at 44.1 kHz (details from
11-22 kHz down to 86-172 Hz, the approximation below 86 Hz), boundary mode ``reflect``;
and the map to the suite's listenable STFT mask (:func:`wavelet_map_to_stft`): the
positive attribution of each coefficient is spread evenly over the samples it covers
(``2^j`` at level ``j``), summed per STFT frame (the hop around the frame's centre), and
given to every STFT bin whose frequency lies in the level's band; divided by the clip's
maximum, a gain in [0, 1] on ``|X|``. The relevance is the positive attribution per level
(``(B, J + 1)``, approximation first). WAM's published ESC-50 numbers use another
classifier (a ResNet): compare orderings, not values.

Cost per clip: ``steps`` (IG, 32) or ``samples`` (SG, 16) passes of wavelet reconstruction,
STFT, classifier forward and backward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import ptwt
import pywt
import torch
import torch.nn.functional as F

from l2i_bench import hookimpl
from l2i_bench.audio import HOP_LENGTH, N_FREQS, SAMPLE_RATE
from l2i_bench.types import AudioBatch, Explainer, Explanation, Option

WAVELET = "db4"
LEVELS = 8


def decompose(
    wave: torch.Tensor, levels: int = LEVELS, wavelet: str = WAVELET
) -> list[torch.Tensor]:
    """Coefficients ``[cA_J, cD_J, ..., cD_1]`` of waveforms ``(B, L)``."""
    return ptwt.wavedec(wave, pywt.Wavelet(wavelet), level=levels, mode="reflect")


def reconstruct(coeffs: list[torch.Tensor], length: int, wavelet: str = WAVELET) -> torch.Tensor:
    """Waveforms ``(B, length)`` from :func:`decompose`'s coefficients."""
    return ptwt.waverec(coeffs, pywt.Wavelet(wavelet))[..., :length]


def level_of_bins(
    levels: int = LEVELS, n_freqs: int = N_FREQS, rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """For each STFT bin, the index into ``[cA_J, cD_J, ..., cD_1]`` of the coefficients
    whose band holds the bin's frequency: level ``j``'s details cover ``[rate / 2^(j+1),
    rate / 2^j)``, the approximation everything below ``rate / 2^(J+1)``."""
    freqs = np.arange(n_freqs) * (rate / 2) / (n_freqs - 1)
    index = np.zeros(n_freqs, dtype=np.int64)  # the approximation
    for j in range(1, levels + 1):
        low, high = rate / 2 ** (j + 1), rate / 2**j
        inside = (freqs >= low) & ((freqs < high) | (j == 1))
        index[inside] = levels - j + 1  # cD_j sits at position J - j + 1
    return torch.from_numpy(index)


def wavelet_map_to_stft(
    attributions: list[torch.Tensor], length: int, levels: int = LEVELS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive attributions per coefficient -> (mask ``(B, F, T)`` in [0, 1], relevance
    ``(B, J + 1)``); see the module docstring."""
    frames = 1 + length // HOP_LENGTH
    profiles = []
    for position, attribution in enumerate(attributions):
        level = levels if position == 0 else levels - position + 1
        span = 2**level
        positive = attribution.clamp_min(0.0)
        dense = torch.repeat_interleave(positive / span, span, dim=-1)[..., :length]
        dense = F.pad(dense, (HOP_LENGTH // 2, frames * HOP_LENGTH - length - HOP_LENGTH // 2))
        profiles.append(dense.view(dense.shape[0], frames, HOP_LENGTH).sum(-1))
    per_level = torch.stack(profiles, dim=1)  # (B, J + 1, T)
    index = level_of_bins(levels).to(per_level.device)
    spread = per_level[:, index]  # (B, F, T)
    peak = spread.amax(dim=(1, 2), keepdim=True)
    mask = torch.where(peak > 0, spread / peak.clamp_min(1e-30), torch.zeros_like(spread))
    relevance = torch.stack([a.clamp_min(0.0).sum(-1) for a in attributions], dim=1)
    return mask.clamp(0.0, 1.0), relevance


class WamExplainer(Explainer):
    """Shared by the two variants: gradients of the class logit w.r.t. coefficients."""

    unit = "wavelet level"
    family = "attribution"

    def _logit_gradients(
        self, coeffs: list[torch.Tensor], classes: torch.Tensor, length: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        leaves = [c.detach().requires_grad_(True) for c in coeffs]
        logmel = self.context.front_end.logmel(reconstruct(leaves, length))
        logits = self.context.classifier(logmel)
        score = logits.gather(1, classes[:, None])[:, 0]
        grads = torch.autograd.grad(score.sum(), leaves)
        return score.detach(), [g.detach() for g in grads]

    def attribute(self, wave: torch.Tensor, classes: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        wave = batch.waveform.to(self.context.device).float()
        with torch.enable_grad():
            attributions = self.attribute(wave, classes.to(wave.device).long())
        mask, relevance = wavelet_map_to_stft(attributions, wave.shape[-1])
        return Explanation(mask=mask, relevance=relevance)


class WamIntegratedExplainer(WamExplainer):
    name = "wam-ig"
    description = "WAM: integrated gradients on the waveform's wavelet coefficients"
    version = "1"
    passes = "{steps} x (wavelet inverse, STFT, forward, backward)"
    options: ClassVar[Mapping[str, Option]] = {
        "steps": Option(32, "Gauss-Legendre nodes on the path from all-zero coefficients (count)"),
    }

    def attribute(self, wave: torch.Tensor, classes: torch.Tensor) -> list[torch.Tensor]:
        steps = int(self.context.option("steps"))
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        coeffs = decompose(wave)
        total = [torch.zeros_like(c) for c in coeffs]
        for node, weight in zip((nodes + 1) / 2, weights / 2, strict=True):
            _, grads = self._logit_gradients(
                [c * float(node) for c in coeffs], classes, wave.shape[-1]
            )
            total = [t + float(weight) * g for t, g in zip(total, grads, strict=True)]
        return [c * t for c, t in zip(coeffs, total, strict=True)]


class WamSmoothExplainer(WamExplainer):
    name = "wam-sg"
    description = "WAM: SmoothGrad on the waveform's wavelet coefficients"
    version = "1"
    passes = "{samples} x (wavelet inverse, STFT, forward, backward)"
    options: ClassVar[Mapping[str, Option]] = {
        "samples": Option(16, "noisy copies of the wavelet coefficients averaged (count)"),
        "noise": Option(0.1, "noise standard deviation as a share of the clip's range (max - min)"),
    }

    def attribute(self, wave: torch.Tensor, classes: torch.Tensor) -> list[torch.Tensor]:
        samples = int(self.context.option("samples"))
        noise = float(self.context.option("noise"))
        sigma = noise * (wave.amax(-1) - wave.amin(-1))  # (B,)
        coeffs = decompose(wave)
        total = [torch.zeros_like(c) for c in coeffs]
        for _ in range(samples):
            noisy = [c + sigma[:, None] * torch.randn_like(c) for c in coeffs]
            _, grads = self._logit_gradients(noisy, classes, wave.shape[-1])
            total = [t + g.abs() / samples for t, g in zip(total, grads, strict=True)]
        return total


@hookimpl
def register_explainers(register):
    register(WamIntegratedExplainer)
    register(WamSmoothExplainer)
