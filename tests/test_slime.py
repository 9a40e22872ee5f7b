"""SLIME: segment counts derived by hand for every dataset's clip length, the band
partition, LIME pieces against scikit-learn, and end-to-end values: on toy classifiers
that only listen to one time segment, one frequency band or one time-frequency cell,
the top segment is that one, and the number kept is the configured share."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import torch
from explainer_contexts import explainer_context
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.metrics.pairwise import cosine_distances
from torch import nn

from l2i_bench.audio import HOP_LENGTH, N_FFT, SAMPLE_RATE, FrontEnd, num_frames
from l2i_bench.errors import BenchError
from l2i_bench.plugins.explainers.slime import (
    DEFAULT_KEEP_SHARE,
    SlimeExplainer,
    WeightedRidge,
    auto_segment_ms,
    band_bins,
    cosine_kernel,
    count_segments,
    frame_gate,
    keep_count,
    neighbourhood,
    segment_bounds,
    segment_windows,
)
from l2i_bench.types import AudioBatch, ExplainerContext, Task

SECONDS = 2.0  # synth's clip: 173 frames, ten 200 ms segments of 17 frames (last: 20)


class RegionNet(nn.Module):
    """Two classes; the logit of class 0 is ``gain * (mean dB of one log-mel region -
    ref)`` and class 1's is 0, so the decision depends on that region only. Written by
    hand, independent of the explainer under test."""

    tap_names = ("B4", "B5", "B6")
    late_taps = ("B4", "B5", "B6")

    def __init__(
        self,
        task: Task,
        frames: tuple[int, int] | None = None,
        mels: tuple[int, int] | None = None,
        gain: float = 0.2,
    ) -> None:
        super().__init__()
        self.task, self.num_classes, self.gain = task, 2, gain
        self.frames, self.mels = frames or (0, None), mels or (0, None)
        self.register_buffer("ref", torch.zeros(()))
        self.calls: list[torch.Tensor] = []
        self.record = False

    def region_level(self, logmel: torch.Tensor) -> torch.Tensor:
        region = logmel[:, 0, slice(*self.frames), slice(*self.mels)]
        return region.mean(dim=(1, 2))

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

    def centre_on(self, batch: AudioBatch) -> None:
        """Put the clip's own level one logit unit above ``ref``: the probability is
        then far from 0 and 1, so silencing the region moves it a lot."""
        self.ref.fill_(float(self.region_level(batch.logmel).mean()) - 1.0 / self.gain)


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


@pytest.mark.parametrize(
    ("seconds", "frames", "segment_ms", "time_sizes", "grid", "kept"),
    [
        # synth: 2 s / 10 = 200 ms -> 10 segments; 173 = 10 * 17 + 3 -> last has 20
        (2.0, 173, 200.0, [17] * 9 + [20], 40, 3),
        # ESC-50: 5 s / 10 = 500 ms -> 10 segments; 431 = 10 * 43 + 1
        (5.0, 431, 500.0, [43] * 9 + [44], 40, 3),
        # SONYC-UST: 10 s / 10 = 1 s, capped at 500 ms -> 20 segments; 862 = 20 * 43 + 2
        (10.0, 862, 500.0, [43] * 19 + [45], 80, 6),
    ],
)
def test_segment_counts_per_dataset_clip_length(
    seconds, frames, segment_ms, time_sizes, grid, kept
):
    samples = round(seconds * SAMPLE_RATE)
    assert num_frames(samples) == frames
    assert auto_segment_ms(samples) == segment_ms
    bounds = segment_bounds(samples, frames, segment_ms)
    assert list(np.diff(bounds)) == time_sizes and bounds[0] == 0 and bounds[-1] == frames
    n_t = len(time_sizes)
    assert count_segments(samples, "temporal") == n_t
    assert count_segments(samples, "spectral") == 4
    assert count_segments(samples) == count_segments(samples, "time_frequency") == grid == 4 * n_t
    # default caps: 0.075 of the grid (3 of 40, 6 of 80), 1/4 of the one-axis splits
    assert keep_count(grid, DEFAULT_KEEP_SHARE["time_frequency"]) == kept
    assert keep_count(n_t, 0.25) == {10: 3, 20: 5}[n_t]
    assert keep_count(4, 0.25) == 1
    # The cap binds: even the largest cells the cap allows (top band, longest
    # segments) cover well under half of the spectrogram's bins.
    bins = band_bins(FrontEnd().mel_basis, 4)
    areas = (bins.sum(1)[:, None] * torch.tensor(time_sizes, dtype=torch.float)[None]).flatten()
    worst = float(areas.topk(kept).values.sum() / (513 * frames))
    assert worst < 0.25, worst


def test_keep_count_rounds_half_up_and_keeps_at_least_one():
    assert keep_count(20, 0.125) == 3  # 2.5 -> 3, not banker's 2
    assert keep_count(40, 0.3) == 12
    assert keep_count(4, 0.01) == 1
    assert keep_count(10, 1.0) == 10


def test_bands_partition_the_bins_at_the_mel_group_edges():
    bins = band_bins(FrontEnd().mel_basis, 4)
    assert bins.shape == (4, 513)
    assert torch.equal(bins.sum(0), torch.ones(513))  # every bin in exactly one band
    owner = bins.argmax(0).numpy()
    assert np.all(np.diff(owner) >= 0)  # bands are contiguous, low to high
    # Band g holds mel filters 32g..32g+31; filter m is centred on point m+1 of the
    # 130 Slaney mel points. A bin below the centre of the last filter of group g-1
    # is in a band below g; one above the centre of group g's first filter is in g+.
    centres = librosa.mel_frequencies(130, fmin=0.0, fmax=SAMPLE_RATE / 2)
    hz = np.arange(513) * SAMPLE_RATE / N_FFT
    for g in (1, 2, 3):
        assert np.all(owner[hz < centres[32 * g]] < g)
        assert np.all(owner[hz > centres[32 * g + 1]] >= g)
    # the hand-computed edges: ~1.0, ~2.8, ~7.8 kHz
    assert [int(bins[g].sum()) for g in range(4)] == [24, 42, 116, 331]


def test_windows_partition_unity_and_gate_frames_binary():
    length = int(SECONDS * SAMPLE_RATE)
    frames = num_frames(length)
    bounds = segment_bounds(length, frames, 200.0)
    windows = segment_windows(length, bounds, fade_samples=441)
    assert torch.allclose(windows.sum(0), torch.ones(length), atol=1e-6)
    gates = frame_gate(windows, frames)
    assert set(gates.unique().tolist()) <= {0.0, 1.0}
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


def _assert_top_segment(out, target: int, rows: int) -> None:
    for row in range(rows):
        coef = out.relevance[row]
        assert int(coef.argmax()) == target, coef
        others = torch.cat([coef[:target], coef[target + 1 :]])
        assert coef[target] > 10 * others.abs().max(), coef
        assert out.extra["kept_segments"][row, target] == 1


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.MULTILABEL])
def test_temporal_top_segment_is_the_one_the_classifier_listens_to(task):
    front_end = FrontEnd()
    batch = make_batch(front_end, rows=2)
    bounds = segment_bounds(batch.waveform.shape[1], 173, 200.0)
    assert bounds[3:5] == [51, 68]  # segment 3 = frames 51..67
    net = RegionNet(task, frames=(54, 65))  # inside it, clear of the STFT overlap
    net.centre_on(batch)
    explainer = SlimeExplainer(make_context(net, front_end, segmentation="temporal", samples=150))
    out = explainer.explain(batch, torch.tensor([0, 0]))

    assert out.relevance.shape == (2, 10)
    _assert_top_segment(out, 3, rows=2)
    # the mask is the time gate of the kept segments, constant over frequency
    for row in range(2):
        kept = out.extra["kept_segments"][row].bool()
        assert 1 <= int(kept.sum()) <= 3  # keep_share 1/4 of 10, positive only
        expected = torch.zeros(173)
        for s in kept.nonzero().flatten().tolist():
            expected[bounds[s] : bounds[s + 1]] = 1
        assert torch.equal(out.mask[row], expected.expand_as(out.mask[row]))
        # the listenable waveform is the input inside kept segments, silence outside
        centre = (bounds[3] + bounds[4]) // 2 * HOP_LENGTH
        assert torch.allclose(
            out.waveform[row, centre - 2000 : centre + 2000],
            batch.waveform[row, centre - 2000 : centre + 2000],
        )
        for s in (~kept).nonzero().flatten().tolist():
            mid = (bounds[s] + bounds[s + 1]) // 2 * HOP_LENGTH
            assert torch.all(out.waveform[row, mid - 1500 : mid + 1500] == 0)
    # the probability is near-linear in the region's bit: the surrogate explains it well
    assert torch.all(out.extra["r2"] <= 1.0) and torch.all(out.extra["r2"] > 0.9)


def test_spectral_top_band_is_the_one_the_classifier_listens_to():
    front_end = FrontEnd()
    batch = make_batch(front_end)
    net = RegionNet(Task.MULTICLASS, mels=(70, 90))  # inside mel group 2 (64..95)
    net.centre_on(batch)
    explainer = SlimeExplainer(make_context(net, front_end, segmentation="spectral", samples=60))
    out = explainer.explain(batch, torch.tensor([0]))
    assert out.relevance.shape == (1, 4)
    _assert_top_segment(out, 2, rows=1)
    assert int(out.extra["kept_segments"].sum()) == 1  # 1/4 of 4 bands
    # the mask is band 2's bins over the whole clip
    bins = band_bins(front_end.mel_basis, 4)
    assert torch.equal(out.mask[0], bins[2][:, None].expand(513, 173))


def test_time_frequency_top_cell_is_the_one_the_classifier_listens_to():
    front_end = FrontEnd()
    batch = make_batch(front_end)
    # time segment 6 = frames 102..118, mel group 1 = bands 32..63
    net = RegionNet(Task.MULTICLASS, frames=(105, 116), mels=(38, 58))
    net.centre_on(batch)
    explainer = SlimeExplainer(make_context(net, front_end, samples=300))  # the default grid
    out = explainer.explain(batch, torch.tensor([0]))
    assert out.relevance.shape == (1, 40)
    _assert_top_segment(out, 1 * 10 + 6, rows=1)  # band-major: band 1, time segment 6
    kept = out.extra["kept_segments"][0]
    assert 1 <= int(kept.sum()) <= 3  # 0.075 of 40
    # the mask is the kept cells: band bins x segment frames
    bins = band_bins(front_end.mel_basis, 4)
    bounds = segment_bounds(batch.waveform.shape[1], 173, 200.0)
    expected = torch.zeros(513, 173)
    for u in kept.nonzero().flatten().tolist():
        b, t = divmod(u, 10)
        expected[bins[b].bool(), bounds[t] : bounds[t + 1]] = 1
    assert torch.equal(out.mask[0], expected)
    # the listenable output is what the mask keeps: istft(M X) up to fades/overlap
    resynth = front_end.apply_mask(batch.spec, out.mask, batch.waveform.shape[1])
    err = float(((out.waveform - resynth) ** 2).sum() / (resynth**2).sum())
    assert err < 0.05, err


@pytest.mark.parametrize(("share", "expected"), [(None, 3), (0.3, 12)])
def test_kept_count_is_the_configured_share_of_segments(share, expected):
    front_end = FrontEnd()
    batch = make_batch(front_end)
    # listens to the whole log-mel: silencing any cell lowers the score, so every
    # coefficient is positive and the cap alone decides how many are kept
    net = RegionNet(Task.MULTICLASS, gain=0.05)
    net.centre_on(batch)
    options = {"samples": 300} if share is None else {"samples": 300, "keep_share": share}
    out = SlimeExplainer(make_context(net, front_end, **options)).explain(batch, torch.tensor([0]))
    assert torch.all(out.relevance > 0)
    kept = out.extra["kept_segments"][0]
    assert int(kept.sum()) == expected
    # the kept ones are the largest coefficients
    assert out.relevance[0][kept.bool()].min() >= out.relevance[0][~kept.bool()].max()
    # and the mask covers exactly the kept cells' bins
    bins = band_bins(front_end.mel_basis, 4)
    sizes = torch.tensor([17] * 9 + [20], dtype=torch.float)
    area = float((bins.sum(1)[:, None] * sizes[None]).flatten()[kept.bool()].sum())
    assert float(out.mask[0].sum()) == area


def test_first_perturbation_is_the_clip_and_perturbations_are_batched():
    front_end = FrontEnd()
    batch = make_batch(front_end)
    net = RegionNet(Task.MULTICLASS)
    net.record = True
    explainer = SlimeExplainer(make_context(net, front_end, samples=130, perturbations_per_eval=50))
    explainer.explain(batch, torch.tensor([1]))
    assert [c.shape[0] for c in net.calls] == [50, 50, 30]
    # the band split sums back to the clip: the all-ones mask is the clip itself
    assert torch.allclose(net.calls[0][0], batch.logmel[0], atol=1e-2)
    # the other perturbations silence something, so they differ from the clip
    assert not torch.allclose(net.calls[0][1], batch.logmel[0], atol=1e-1)


def test_same_seed_same_explanation_on_kumar_cnn():
    from l2i_bench.plugins.classifiers.kumar import KumarCNN

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


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"samples": 1}, "samples"),
        ({"segmentation": "mel"}, "segmentation"),
        ({"keep_share": 0.0}, "keep_share"),
        ({"bands": 3}, "bands"),
        ({"segment_ms": "long"}, "segment_ms"),
    ],
)
def test_bad_option_names_the_option(options, name):
    front_end = FrontEnd()
    explainer = SlimeExplainer(make_context(RegionNet(Task.MULTICLASS), front_end, **options))
    with pytest.raises(BenchError, match=rf"slime\.{name}"):
        explainer.explain(make_batch(front_end), torch.tensor([0]))
