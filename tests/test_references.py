"""The reference explainers (oracle, anti-oracle, loudest, random) return the masks
their definitions give, computed here by hand from the stems."""

from __future__ import annotations

import math

import pytest
import torch
from explainer_contexts import explainer_context

from l2i_bench.audio import SAMPLE_RATE, FrontEnd
from l2i_bench.errors import BenchError
from l2i_bench.plugins.explainers.loudest import LoudestExplainer
from l2i_bench.plugins.explainers.oracle import AntiOracleExplainer, OracleExplainer
from l2i_bench.plugins.explainers.random import RandomExplainer
from l2i_bench.types import AudioBatch, Task

FE = FrontEnd("cpu")
LENGTH = 22_050


class _Classifier:
    task = Task.MULTICLASS
    num_classes = 3


def _batch() -> AudioBatch:
    t = torch.arange(LENGTH) / SAMPLE_RATE
    target = 0.8 * torch.sin(2 * math.pi * 1000 * t)[None]  # a 1 kHz tone
    interference = 0.05 * torch.randn(1, LENGTH, generator=torch.Generator().manual_seed(0))
    mix = target + interference
    spec = FE.stft(mix)
    return AudioBatch(
        ["clip"],
        mix,
        spec,
        FE.logmel_from_magnitude(spec.abs()),
        torch.tensor([[1.0, 0.0, 0.0]]),
        stems={"target": target, "interference": interference},
    )


def test_oracle_is_the_target_ratio_mask_and_anti_oracle_its_complement():
    batch = _batch()
    ctx = explainer_context(_Classifier(), front_end=FE)
    oracle = OracleExplainer(ctx).explain(batch, torch.tensor([0]))
    anti = AntiOracleExplainer(ctx).explain(batch, torch.tensor([0]))
    t = FE.stft(batch.stems["target"]).abs().square()
    i = FE.stft(batch.stems["interference"]).abs().square()
    assert torch.allclose(oracle.mask, (t / (t + i)).float(), atol=1e-5)
    assert torch.allclose(anti.mask, 1.0 - oracle.mask, atol=1e-6)
    assert oracle.mask_domain == "linear"
    # the 1 kHz bin (1000 / 43.07 = bin 23) is the target's, a 10 kHz bin is not
    assert oracle.mask[0, 23].mean() > 0.99
    assert oracle.mask[0, 232].mean() < 0.01
    assert OracleExplainer.reference and OracleExplainer.needs_stems


def test_oracle_without_stems_names_the_fix():
    batch = _batch()
    batch.stems = {}
    with pytest.raises(BenchError, match="stems"):
        OracleExplainer(explainer_context(_Classifier())).explain(batch, torch.tensor([0]))


def test_loudest_keeps_the_loudest_bins_up_to_its_coverage():
    batch = _batch()
    ctx = explainer_context(_Classifier(), {"coverage": 0.9})
    mask = LoudestExplainer(ctx).explain(batch, torch.tensor([0])).mask
    power = batch.spec.abs().square()
    kept = (mask * power).sum() / power.sum()
    assert kept.item() == pytest.approx(0.9, abs=0.01)
    # every kept bin is at least as loud as every dropped one
    assert power[mask > 0].min() >= power[mask == 0].max()
    assert LoudestExplainer.reference and not LoudestExplainer.needs_stems


def test_random_keeps_its_share_of_bins_and_is_a_reference():
    batch = _batch()
    ctx = explainer_context(_Classifier(), {"coverage": 0.25})
    mask = RandomExplainer(ctx).explain(batch, torch.tensor([0])).mask
    assert mask.mean().item() == pytest.approx(0.25, abs=1e-3)
    assert RandomExplainer.reference
