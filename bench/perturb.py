"""The perturbation operators: what "keep" and "remove" an explanation mean, named once.

Every mask metric (faithfulness, L-MAC, deletion/insertion, ground truth, sanity) and
every listenable interpretation goes through this module, so a number is always
computed with the operator of the domain the method defines its mask in
(:class:`l2i_bench.types.MaskDomain`):

* ``linear`` (IBA, VIBI, SLIME, the references): keep ``M |X|``, remove ``(1 - M) |X|``.
* ``log1p`` (L2I, FLINT): the L2I code filters the log-magnitude ``log(1 + |X|)`` and
  resynthesises ``exp(.) - 1`` with the input phase: keep ``expm1(M log1p|X|)``,
  remove ``expm1((1 - M) log1p|X|)`` (its ``faithfulness_eval`` removes the relevant
  components this way). The two are *not* complementary: keep + remove != ``|X|``, and
  a ratio of 0.5 keeps 11 % of a bin at ``|X| = 64`` but removes 89 % of it.

What "removed" leaves behind is the *baseline*:

* ``silence`` (default; the L2I code's operator): a removed bin goes to zero.
* ``floor``: a removed bin goes to the clip's own noise floor in that frequency band,
  ``min(|X|, q_10(|X|_f))`` with ``q_10`` the 10th percentile over the clip's frames
  (minimum statistics, after Martin 2001): removing a sound from a recording leaves its
  room tone, not digital silence. Keep and remove then interpolate towards the floor
  instead of towards zero (linearly, or in ``log1p`` for log-domain masks), and both
  reduce to the silence operators when the floor is zero. Why it exists: on ``synth``
  the interference's ideal mask (the anti-oracle) holds 0.1 % of a clean clip's energy,
  yet removing it to silence dropped the classifier's probability by 0.30 (median over
  400 clips, 5 folds), more than removing a random 20 % of the bins (0.005): the
  silence holes, 30 dB below any background the classifier was trained on, were what
  it reacted to, not the removed content. Faithfulness therefore removes to the floor
  (:mod:`plugins.metrics.faithfulness`, with the silence number kept beside it). Limit:
  a sound that lasts the whole clip in a band sets that band's floor, so removing it
  there is partial.

Both are resynthesised with the input's phase. A binary mask means the same in both
domains, which is what lets one random control serve every explainer
(:func:`matched_random_masks`). ``coverage`` is the share of the input's energy a
perturbed input holds: the quantity the random controls are matched on, and the one
every mask cell publishes (``mask_coverage``), since most scores move with it.

Cost: elementwise on ``(R, F, T)``; the matched random masks sort ``F x T`` keys per row.
"""

from __future__ import annotations

import numpy as np
import torch

from l2i_bench.magnitude import complex_magnitude
from l2i_bench.types import MaskDomain

PATCH_FREQS = 16
"""Random-control patch height in STFT bins (16 x 43 Hz = 690 Hz at 44.1 kHz)."""
PATCH_FRAMES = 8
"""Random-control patch width in frames (8 x 11.6 ms = 93 ms)."""


def _domain(domain: MaskDomain | str) -> MaskDomain:
    try:
        return MaskDomain(domain)
    except ValueError as err:
        raise ValueError(
            f"unknown mask domain {domain!r}; expected one of {[d.value for d in MaskDomain]}"
        ) from err


SILENCE = "silence"
"""Baseline: a removed bin goes to zero (the L2I code's operator)."""
FLOOR = "floor"
"""Baseline: a removed bin goes to the clip's noise floor in its band (:func:`noise_floor`)."""
BASELINES = (SILENCE, FLOOR)
FLOOR_QUANTILE = 0.1
"""Quantile over a clip's frames that estimates its noise floor per frequency bin."""


def noise_floor(magnitude: torch.Tensor) -> torch.Tensor:
    """Per row and frequency bin, the 10th percentile of ``|X|`` over the frames
    ``(..., F, 1)``: the level a band falls back to between sounds."""
    return torch.quantile(magnitude.float(), FLOOR_QUANTILE, dim=-1, keepdim=True).to(
        magnitude.dtype
    )


def baseline_magnitude(magnitude: torch.Tensor, baseline: str = SILENCE) -> torch.Tensor:
    """What a fully removed bin holds: zero, or ``min(|X|, noise floor)``."""
    if baseline == SILENCE:
        return torch.zeros_like(magnitude)
    if baseline == FLOOR:
        return torch.minimum(magnitude, noise_floor(magnitude))
    raise ValueError(f"unknown removal baseline {baseline!r}; expected one of {BASELINES}")


