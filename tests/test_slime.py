"""SLIME: segmentation, LIME pieces against scikit-learn, and the end-to-end property
that on a classifier which only listens to one time region, the kept segment is the
one holding that region."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from explainer_contexts import explainer_context
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.metrics.pairwise import cosine_distances
from torch import nn

from l2i_bench.audio import HOP_LENGTH, SAMPLE_RATE, FrontEnd, num_frames
from l2i_bench.plugins.explainers.slime import (
    SlimeExplainer,
    WeightedRidge,
    cosine_kernel,
    count_segments,
    frame_gate,
    neighbourhood,
    segment_bounds,
    segment_windows,
)
from l2i_bench.types import AudioBatch, ExplainerContext, Task

SECONDS = 3.0  # six 500 ms segments; frames 0..258, segment s = frames [43 s, 43 s + 43)
REGION = (88, 128)  # STFT frames the test classifier listens to: inside segment 2
REGION_SEGMENT = 2


class RegionNet(nn.Module):
    """Two classes; the logit of class 0 is ``gain * (mean dB of frames REGION - ref)``
    and class 1's is 0, so the decision depends on those frames only."""

    tap_names = ("B4", "B5", "B6")

    def __init__(self, task: Task, gain: float = 0.2) -> None:
        super().__init__()
        self.task, self.num_classes, self.gain = task, 2, gain
        self.register_buffer("ref", torch.zeros(()))
        self.calls: list[torch.Tensor] = []
        self.record = False

    def region_level(self, logmel: torch.Tensor) -> torch.Tensor:
        return logmel[:, 0, REGION[0] : REGION[1], :].mean(dim=(1, 2))

    def forward_with_taps(self, logmel):
        if self.record:
            self.calls.append(logmel.detach().clone())
        logit = self.gain * (self.region_level(logmel) - self.ref)
        logits = torch.stack([logit, torch.zeros_like(logit)], dim=1)
        return logits, {}

    def forward(self, logmel):
        return self.forward_with_taps(logmel)[0]

    def probabilities(self, logits):
        if self.task is Task.MULTICLASS:
            return torch.softmax(logits, dim=-1)
        return torch.sigmoid(logits)


def make_batch(front_end: FrontEnd, rows: int = 1, seconds: float = SECONDS) -> AudioBatch:
    gen = torch.Generator().manual_seed(3)
    length = int(seconds * SAMPLE_RATE)
    wave = 0.05 * torch.randn(rows, length, generator=gen)
    return AudioBatch(
        [f"clip{i}" for i in range(rows)],
        wave,
        front_end.stft(wave),
        front_end.logmel(wave),
        torch.zeros(rows, 2),
    )


def make_context(classifier, front_end, **options) -> ExplainerContext:
    return explainer_context(classifier, options, front_end=front_end)


# ------------------------------------------------------------------ segmentation


def test_segment_count_follows_clip_length_and_last_takes_leftover():
    assert count_segments(5 * SAMPLE_RATE) == 10
    assert count_segments(10 * SAMPLE_RATE) == 20
    bounds = segment_bounds(5 * SAMPLE_RATE, num_frames(5 * SAMPLE_RATE))
    assert bounds[0] == 0 and bounds[-1] == 431
    sizes = np.diff(bounds)
    assert list(sizes[:-1]) == [43] * 9 and sizes[-1] == 44  # 431 = 10 * 43 + 1


def test_windows_partition_unity_and_gate_frames_binary():
    length = int(SECONDS * SAMPLE_RATE)
    frames = num_frames(length)
    bounds = segment_bounds(length, frames)
    windows = segment_windows(length, bounds, fade_samples=441)
    assert torch.allclose(windows.sum(0), torch.ones(length), atol=1e-6)
    gates = frame_gate(windows, frames)
    assert set(gates.unique().tolist()) <= {0.0, 1.0}
    # each frame belongs to exactly the segment its index falls in
    for s in range(len(bounds) - 1):
        assert torch.all(gates[s, bounds[s] : bounds[s + 1]] == 1)
        assert gates[s].sum() == bounds[s + 1] - bounds[s]
    # a fade is short: 5 ms after a border the next segment's window is fully on
    border = bounds[1] * HOP_LENGTH - HOP_LENGTH // 2
    assert windows[1, border + 221] == 1 and windows[0, border + 221] == 0
    assert 0 < windows[1, border] < 1


# ------------------------------------------------------------- LIME components


def test_cosine_kernel_matches_sklearn_distance():
    masks = neighbourhood(8, 50, seed=1)
    distance = cosine_distances(masks.numpy(), np.ones((1, 8)))[:, 0]
    expected = np.exp(-(distance**2) / (2 * 0.25**2))
    assert np.allclose(cosine_kernel(masks, 0.25).numpy(), expected, atol=1e-6)


def test_neighbourhood_starts_with_instance_then_fair_coins():
    masks = neighbourhood(10, 1000, seed=5)
    assert torch.all(masks[0] == 1)
    assert abs(masks[1:].float().mean().item() - 0.5) < 0.03
    assert not torch.equal(masks, neighbourhood(10, 1000, seed=6))
    assert torch.equal(masks, neighbourhood(10, 1000, seed=5))


