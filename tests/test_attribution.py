"""The gradient attribution family: each method against its closed form.

On a linear classifier ``logit_c = <W_c, x> + b_c`` every method has an exact answer:
saliency ``|W_c|``, SmoothGrad the same (the gradient does not move), integrated
gradients ``(x - x') W_c``, GradientSHAP ``(x - x') W_c`` for a one-clip background,
occlusion the mean over the windows covering a bin of ``<W_c, (x - x') 1_window>``.
Integrated gradients' completeness is checked on a non-linear network and Grad-CAM on a
network whose tap is a known function of the input.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from explainer_contexts import explainer_context
from torch import nn

from l2i_bench.audio import TOP_DB, FrontEnd
from l2i_bench.errors import BenchError
from l2i_bench.plugins.explainers._attribution import (
    attribution_to_explanation,
    noise_floor_baseline,
    silence_floor,
)
from l2i_bench.plugins.explainers.gradcam import GradCamExplainer
from l2i_bench.plugins.explainers.gradient_shap import GradientShapExplainer
from l2i_bench.plugins.explainers.integrated_gradients import IntegratedGradientsExplainer
from l2i_bench.plugins.explainers.occlusion import OcclusionExplainer
from l2i_bench.plugins.explainers.saliency import SaliencyExplainer
from l2i_bench.plugins.explainers.smoothgrad import SmoothGradExplainer
from l2i_bench.types import Task

T, M, C = 12, 8, 3


class LinearNet(nn.Module):
    """``logit_c = <W_c, logmel> + b_c``: the closed forms are exact."""

    tap_names = ("B4", "B5", "B6")
    late_taps = ("B4", "B5", "B6")

    def __init__(self, task: Task = Task.MULTICLASS) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.task, self.num_classes = task, C
        self.weight = nn.Parameter(torch.randn(C, T * M, generator=gen), requires_grad=False)
        self.bias = nn.Parameter(torch.randn(C, generator=gen), requires_grad=False)

    def forward(self, logmel):
        return logmel.flatten(1) @ self.weight.T + self.bias

    def probabilities(self, logits):
        return torch.softmax(logits, dim=-1)


def _input(rows: int = 2, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return -40.0 + 20.0 * torch.rand(rows, 1, T, M, generator=gen)


def _w(net: LinearNet, classes: torch.Tensor) -> torch.Tensor:
    return net.weight[classes].view(-1, 1, T, M)


CLASSES = torch.tensor([2, 0])


def test_saliency_and_smoothgrad_are_the_weights_magnitude():
    net = LinearNet()
    x = _input()
    expected = _w(net, CLASSES).abs()
    saliency = SaliencyExplainer(explainer_context(net)).attribute(x, CLASSES)
    torch.manual_seed(0)
    smooth = SmoothGradExplainer(explainer_context(net, {"samples": 4})).attribute(x, CLASSES)
    torch.testing.assert_close(saliency, expected)
    torch.testing.assert_close(smooth, expected)


def test_integrated_gradients_is_input_minus_floor_times_weights():
    net = LinearNet()
    x = _input()
    attribution = IntegratedGradientsExplainer(explainer_context(net, {"steps": 5})).attribute(
        x, CLASSES
    )
    floor = x.amax(dim=(1, 2, 3), keepdim=True) - TOP_DB
    torch.testing.assert_close(attribution, (x - floor) * _w(net, CLASSES), rtol=1e-4, atol=1e-4)


class SoftNet(nn.Module):
    """A small non-linear network (conv, softplus, pooling, linear) for completeness."""

    tap_names = ("B4", "B5", "B6")
    late_taps = ("B4", "B5", "B6")

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.task, self.num_classes = Task.MULTILABEL, C
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, C)

    def forward(self, logmel):
        hidden = F.softplus(self.conv(logmel / 20.0)).mean(dim=(2, 3))
        return self.head(hidden)


def test_integrated_gradients_is_complete_within_quadrature_error():
    net = SoftNet().eval()
    x = _input()
    attribution = IntegratedGradientsExplainer(explainer_context(net, {"steps": 32})).attribute(
        x, CLASSES
    )
    with torch.no_grad():
        gap = (
            net(x).gather(1, CLASSES[:, None])[:, 0]
            - net(silence_floor(x)).gather(1, CLASSES[:, None])[:, 0]
        )
    sums = attribution.sum(dim=(1, 2, 3))
    assert gap.abs().min() > 0.05  # a non-trivial gap to explain
    torch.testing.assert_close(sums, gap, rtol=1e-3, atol=1e-4)


def test_gradient_shap_with_one_background_clip_is_exact():
    net = LinearNet()
    x = _input()
    explainer = GradientShapExplainer(explainer_context(net, {"samples": 6}))
    background = _input(rows=1, seed=7)
    explainer.load_state_dict({"background": background})
    torch.manual_seed(0)
    attribution = explainer.attribute(x, CLASSES)
    torch.testing.assert_close(
        attribution, (x - background) * _w(net, CLASSES), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("baseline", ["floor", "silence"])
def test_occlusion_credits_each_bin_the_mean_drop_of_its_windows(baseline):
    net = LinearNet()
    x = _input()
    options = {"window_frames": 4, "window_mels": 4, "stride_frames": 2, "stride_mels": 2}
    if baseline == "silence":
        options["baseline"] = "silence"
    attribution = OcclusionExplainer(explainer_context(net, options)).attribute(x, CLASSES)
    base = silence_floor(x) if baseline == "silence" else noise_floor_baseline(x)
    contribution = (x - base) * _w(net, CLASSES)  # what removing a bin costs
    expected = torch.zeros_like(x)
    count = torch.zeros_like(x)
    for t0 in range(0, T - 4 + 1, 2):
        for m0 in range(0, M - 4 + 1, 2):
            drop = contribution[:, :, t0 : t0 + 4, m0 : m0 + 4].sum(dim=(1, 2, 3))
            expected[:, :, t0 : t0 + 4, m0 : m0 + 4] += drop[:, None, None, None]
            count[:, :, t0 : t0 + 4, m0 : m0 + 4] += 1
    torch.testing.assert_close(attribution, expected / count, rtol=1e-4, atol=1e-3)


def test_the_noise_floor_baseline_is_each_bands_10th_percentile_never_above_the_input():
    """Band m holds the values 0..9 dB (frames shuffled) in a 10-frame clip: its 10th
    percentile (linear interpolation) is 0.9 dB, so bins at 0 dB stay at 0 and every
    other bin of the band goes to 0.9; another band, constant at -30 dB, stays put."""
    x = torch.full((1, 1, 10, 3), -30.0)
    x[0, 0, :, 1] = torch.tensor([3.0, 0.0, 9.0, 1.0, 5.0, 2.0, 8.0, 4.0, 7.0, 6.0])
    base = noise_floor_baseline(x)
    expected = torch.full_like(x, -30.0)
    expected[0, 0, :, 1] = torch.where(x[0, 0, :, 1] < 0.9, x[0, 0, :, 1], torch.tensor(0.9))
    torch.testing.assert_close(base, expected)
    assert (base <= x).all()


def test_occlusion_refuses_an_unknown_baseline():
    explainer = OcclusionExplainer(explainer_context(LinearNet(), {"baseline": "grey"}))
    with pytest.raises(BenchError, match="baseline='grey' is not floor or silence"):
        explainer.attribute(_input(), CLASSES)


class PoolTapNet(nn.Module):
    """One-channel taps that are known functions of the input: B4 = 2x2 average pool of
    ``logmel - floor``, B5 and B6 coarser pools of it; logit 0 = mean of B4."""

    tap_names = ("B4", "B5", "B6")
    late_taps = ("B4", "B5", "B6")

    def __init__(self) -> None:
        super().__init__()
        self.task, self.num_classes = Task.MULTICLASS, 2

    def forward_with_taps(self, logmel):
        b4 = F.avg_pool2d(logmel - silence_floor(logmel), 2)
        taps = {"B4": b4, "B5": F.avg_pool2d(b4, 2), "B6": F.avg_pool2d(b4, 4)}
        logit = b4.mean(dim=(1, 2, 3))
        return torch.stack([logit, -logit], dim=1), taps

    def forward(self, logmel):
        return self.forward_with_taps(logmel)[0]


def test_gradcam_of_a_mean_logit_is_the_normalised_activation():
    # logit = mean(A): every gradient is 1/N, so Grad-CAM = ReLU(A) / N, which after the
    # per-clip normalisation is A / max(A), upsampled to the input grid.
    net = PoolTapNet()
    x = _input()
    classes = torch.tensor([0, 0])
    attribution = GradCamExplainer(explainer_context(net, {"layers": "B4"})).attribute(x, classes)
    activation = F.avg_pool2d(x - silence_floor(x), 2)
    up = F.interpolate(activation, size=(T, M), mode="bilinear", align_corners=False)
    torch.testing.assert_close(attribution, up / up.amax(dim=(1, 2, 3), keepdim=True))
    # Evidence against the class (logit 1 = -mean A) gives no positive map at all.
    against = GradCamExplainer(explainer_context(net, {"layers": "B4"})).attribute(
        x, torch.tensor([1, 1])
    )
    assert float(against.abs().max()) == 0.0


def test_gradcam_names_a_missing_tap():
    from l2i_bench.errors import BenchError

    with pytest.raises(BenchError, match="B7 are not taps"):
        GradCamExplainer(explainer_context(PoolTapNet(), {"layers": "B4,B7"})).attribute(
            _input(), torch.tensor([0, 0])
        )


def test_mask_rule_keeps_positive_evidence_on_the_stft_grid():
    front_end = FrontEnd("cpu")
    frames = 5
    attribution = -torch.ones(1, 1, frames, 128)  # evidence against everywhere ...
    attribution[0, 0, 2, 40] = 3.0  # ... but for band 40 in frame 2
    explanation = attribution_to_explanation(attribution, front_end)
    column = front_end.mel_to_linear[:, 40]
    expected = torch.zeros(1, front_end.mel_to_linear.shape[0], frames)
    expected[0, :, 2] = column / column.max()
    torch.testing.assert_close(explanation.mask, expected)
    relevance = torch.zeros(1, 128)
    relevance[0, 40] = 3.0
    torch.testing.assert_close(explanation.relevance, relevance)
    silent = attribution_to_explanation(-torch.ones(1, 1, frames, 128), front_end)
    assert float(silent.mask.abs().max()) == 0.0