def kept_magnitude(
    magnitude: torch.Tensor,
    mask: torch.Tensor,
    domain: MaskDomain | str,
    baseline: str = SILENCE,
    *,
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """The magnitude an interpretation keeps (same shape as ``magnitude``): the mask
    interpolates between the input and the baseline, in the mask's domain. ``base``
    is ``baseline_magnitude(magnitude, baseline)`` when the caller already has it."""
    m = mask.to(magnitude.device, magnitude.dtype).clamp(0.0, 1.0)
    if base is None:
        base = baseline_magnitude(magnitude, baseline)
    if _domain(domain) is MaskDomain.LOG1P:
        return torch.expm1(m * torch.log1p(magnitude) + (1.0 - m) * torch.log1p(base))
    return m * magnitude + (1.0 - m) * base


def removed_magnitude(
    magnitude: torch.Tensor,
    mask: torch.Tensor,
    domain: MaskDomain | str,
    baseline: str = SILENCE,
    *,
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """The magnitude left when an interpretation is taken away from the input."""
    inverse = 1.0 - mask.to(magnitude.device, magnitude.dtype)
    return kept_magnitude(magnitude, inverse, domain, baseline, base=base)


def linear_gain(
    magnitude: torch.Tensor,
    mask: torch.Tensor,
    domain: MaskDomain | str,
    *,
    remove: bool = False,
    baseline: str = SILENCE,
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """The linear gain ``G`` in ``[0, 1]`` with ``G |X|`` = the kept (or, with ``remove``,
    the remaining) magnitude: what multiplies the complex STFT before resynthesis."""
    op = removed_magnitude if remove else kept_magnitude
    new = op(magnitude, mask, domain, baseline, base=base)
    gain = torch.where(magnitude > 0, new / magnitude.clamp_min(1e-30), torch.zeros_like(new))
    return gain.clamp(0.0, 1.0)


class Spectra:
    """Complex STFT rows ``(R, F, T)`` with what every perturbation of them needs,
    computed once: ``|X|`` and each removal baseline.

    Why: a metric perturbs the same rows many times (deletion/insertion 14 times per
    row, faithfulness 5), and recomputing the complex magnitude and the noise floor (a
    quantile over frames) for each perturbation was half of those metrics' time outside
    the classifier. The values are those of :func:`keep` and :func:`remove`, which go
    through this class.

    A ``bool`` mask is binary by type: a bin is kept whole or removed whole, in every
    domain, so towards silence the gain *is* the mask and no arithmetic is needed (the
    deletion/insertion steps; bit-identical to the general linear path, tested).
    """

    def __init__(self, spec: torch.Tensor) -> None:
        self.spec = spec
        self._magnitude: torch.Tensor | None = None
        self._bases: dict[str, torch.Tensor] = {}

    @property
    def magnitude(self) -> torch.Tensor:
        if self._magnitude is None:
            self._magnitude = complex_magnitude(self.spec)
        return self._magnitude

    def base(self, baseline: str = SILENCE) -> torch.Tensor:
        """What a fully removed bin holds (:func:`baseline_magnitude`), once per baseline."""
        if baseline not in self._bases:
            self._bases[baseline] = baseline_magnitude(self.magnitude, baseline)
        return self._bases[baseline]

    def gain(
        self,
        mask: torch.Tensor,
        domain: MaskDomain | str,
        *,
        remove: bool = False,
        baseline: str = SILENCE,
    ) -> torch.Tensor:
        """:func:`linear_gain` of these rows."""
        if mask.dtype == torch.bool and baseline == SILENCE:
            kept = ~mask if remove else mask
            return kept.to(self.spec.device, self.spec.real.dtype)
        if mask.dtype == torch.bool:
            domain = MaskDomain.LINEAR  # binary: the same in every domain
        return linear_gain(
            self.magnitude,
            mask,
            domain,
            remove=remove,
            baseline=baseline,
            base=self.base(baseline),
        )

    def keep(
        self, mask: torch.Tensor, domain: MaskDomain | str, baseline: str = SILENCE
    ) -> torch.Tensor:
        """Complex STFT of the kept input (input phase)."""
        return self.spec * self.gain(mask, domain, baseline=baseline).to(self.spec.device)

    def remove(
        self, mask: torch.Tensor, domain: MaskDomain | str, baseline: str = SILENCE
    ) -> torch.Tensor:
        """Complex STFT of the input with the interpretation taken away (input phase)."""
        gain = self.gain(mask, domain, remove=True, baseline=baseline)
        return self.spec * gain.to(self.spec.device)


def keep(
    spec: torch.Tensor, mask: torch.Tensor, domain: MaskDomain | str, baseline: str = SILENCE
) -> torch.Tensor:
    """Complex STFT of the kept input (input phase)."""
    return Spectra(spec).keep(mask, domain, baseline)


def remove(
    spec: torch.Tensor, mask: torch.Tensor, domain: MaskDomain | str, baseline: str = SILENCE
) -> torch.Tensor:
    """Complex STFT of the input with the interpretation taken away (input phase)."""
    return Spectra(spec).remove(mask, domain, baseline)


def energy_share(part: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """Per row, ``sum |part|^2 / sum |whole|^2`` (complex spectra or magnitudes)."""
    num = complex_magnitude(part).double().square().flatten(1).sum(dim=1)
    den = complex_magnitude(whole).double().square().flatten(1).sum(dim=1)
    return num / den.clamp_min(1e-30)


def coverage(
    spec: torch.Tensor | Spectra, mask: torch.Tensor, domain: MaskDomain | str
) -> torch.Tensor:
    """Share of each row's energy that the kept input holds (``mask_coverage``)."""
    spectra = spec if isinstance(spec, Spectra) else Spectra(spec)
    return energy_share(spectra.keep(mask, domain), spectra.magnitude)


def remaining_share(
    spec: torch.Tensor | Spectra, mask: torch.Tensor, domain: MaskDomain | str
) -> torch.Tensor:
    """Share of each row's energy left after removal (1 minus the energy removed)."""
    spectra = spec if isinstance(spec, Spectra) else Spectra(spec)
    return energy_share(spectra.remove(mask, domain), spectra.magnitude)


def patch_order(shape: torch.Size | tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A random order ``(R, F*T)`` of every bin that visits random time-frequency
    patches one after another (bins of a patch in random order): growing a mask along
    it adds contiguous regions, as real explanations are, not salt-and-pepper bins.
    Each row gets its own patch grid offset and patch order."""
    rows, freqs, frames = shape
    out = torch.empty(rows, freqs * frames, dtype=torch.long)
    f_idx = torch.arange(freqs)[:, None].expand(freqs, frames)
    t_idx = torch.arange(frames)[None, :].expand(freqs, frames)
    for r in range(rows):
        off_f = int(torch.randint(PATCH_FREQS, (1,), generator=generator))
        off_t = int(torch.randint(PATCH_FRAMES, (1,), generator=generator))
        pf = (f_idx + off_f) // PATCH_FREQS
        pt = (t_idx + off_t) // PATCH_FRAMES
        patch = (pf * (frames // PATCH_FRAMES + 2) + pt).flatten()
        n_patches = int(patch.max()) + 1
        patch_rank = torch.randperm(n_patches, generator=generator)[patch]
        within = torch.rand(freqs * frames, generator=generator)
        out[r] = _argsort(patch_rank.double() + within.double())
    return out


def _argsort(keys: torch.Tensor) -> torch.Tensor:
    """Ascending order of a 1-D or row-wise 2-D CPU tensor, by numpy: 4x faster than
    ``torch.argsort`` on these float64 keys here (9 vs 37 ms for one 5 s clip's bins).
    Distinct keys give the same order as any sort; where keys tie, the order between
    the tied bins is the sort's own. Here that is harmless: in :func:`loudest_masks` tied
    bins hold the same energy, and in :func:`patch_order` a tie (two equal ``within``
    draws in one patch, about once per 5 s clip) matters only if the grown mask stops
    exactly between the two bins."""
    return torch.from_numpy(np.argsort(keys.numpy(), axis=-1))


def _row_power(spec: torch.Tensor | Spectra) -> torch.Tensor:
    """``|X|^2`` per bin in float64 ``(R, F*T)`` on the CPU."""
    power = spec.magnitude if isinstance(spec, Spectra) else complex_magnitude(spec)
    return power.double().square().flatten(1).cpu()


def grow_mask(
    spec: torch.Tensor | Spectra, order: torch.Tensor, target_share: torch.Tensor
) -> torch.Tensor:
    """Binary masks ``(R, F, T)`` that keep bins in the given ``order`` ``(R, F*T)``
    until the kept energy share reaches ``target_share`` (per row, within one bin's
    energy: the bin that crosses the target is kept when that lands closer)."""
    power = _row_power(spec)
    shape = spec.spec.shape if isinstance(spec, Spectra) else spec.shape
    order = order.cpu()
    ordered = power.gather(1, order)
    total = ordered.sum(dim=1, keepdim=True).clamp_min(1e-30)
    cum = ordered.cumsum(dim=1) / total  # share kept after including bin j
    before = cum - ordered / total
    target = target_share.detach().double().cpu().clamp(0.0, 1.0)[:, None]
    include = (cum <= target) | (
        (before < target) & ((cum - target).abs() <= (target - before).abs())
    )
    mask = torch.zeros(power.shape, dtype=torch.float32)
    mask.scatter_(1, order, include.float())
    return mask.view(shape)


def matched_random_masks(
    spec: torch.Tensor | Spectra, target_share: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Binary masks of random patches (:func:`patch_order`) keeping ``target_share`` of
    each row's energy: the coverage-matched random control. Being binary, such a mask
    keeps and removes the same way in every domain."""
    shape = spec.spec.shape if isinstance(spec, Spectra) else spec.shape
    return grow_mask(spec, patch_order(shape, generator), target_share)


def loudest_masks(spec: torch.Tensor | Spectra, target_share: torch.Tensor) -> torch.Tensor:
    """Binary masks of each row's loudest bins keeping ``target_share`` of its energy:
    the naive "it is where the sound is" explanation, at any coverage."""
    order = _argsort(-_row_power(spec))
    return grow_mask(spec, order, target_share)
