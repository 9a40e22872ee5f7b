"""The shared STFT magnitude equals ``spec.abs()`` bit for bit (it is only faster)."""

from __future__ import annotations

import pytest
import torch

from l2i_bench.audio import SAMPLE_RATE, FrontEnd
from l2i_bench.magnitude import EXACT_FROM, complex_magnitude


def _exactly_abs(spec: torch.Tensor) -> None:
    got, want = complex_magnitude(spec), spec.abs()
    assert got.dtype == want.dtype and got.shape == want.shape
    same = (got == want) | (got.isnan() & want.isnan())
    assert bool(same.all()), f"{int((~same).sum())} entries differ from abs"


def test_equals_abs_on_a_real_stft():
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    wave = 0.05 * torch.randn(3, t.numel(), generator=gen) + torch.sin(2 * torch.pi * 440 * t)
    wave[1, : SAMPLE_RATE // 2] = 0.0  # digital silence: exact zeros in the STFT
    _exactly_abs(FrontEnd("cpu").stft(wave))


@pytest.mark.parametrize("decade", range(-45, 39, 3))
def test_equals_abs_at_every_scale_including_where_hypot_alone_differs(decade):
    """Below ~2e-32 torch's complex abs and hypot round differently; the function takes
    those entries from abs, so every scale is exact (zeros and one-sided values too)."""
    gen = torch.Generator().manual_seed(decade + 100)
    parts = torch.randn(20011, 2, generator=gen) * 10.0**decade
    parts[::7, 0] = 0.0
    parts[::11, 1] = 0.0
    spec = torch.view_as_complex(parts.contiguous())
    _exactly_abs(spec)
    _exactly_abs(spec[::3])  # a strided view


def test_tiny_entries_are_the_reason_for_the_fallback():
    gen = torch.Generator().manual_seed(5)
    spec = torch.view_as_complex((torch.randn(200003, 2, generator=gen) * 1e-38).contiguous())
    hypot = torch.hypot(spec.real, spec.imag)
    assert bool((hypot != spec.abs()).any())  # if torch ever agrees, the fallback can go
    assert float(hypot.max()) < EXACT_FROM
    _exactly_abs(spec)


def test_special_values_and_other_dtypes_follow_abs():
    inf, nan = float("inf"), float("nan")
    special = torch.tensor([complex(inf, 1), complex(nan, 0), complex(0, -inf), complex(3, 4)])
    _exactly_abs(special)
    _exactly_abs(special.to(torch.complex128))  # not checked for hypot: abs itself
    real = torch.tensor([-2.0, 0.0, 3.5])
    assert torch.equal(complex_magnitude(real), real.abs())


def test_a_tensor_that_needs_a_gradient_keeps_abs_gradient_at_zero():
    spec = torch.tensor([complex(0, 0), complex(3, 4)], requires_grad=True)
    complex_magnitude(spec).sum().backward()
    assert spec.grad is not None and bool(torch.isfinite(torch.view_as_real(spec.grad)).all())
    assert torch.view_as_real(spec.grad)[0].abs().sum() == 0  # hypot's would be NaN