def test_weighted_ridge_matches_sklearn():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(300, 7)).astype(np.float64)
    y = x @ rng.normal(size=7) + 0.3 * rng.normal(size=300) + 0.5
    w = rng.uniform(0.01, 1.0, size=300)
    reference = Ridge(alpha=1.0).fit(x, y, sample_weight=w)
    model = WeightedRidge(alpha=1.0)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(
            torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)
        ),
        batch_size=300,
    )
    model.fit(loader)
    assert np.allclose(model.representation().numpy()[0], reference.coef_, atol=1e-4)
    assert math.isclose(model.intercept, reference.intercept_, abs_tol=1e-4)
    expected_r2 = r2_score(y, reference.predict(x), sample_weight=w)
    assert math.isclose(model.r2, expected_r2, abs_tol=1e-5)


# ------------------------------------------------------------------ end to end


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.MULTILABEL])
def test_slime_keeps_the_segment_the_classifier_listens_to(task):
    front_end = FrontEnd()
    batch = make_batch(front_end, rows=2)
    net = RegionNet(task)
    net.ref.fill_(float(net.region_level(batch.logmel).mean()) - 1.0 / net.gain)
    explainer = SlimeExplainer(make_context(net, front_end, samples=120))
    out = explainer.explain(batch, torch.tensor([0, 0]))

    d = count_segments(batch.waveform.shape[1])
    frames = batch.spec.shape[2]
    assert out.relevance.shape == (2, d)
    assert out.mask.shape == batch.spec.shape
    assert out.mask.min() >= 0 and out.mask.max() <= 1
    for row in range(2):
        coef = out.relevance[row]
        assert int(coef.argmax()) == REGION_SEGMENT
        others = torch.cat([coef[:REGION_SEGMENT], coef[REGION_SEGMENT + 1 :]])
        assert coef[REGION_SEGMENT] > 20 * others.abs().max()
        kept = out.extra["kept_segments"][row].bool()
        assert kept[REGION_SEGMENT] and 1 <= int(kept.sum()) <= 5
        assert torch.all(coef[kept] > 0)
        # the mask is the time gate of the kept segments, constant over frequency
        bounds = segment_bounds(batch.waveform.shape[1], frames)
        expected = torch.zeros(frames)
        for s in kept.nonzero().flatten().tolist():
            expected[bounds[s] : bounds[s + 1]] = 1
        assert torch.equal(out.mask[row], expected.expand_as(out.mask[row]))
        # the listenable waveform is the input inside kept segments, silence far outside
        gate = out.waveform[row] / batch.waveform[row]
        centre = (bounds[REGION_SEGMENT] + bounds[REGION_SEGMENT + 1]) // 2 * HOP_LENGTH
        assert torch.allclose(gate[centre - 2000 : centre + 2000], torch.ones(4000))
        for s in (~kept).nonzero().flatten().tolist():
            mid = (bounds[s] + bounds[s + 1]) // 2 * HOP_LENGTH
            assert torch.all(out.waveform[row, mid - 2000 : mid + 2000] == 0)
    # the probability is linear in the region's bit: the surrogate explains it well
    assert torch.all(out.extra["r2"] <= 1.0) and torch.all(out.extra["r2"] > 0.9)
    assert out.extra["r2"].shape == (2,)


def test_first_perturbation_is_the_clip_and_perturbations_are_batched():
    front_end = FrontEnd()
    batch = make_batch(front_end)
    net = RegionNet(Task.MULTICLASS)
    net.record = True
    explainer = SlimeExplainer(make_context(net, front_end, samples=130, perturbations_per_eval=50))
    explainer.explain(batch, torch.tensor([1]))
    assert [c.shape[0] for c in net.calls] == [50, 50, 30]
    assert torch.allclose(net.calls[0][0], batch.logmel[0], atol=1e-4)
    # the other perturbations silence something, so they differ from the clip
    assert not torch.allclose(net.calls[0][1], batch.logmel[0], atol=1e-2)


def test_same_seed_same_explanation_on_kumar_cnn():
    from l2i_bench.classifier import KumarCNN

    torch.manual_seed(0)
    net = KumarCNN(num_classes=3, task=Task.MULTILABEL, width=0.125).eval()
    front_end = FrontEnd()
    batch = make_batch(front_end, seconds=1.5)
    explainer = SlimeExplainer(make_context(net, front_end, samples=30))
    first = explainer.explain(batch, torch.tensor([2]))
    second = explainer.explain(batch, torch.tensor([2]))
    assert torch.equal(first.relevance, second.relevance)
    assert first.waveform.shape == batch.waveform.shape
    assert first.mask.shape == batch.spec.shape


def test_bad_option_names_the_option():
    from l2i_bench.errors import BenchError

    front_end = FrontEnd()
    explainer = SlimeExplainer(make_context(RegionNet(Task.MULTICLASS), front_end, samples=1))
    with pytest.raises(BenchError, match=r"slime\.samples"):
        explainer.explain(make_batch(front_end), torch.tensor([0]))
