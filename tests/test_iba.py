"""IBA: the capacity formula, statistics and mel->STFT map against independent
computations, and the end-to-end property that the mask follows what the classifier
uses, not what is loud: of two equal bursts, the one the classifier listens to gets
more of the mask."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from explainer_contexts import explainer_context
from torch import nn

from l2i_bench.audio import SAMPLE_RATE, FrontEnd
from l2i_bench.errors import BenchError
from l2i_bench.plugins.explainers.iba import (
    FeatureStats,
    IbaExplainer,
    capacity_nats,
    find_tap_module,
    saliency_to_mask,
    smooth,
)
from l2i_bench.types import AudioBatch, ExplainerContext, Task

SECONDS = 3.0  # 259 frames, B4 grid 32 x 16
USED = (88, 128)  # frames of the burst the classifier listens to (B4 rows 11..15)
IGNORED = (176, 216)  # frames of an equal burst it ignores (B4 rows 22..26)


class RegionTapNet(nn.Module):
    """A ClassifierModel with a B4 tap: ``b4`` = 8x8 average pool of the log-mel and a
    1x1 conv + ReLU (4 channels); class 0's logit reads B4 rows 11..15 only."""

    tap_names = ("B4", "B5", "B6")
    late_taps = ("B4", "B5", "B6")

    def __init__(self, task: Task, gain: float = 16.0) -> None:
        super().__init__()
        self.task, self.num_classes, self.gain = task, 2, gain
        conv = nn.Conv2d(1, 4, kernel_size=1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([0.04, 0.05, 0.06, 0.07]).view(4, 1, 1, 1))
            conv.bias.fill_(4.0)
        self.b4 = nn.Sequential(nn.AvgPool2d(8), conv, nn.ReLU())
        self.register_buffer("ref", torch.zeros(()))

    def level(self, t4: torch.Tensor) -> torch.Tensor:
        return t4[:, :, USED[0] // 8 : USED[1] // 8].mean(dim=(1, 2, 3))

    def forward_with_taps(self, logmel):
        t4 = self.b4(logmel)
        logit = self.gain * (self.level(t4) - self.ref)
        logits = torch.stack([logit, torch.zeros_like(logit)], dim=1)
        return logits, {"B4": t4, "B5": t4[:, :, ::2, ::2], "B6": t4[:, :, ::4, ::4]}

    def forward(self, logmel):
        return self.forward_with_taps(logmel)[0]

    def probabilities(self, logits):
        if self.task is Task.MULTICLASS:
            return torch.softmax(logits, dim=-1)
        return torch.sigmoid(logits)


class Clips:
    """A BatchSource over an AudioBatch (what ClipSet offers the explainer)."""

    def __init__(self, batch: AudioBatch) -> None:
        self.batch = batch
        self.clips = list(batch.clip_ids)

    def __len__(self) -> int:
        return len(self.batch)

    def batches(self, batch_size, *, shuffle=False, seed=0):
        for start in range(0, len(self), batch_size):
            yield self.batch.select(range(start, min(len(self), start + batch_size)))


def audio_batch(front_end: FrontEnd, wave: torch.Tensor) -> AudioBatch:
    return AudioBatch(
        [f"clip{i}" for i in range(len(wave))],
        wave,
        front_end.stft(wave),
        front_end.logmel(wave),
        torch.zeros(len(wave), 2),
    )


def noise(rows: int, seconds: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.02 * torch.randn(rows, int(seconds * SAMPLE_RATE), generator=gen)


def make_context(classifier, front_end, **options) -> ExplainerContext:
    return explainer_context(classifier, options, front_end=front_end)


# ------------------------------------------------------------------ pieces


def test_capacity_is_the_kl_to_the_noise_prior():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(50, generator=gen) * 2 + 1
    lam = torch.rand(50, generator=gen) * 0.98
    mean = torch.randn(50, generator=gen)
    std = torch.rand(50, generator=gen) + 0.5
    posterior = torch.distributions.Normal(lam * features + (1 - lam) * mean, (1 - lam) * std)
    prior = torch.distributions.Normal(mean, std)
    expected = torch.distributions.kl_divergence(posterior, prior)
    assert torch.allclose(capacity_nats(features, lam, mean, std), expected, atol=1e-4)


def test_feature_stats_match_a_single_pass():
    gen = torch.Generator().manual_seed(1)
    data = torch.relu(torch.randn(37, 3, 5, 4, generator=gen) * 3 + 1)
    stats = FeatureStats()
    for chunk in data.split(8):
        stats.update(chunk)
    assert stats.count == 37
    assert torch.allclose(stats.mean.float(), data.mean(0), atol=1e-5)
    assert torch.allclose(stats.std().float(), data.std(0), atol=1e-5)
    assert torch.allclose(stats.nonzero.float(), (data != 0).sum(0).float())


def test_smoothing_keeps_constants_and_spreads_a_spike():
    flat = torch.full((1, 2, 9, 7), 0.3)
    assert torch.allclose(smooth(flat, 1.0), flat, atol=1e-6)
    spike = torch.zeros(1, 1, 9, 9)
    spike[0, 0, 4, 4] = 1
    out = smooth(spike, 1.0)
    assert abs(out.sum().item() - 1) < 1e-5 and out[0, 0, 4, 4] < 0.2
    assert torch.allclose(out[0, 0], out[0, 0].T, atol=1e-6)


def test_mel_to_linear_keeps_flat_maps_flat_and_follows_the_bands():
    front_end = FrontEnd()
    matrix = front_end.mel_to_linear
    assert torch.allclose(matrix.sum(1), torch.ones(matrix.shape[0]), atol=1e-5)
    low = torch.zeros(1, 4, 16)
    low[:, :, :2] = 1.0  # saliency in the lowest 16 of 128 mel bands only
    mask = saliency_to_mask(low, 20, matrix)
    assert mask.shape == (1, 513, 20) and mask.min() >= 0 and mask.max() <= 1
    torch.testing.assert_close(mask, _hand_mask(low, 20, front_end.mel_basis))
    top_hz = front_end.mel_basis.shape[1]
    # mass sits below the 16th band's upper edge, never at the top of the spectrum
    assert mask[0, : top_hz // 4].mean() > 10 * mask[0, top_hz // 2 :].mean()


def test_hook_lookup_finds_kumar_b4_and_refuses_a_functional_tap():
    from l2i_bench.plugins.classifiers.kumar import KumarCNN

    net = KumarCNN(num_classes=2, task=Task.MULTICLASS, width=0.125).eval()
    probe = torch.randn(1, 1, 96, 128)
    assert find_tap_module(net, "B4", probe) is net.b4

    class Functional(RegionTapNet):
        def forward_with_taps(self, logmel):
            logits, taps = super().forward_with_taps(logmel)
            return logits, {**taps, "B4": taps["B4"] * 1.0}  # no module outputs this

    with pytest.raises(BenchError, match="tap_modules"):
        find_tap_module(Functional(Task.MULTICLASS), "B4", probe)


# ------------------------------------------------------------------ end to end


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.MULTILABEL])
def test_iba_mask_follows_the_used_burst_not_the_ignored_one(task):
    front_end = FrontEnd()
    # training clips span +-20 dB, so a +20 dB burst is unusual but not extreme
    train_waves = noise(24, SECONDS, seed=2) * torch.logspace(-1, 1, 24)[:, None]
    wave = noise(1, SECONDS, seed=7)
    for start, stop in (USED, IGNORED):
        wave[:, start * 512 : stop * 512] *= 10.0  # two equal +20 dB bursts
    batch = audio_batch(front_end, wave)
    net = RegionTapNet(task).eval()
    with torch.no_grad():
        level = net.level(net.b4(batch.logmel))
    net.ref.fill_(float(level) - 2.0 / net.gain)  # p(class 0) ~ 0.88 on the clip

    explainer = IbaExplainer(make_context(net, front_end))
    info = explainer.fit(Clips(audio_batch(front_end, train_waves)), None)
    assert info["b4_clips"] == 24 and info["relu_clamp"] is True
    out = explainer.explain(batch, torch.tensor([0]))

    assert out.mask.shape == batch.spec.shape
    assert out.mask.min() >= 0 and out.mask.max() <= 1
    assert out.relevance.shape == (1, 32 * 16)
    used = out.mask[0, :, USED[0] + 4 : USED[1] - 4].mean()
    ignored = out.mask[0, :, IGNORED[0] + 4 : IGNORED[1] - 4].mean()
    quiet = out.mask[0, :, 20:60].mean()
    assert used > 2 * ignored and used > 2 * quiet
    # the classifier is left as it was found
    assert all(p.requires_grad and p.grad is None for p in net.parameters())


def _hand_mask(saliency: torch.Tensor, frames: int, mel_basis: torch.Tensor) -> torch.Tensor:
    """B4-grid saliency (B, T', F') -> STFT mask, written from the module docstring:
    bilinear to (T, 128), each STFT bin the filter-weighted mean of the mel values
    (a bin no filter covers copies the nearest covered bin), min-max per clip."""
    weights = mel_basis.T.clamp_min(0.0).double()  # (F, M)
    sums = weights.sum(1)
    covered = [i for i in range(len(sums)) if sums[i] > 0]
    rows = []
    for i in range(len(sums)):
        j = i if sums[i] > 0 else min(covered, key=lambda k: abs(k - i))
        rows.append(weights[j] / sums[j])
    to_linear = torch.stack(rows)
    mel = F.interpolate(
        saliency[:, None].double(), size=(frames, weights.shape[1]), mode="bilinear"
    )[:, 0].clamp_min(0.0)
    linear = torch.einsum("fm,btm->bft", to_linear, mel)
    low = linear.flatten(1).min(1).values[:, None, None]
    high = linear.flatten(1).max(1).values[:, None, None]
    return ((linear - low) / (high - low)).float()


def test_iba_on_kumar_cnn_shapes_state_and_determinism():
    from l2i_bench.plugins.classifiers.kumar import KumarCNN

    torch.manual_seed(0)
    net = KumarCNN(num_classes=3, task=Task.MULTICLASS, width=0.125).eval()
    front_end = FrontEnd()
    batch = audio_batch(front_end, noise(2, 1.5, seed=4))
    explainer = IbaExplainer(make_context(net, front_end, steps=3, draws=4))
    with pytest.raises(BenchError, match="fit"):
        explainer.explain(batch, torch.tensor([0, 2]))
    train = audio_batch(front_end, noise(6, 1.5, seed=5))
    explainer.fit(Clips(train), None)
    # the fitted state: B4 statistics of the 6 training clips, recomputed in one pass
    with torch.no_grad():
        b4 = net.forward_with_taps(train.logmel)[1]["B4"].double()
    state = explainer.state_dict()
    assert int(state["count"]) == 6
    torch.testing.assert_close(state["mean"], b4.mean(0).float())
    torch.testing.assert_close(state["std"], b4.std(0).float())
    torch.testing.assert_close(state["active"], ((b4 != 0).double().mean(0) > 0.01).float())
    assert bool(state["relu"]) == bool(b4.min() >= 0)

    first = explainer.explain(batch, torch.tensor([0, 2]))
    fresh = IbaExplainer(make_context(net, front_end, steps=3, draws=4))
    fresh.load_state_dict(explainer.state_dict())
    second = fresh.explain(batch, torch.tensor([0, 2]))
    assert torch.equal(first.mask, second.mask)
    assert torch.equal(first.relevance, second.relevance)
    t4 = 130 // 8
    assert first.relevance.shape == (2, t4 * 16)
    assert first.mask.shape == batch.spec.shape
    assert torch.all(first.relevance >= 0)
    torch.testing.assert_close(first.extra["information_bits"], first.relevance.sum(1))
    # the mask is the documented map of the B4 saliency
    expected = _hand_mask(first.relevance.view(2, t4, 16), 130, front_end.mel_basis)
    torch.testing.assert_close(first.mask, expected, rtol=1e-4, atol=1e-5)


def test_iba_one_step_saliency_is_the_capacity_at_the_initial_alpha():
    """With one step the map is read from the first forward pass, where
    ``lam = sigmoid(5)`` everywhere (smoothing keeps a constant), so the saliency is the
    KL of ``N(lam R + (1 - lam) mu, (1 - lam)^2 s^2)`` to ``N(mu, s^2)`` per active
    element, summed over channels, in bits."""
    from l2i_bench.plugins.classifiers.kumar import KumarCNN

    torch.manual_seed(0)
    net = KumarCNN(num_classes=3, task=Task.MULTICLASS, width=0.125).eval()
    front_end = FrontEnd()
    explainer = IbaExplainer(make_context(net, front_end, steps=1, draws=2))
    explainer.fit(Clips(audio_batch(front_end, noise(6, 1.5, seed=5))), None)
    batch = audio_batch(front_end, noise(2, 1.5, seed=4))
    out = explainer.explain(batch, torch.tensor([1, 0]))
    state = explainer.state_dict()
    with torch.no_grad():
        R = net.forward_with_taps(batch.logmel)[1]["B4"].double()
    lam = 1.0 / (1.0 + math.exp(-5.0))
    mu, sd = state["mean"].double(), state["std"].double().clamp_min(0.01)
    # KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2 / s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2
    s1 = (1 - lam) * sd
    kl = torch.log(sd / s1) + (s1**2 + (lam * (R - mu)) ** 2) / (2 * sd**2) - 0.5
    bits = (kl * state["active"].double()).sum(1) / math.log(2.0)  # (B, T', F')
    torch.testing.assert_close(out.relevance.double(), bits.flatten(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        out.extra["information_bits"].double(), bits.sum((1, 2)), rtol=1e-4, atol=1e-4
    )
    expected = _hand_mask(bits.float(), batch.spec.shape[-1], front_end.mel_basis)
    torch.testing.assert_close(out.mask, expected, rtol=1e-4, atol=1e-5)
