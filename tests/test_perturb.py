"""The perturbation operators and coverage-matched controls, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from l2i_bench import perturb
from l2i_bench.types import MaskDomain


def _spec(mags: list[list[float]]) -> torch.Tensor:
    """A (1, F, T) complex spectrum with the given magnitudes and a fixed phase."""
    mag = torch.tensor(mags, dtype=torch.float32)[None]
    return torch.polar(mag, torch.full_like(mag, 0.7))


def test_linear_keep_and_remove_are_complementary_gains():
    spec = _spec([[4.0, 2.0], [1.0, 0.0]])
    mask = torch.tensor([[[0.5, 1.0], [0.0, 0.3]]])
    kept = perturb.keep(spec, mask, "linear")
    removed = perturb.remove(spec, mask, "linear")
    assert torch.allclose(kept.abs(), torch.tensor([[[2.0, 2.0], [0.0, 0.0]]]))
    assert torch.allclose(removed.abs(), torch.tensor([[[2.0, 0.0], [1.0, 0.0]]]))
    assert torch.allclose(kept + removed, spec)
    # the input phase is kept
    assert torch.allclose(torch.angle(kept[0, 0, 0]), torch.tensor(0.7))


def test_log1p_operators_match_the_l2i_code_by_hand():
    # |X| = 64, ratio 0.5: keep expm1(0.5 log 65) = sqrt(65) - 1 = 7.062; remove the same.
    # |X| = 2, ratio 0.5: keep sqrt(3) - 1 = 0.732.
    spec = _spec([[64.0, 2.0]])
    mask = torch.tensor([[[0.5, 0.5]]])
    kept = perturb.keep(spec, mask, MaskDomain.LOG1P).abs()[0, 0]
    removed = perturb.remove(spec, mask, MaskDomain.LOG1P).abs()[0, 0]
    assert kept[0].item() == pytest.approx(math.sqrt(65) - 1, rel=1e-5)
    assert kept[1].item() == pytest.approx(math.sqrt(3) - 1, rel=1e-5)
    assert removed[0].item() == pytest.approx(math.sqrt(65) - 1, rel=1e-5)
    # not complementary: 7.06 + 7.06 is far from 64
    assert (kept[0] + removed[0]).item() == pytest.approx(14.125, abs=1e-2)
    # removal of ratio 0.9 in log1p leaves expm1(0.1 log 65) = 0.518 of 64
    strong = perturb.remove(spec, torch.tensor([[[0.9, 0.9]]]), "log1p").abs()[0, 0, 0]
    assert strong.item() == pytest.approx(65**0.1 - 1, rel=1e-5)


def test_binary_masks_mean_the_same_in_both_domains():
    gen = torch.Generator().manual_seed(0)
    spec = torch.polar(torch.rand(2, 9, 7, generator=gen) * 50, torch.rand(2, 9, 7, generator=gen))
    mask = (torch.rand(2, 9, 7, generator=gen) > 0.5).float()
    for op in (perturb.keep, perturb.remove):
        assert torch.allclose(op(spec, mask, "linear"), op(spec, mask, "log1p"), atol=1e-4)


def test_coverage_and_remaining_share_by_hand():
    spec = _spec([[3.0, 4.0]])  # energies 9 and 16
    mask = torch.tensor([[[1.0, 0.0]]])
    assert perturb.coverage(spec, mask, "linear").item() == pytest.approx(9 / 25)
    assert perturb.remaining_share(spec, mask, "linear").item() == pytest.approx(16 / 25)
    half = torch.tensor([[[0.5, 0.5]]])
    assert perturb.coverage(spec, half, "linear").item() == pytest.approx(0.25)
    # log1p, ratio 0.5: kept magnitudes sqrt(4)-1 = 1 and sqrt(5)-1 = 1.236
    expected = (1.0 + (math.sqrt(5) - 1) ** 2) / 25
    assert perturb.coverage(spec, half, "log1p").item() == pytest.approx(expected, rel=1e-5)


def test_unknown_domain_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match="linear"):
        perturb.keep(_spec([[1.0]]), torch.ones(1, 1, 1), "decibel")


def test_matched_random_masks_keep_the_target_energy_within_one_bin():
    gen = torch.Generator().manual_seed(3)
    spec = torch.polar(torch.rand(3, 64, 40, generator=gen), torch.zeros(3, 64, 40))
    target = torch.tensor([0.1, 0.45, 0.9])
    masks = perturb.matched_random_masks(spec, target, torch.Generator().manual_seed(1))
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    got = perturb.coverage(spec, masks, "linear")
    largest_bin = spec.abs().square().flatten(1).max(1).values / spec.abs().square().flatten(1).sum(
        1
    )
    assert torch.all((got - target.double()).abs() <= largest_bin.double() / 2 + 1e-9)


def test_matched_random_masks_are_patches_not_scattered_bins():
    spec = torch.polar(torch.ones(1, 64, 64), torch.zeros(1, 64, 64))
    mask = perturb.matched_random_masks(
        spec, torch.tensor([0.25]), torch.Generator().manual_seed(0)
    )[0]
    # In a mask made of 16 x 8 patches, almost every kept bin's neighbour below is kept;
    # in a scattered 25 % mask only about a quarter would be.
    kept = mask[:-1] > 0
    same = (mask[1:][kept] > 0).float().mean().item()
    assert same > 0.85


def test_loudest_masks_keep_the_loudest_bins_first():
    spec = _spec([[1.0, 5.0, 2.0, 4.0]])  # energies 1, 25, 4, 16 of 46
    mask = perturb.loudest_masks(spec, torch.tensor([25 / 46]))
    assert mask[0, 0].tolist() == [0.0, 1.0, 0.0, 0.0]
    mask = perturb.loudest_masks(spec, torch.tensor([41 / 46]))
    assert mask[0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    # between two steps the closer one wins: 0.6 of 46 = 27.6 -> 25 (1 bin) is closer than 41
    mask = perturb.loudest_masks(spec, torch.tensor([0.6]))
    assert mask[0, 0].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_floor_baseline_fills_removed_bins_with_the_bands_tenth_percentile():
    # one band with |X| = 1..10 over ten frames: its 10th percentile (linear
    # interpolation) is 1 + 0.9 * (2 - 1) = 1.9; a second band at 0 has a floor of 0.
    spec = _spec([[float(v) for v in range(1, 11)], [0.0] * 10])
    assert perturb.noise_floor(spec.abs())[0, :, 0].tolist() == pytest.approx([1.9, 0.0])
    everything = torch.ones(1, 2, 10)
    left = perturb.remove(spec, everything, "linear", perturb.FLOOR).abs()[0]
    # a bin already below the floor is left as it is: removal never adds energy
    assert left[0].tolist() == pytest.approx([1.0] + [1.9] * 9, rel=1e-5)
    assert left[1].tolist() == pytest.approx([0.0] * 10)
    # a soft mask interpolates towards the floor, linearly or in log1p
    half = torch.full((1, 2, 10), 0.5)
    lin = perturb.remove(spec, half, "linear", perturb.FLOOR).abs()[0, 0, 9].item()
    assert lin == pytest.approx(0.5 * 10 + 0.5 * 1.9, rel=1e-5)
    log = perturb.remove(spec, half, "log1p", perturb.FLOOR).abs()[0, 0, 9].item()
    assert log == pytest.approx(math.sqrt(11 * 2.9) - 1, rel=1e-5)
    kept = perturb.keep(spec, half, "log1p", perturb.FLOOR).abs()[0, 0, 9].item()
    assert kept == pytest.approx(log, rel=1e-5)  # a ratio of 0.5 keeps what it removes
    # silence is the default and the L2I code's operator
    assert perturb.remove(spec, everything, "linear").abs().max().item() == 0.0


def test_unknown_baseline_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match="silence"):
        perturb.remove(_spec([[1.0, 2.0]]), torch.ones(1, 1, 2), "linear", "noise")


def test_spectra_reuse_gives_the_operators_values_and_bool_masks_skip_the_arithmetic():
    """``Spectra`` is what metrics perturb many times: its keep/remove are the module
    operators' values, and a ``bool`` mask towards silence multiplies the STFT by the
    mask itself, bit for bit what the general linear gain gives for a 0/1 float mask."""
    gen = torch.Generator().manual_seed(3)
    mag = torch.rand(3, 17, 11, generator=gen) * 20
    mag[0, 0, :4] = 0.0  # silent bins: gain 0 either way
    spec = torch.polar(mag, torch.rand(3, 17, 11, generator=gen) * 6)
    soft = torch.rand(3, 17, 11, generator=gen)
    binary = soft > 0.5
    spectra = perturb.Spectra(spec)
    for baseline in perturb.BASELINES:
        for domain in ("linear", "log1p"):
            assert torch.equal(
                spectra.keep(soft, domain, baseline), perturb.keep(spec, soft, domain, baseline)
            )
            assert torch.equal(
                spectra.remove(soft, domain, baseline), perturb.remove(spec, soft, domain, baseline)
            )
        for op in ("keep", "remove"):
            fast = getattr(spectra, op)(binary, "log1p", baseline)
            general = getattr(perturb, op)(spec, binary.float(), "linear", baseline)
            assert torch.equal(fast, general), (op, baseline)
    # the bool path towards silence really is the mask: kept bins whole, others zero
    kept = spectra.keep(binary, "linear")
    assert torch.equal(kept, torch.where(binary, spec, torch.zeros_like(spec)))
    # coverage and remaining share accept the reused rows
    assert torch.equal(
        perturb.coverage(spectra, soft, "log1p"), perturb.coverage(spec, soft, "log1p")
    )
    assert torch.equal(
        perturb.remaining_share(spectra, soft, "linear"),
        perturb.remaining_share(spec, soft, "linear"),
    )
