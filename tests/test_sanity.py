"""Model-randomisation sanity check: the cascade (l2i_bench.randomise), the two scores
(Spearman with tied ranks, SSIM) against scipy and hand-computed values, and the
metric end to end on a small KumarCNN with explainers whose dependence on the model is
known (input-only masks, gradient saliency, constant masks)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import ndimage, stats
from toy_audio import FE, C, N, clips

from l2i_bench.plugins.classifiers.kumar import KumarCNN
from l2i_bench.plugins.metrics import sanity
from l2i_bench.plugins.metrics.sanity import (
    SanityCheck,
    average_ranks,
    calibration_rows,
    spearman_rows,
    ssim_rows,
)
from l2i_bench.randomise import _chunks, cascade_levels, randomised_copy
from l2i_bench.types import (
    AudioBatch,
    Direction,
    Evaluation,
    Explainer,
    Explanation,
    ExplanationSet,
    RowValues,
    Task,
    Timing,
)

LEVELS = ["head", "f1", "b6", "b5", "b4", "b3", "b2", "b1"]
MODULES_OF = {
    "head": ("head_conv", "fc"),
    "f1": ("f1",),
    **{f"b{i}": (f"b{i}",) for i in range(1, 7)},
}


def logmel(seed: int, n: int = N) -> torch.Tensor:
    return FE.logmel(clips(seed, n))


def trained_like(task: Task = Task.MULTICLASS, seed: int = 0) -> KumarCNN:
    """A stand-in for a trained classifier: every parameter moved off its default
    initialisation (BN affine included, so a reset is visible everywhere) and BN
    statistics estimated on a few clips, so the network is input-sensitive."""
    torch.manual_seed(seed)
    model = KumarCNN(C, task, width=0.125)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.cat([logmel(1), logmel(3)]))
        model.fc.weight.mul_(10.0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.1
    return model.eval()


@pytest.fixture(scope="module")
def model() -> KumarCNN:
    return trained_like()


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def level_of(key: str) -> str:
    top = key.split(".")[0]
    return next(level for level, names in MODULES_OF.items() if top in names)


# -------------------------------------------------------------------- cascade


def test_cascade_levels_are_top_down_and_cover_every_parameter(model):
    assert cascade_levels(model) == LEVELS
    assert {level_of(k) for k, _ in model.named_parameters()} == set(LEVELS)


@pytest.mark.parametrize("through", ["head", "b5", "b1"])
def test_randomised_copy_resets_above_the_cut_and_keeps_the_rest(model, through):
    before = state(model)
    copy = randomised_copy(model, through, seed=3)
    assert copy is not model and not copy.training
    assert not any(m.training for m in copy.modules())
    after = state(copy)
    randomised = set(LEVELS[: LEVELS.index(through) + 1])
    for key, old in before.items():
        new = after[key]
        if level_of(key) not in randomised:
            assert torch.equal(new, old), key  # trained below the cut: bit-identical
            continue
        if key.endswith("num_batches_tracked"):
            assert int(new) == 0, key
        elif key.endswith("running_mean"):
            assert torch.equal(new, torch.zeros_like(old)), key
        elif key.endswith("running_var"):
            assert torch.equal(new, torch.ones_like(old)), key
        else:
            assert not torch.equal(new, old), key
            assert (new != old).float().mean() > 0.99, key  # every value redrawn
    # the original is untouched, parameters and buffers alike
    for key, old in before.items():
        assert torch.equal(model.state_dict()[key], old), key


def test_reinitialisation_is_each_layers_default(model):
    copy = randomised_copy(model, "b1", seed=0)
    for module in copy.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            fan_in = module.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) and the bias
            assert module.weight.abs().max() <= bound
            assert module.bias.abs().max() <= bound
            if module.weight.numel() > 500:
                std = float(module.weight.detach().std())
                assert std == pytest.approx(bound / math.sqrt(3), rel=0.1)
        elif isinstance(module, torch.nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))


def test_randomised_copy_is_deterministic_per_seed_and_leaves_global_rng_alone(model):
    rng = torch.get_rng_state()
    a, b = state(randomised_copy(model, "b4", 7)), state(randomised_copy(model, "b4", 7))
    assert torch.equal(torch.get_rng_state(), rng)
    c = state(randomised_copy(model, "b4", 8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["b4.0.0.weight"], c["b4.0.0.weight"])
    assert not torch.equal(a["fc.weight"], c["fc.weight"])


def test_cascade_is_nested_each_level_adds_to_the_previous(model):
    """The copy randomised through b4 holds the random weights of the copy randomised
    through b5 for every level above b4 (Adebayo et al.'s cumulative cascade)."""
    b5, b4 = state(randomised_copy(model, "b5", 1)), state(randomised_copy(model, "b4", 1))
    for key in b5:
        if level_of(key) in {"head", "f1", "b6", "b5"}:
            assert torch.equal(b5[key], b4[key]), key
    assert not torch.equal(b5["b4.0.0.weight"], b4["b4.0.0.weight"])


def test_unknown_level_and_foreign_models_are_errors(model):
    with pytest.raises(ValueError, match="unknown randomisation level"):
        randomised_copy(model, "B4", 0)
    with pytest.raises(ValueError, match="at least 2 clips"):
        randomised_copy(model, "head", 0, calibration=logmel(1, 1))
    with pytest.raises(TypeError, match="Linear declares none"):
        cascade_levels(torch.nn.Linear(3, 2))
    extended = trained_like()
    extended.extra = torch.nn.Linear(2, 2)  # a parameter no level covers
    with pytest.raises(TypeError, match="exactly once"):
        cascade_levels(extended)


def test_chunks_never_leave_a_single_row():
    assert _chunks(65, 32) == [(0, 32), (32, 65)]
    assert _chunks(64, 32) == [(0, 32), (32, 64)]
    assert _chunks(3, 32) == [(0, 3)]
    assert _chunks(2, 1) == [(0, 2)]
    for n in range(2, 80):
        parts = _chunks(n, 8)
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(stop - start >= 2 for start, stop in parts)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))


def test_calibrated_batchnorm_holds_the_statistics_of_its_input(model):
    """Through f1 with one calibration batch: F1's BN running mean and variance are the
    batch mean and the unbiased variance of F1's conv output under the random weights;
    the trained BN layers below (B1-B6) keep their statistics; momentum restored."""
    calib = torch.cat([logmel(5), logmel(6)])
    before = state(model)
    copy = randomised_copy(model, "f1", 2, calibration=calib, batch_size=64)
    assert not any(m.training for m in copy.modules())
    seen = {}
    handle = copy.f1[1].register_forward_pre_hook(lambda m, inp: seen.setdefault("x", inp[0]))
    with torch.no_grad():
        copy(calib)
    handle.remove()
    x = seen["x"]
    bn = copy.f1[1]
    torch.testing.assert_close(bn.running_mean, x.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        bn.running_var, x.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-6
    )
    assert int(bn.num_batches_tracked) == 1 and bn.momentum == 0.1
    after = state(copy)
    for key, old in before.items():
        if level_of(key) not in {"head", "f1"}:
            assert torch.equal(after[key], old), key
    # the same weights as without calibration: only the BN statistics differ
    plain = state(randomised_copy(model, "f1", 2))
    for key in plain:
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(plain[key], after[key]), key


def test_calibration_makes_the_fully_randomised_network_input_dependent(model):
    """Why the BN statistics are re-estimated: with the default (0, 1) statistics a
    fully randomised network answers (nearly) the same logits for every clip."""
    inputs = torch.cat([logmel(11), logmel(12)])

    def spread(m) -> float:
        with torch.no_grad():
            logits = m(inputs)
        return float(logits.std(dim=0).mean() / logits.abs().mean())

    assert spread(randomised_copy(model, "b1", 0)) < 1e-3
    assert spread(randomised_copy(model, "b1", 0, calibration=logmel(13, 8))) > 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_randomised_weights_are_the_same_on_the_gpu(model):
    cpu = state(randomised_copy(model, "b1", 4))
    gpu_model = trained_like().cuda()
    gpu = randomised_copy(gpu_model, "b1", 4)
    assert next(gpu.parameters()).is_cuda and next(gpu_model.parameters()).is_cuda
    for key, value in gpu.state_dict().items():
        assert torch.equal(value.cpu(), cpu[key]), key


# ------------------------------------------------------------------ Spearman


def test_average_ranks_match_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (5, 40), generator=g).float()
    x[3] = 2.0  # all tied
    ours = average_ranks(x)
    for row in range(5):
        np.testing.assert_array_equal(ours[row].numpy(), stats.rankdata(x[row].numpy()))


def test_spearman_hand_computed_values():
    a = torch.tensor([[1.0, 2, 3, 4], [1, 1, 2, 3], [1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4]])
    b = torch.tensor([[1.0, 3, 2, 4], [1, 2, 3, 4], [4, 3, 2, 1], [1, 4, 9, 16]])
    rho = spearman_rows(a, b)
    assert rho.dtype == torch.float64
    # 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 12 / 60
    assert float(rho[0]) == pytest.approx(0.8, abs=1e-12)
    # ties: ranks (1.5, 1.5, 3, 4) vs (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5)
    assert float(rho[1]) == pytest.approx(4.5 / math.sqrt(22.5), abs=1e-12)
    assert float(rho[2]) == pytest.approx(-1.0, abs=1e-12)
    assert float(rho[3]) == pytest.approx(1.0, abs=1e-12)  # monotone transform


def test_spearman_matches_scipy_on_masks_with_many_ties():
    g = torch.Generator().manual_seed(1)
    base = torch.rand(6, 13, 17, generator=g)
    other = torch.stack(
        [
            (base[0] > 0.5).float(),  # binary vs continuous
            (base[1] * 4).round() / 4,  # quantised, correlated
            torch.rand(13, 17, generator=g),  # independent
            1 - base[3],  # reversed
            (torch.rand(13, 17, generator=g) > 0.7).float(),  # binary, independent
            base[5].sqrt(),  # monotone
        ]
    )
    a = base.clone()
    a[4] = (a[4] > 0.3).float()  # binary vs binary
    rho = spearman_rows(a, other)
    for row in range(6):
        expected = stats.spearmanr(a[row].flatten().numpy(), other[row].flatten().numpy())[0]
        assert float(rho[row]) == pytest.approx(expected, abs=1e-10), row
    assert float(rho[3]) == pytest.approx(-1.0) and float(rho[5]) == pytest.approx(1.0)


def test_spearman_is_nan_for_a_constant_or_non_finite_row_only():
    g = torch.Generator().manual_seed(2)
    a = torch.rand(4, 8, 9, generator=g)
    b = a.clone()
    a[1] = 0.5  # constant trained mask
    b[2] = 0.0  # constant randomised mask
    a[3, 0, 0] = math.nan
    rho = spearman_rows(a, b)
    assert float(rho[0]) == pytest.approx(1.0)
    assert torch.isnan(rho[1:]).all()
    with pytest.raises(ValueError, match="shapes differ"):
        spearman_rows(a, b[:, :, :5])


# ---------------------------------------------------------------------- SSIM


def ssim_by_hand(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """One window covering the whole image: weighted statistics written out."""
    w = weights / weights.sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cov = (w * (x - mx) * (y - my)).sum()
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def gaussian_weights() -> np.ndarray:
    t = np.arange(-5, 6)
    g = np.exp(-(t**2) / (2 * 1.5**2))
    return np.outer(g, g)


def ssim_scipy(x: np.ndarray, y: np.ndarray, window: str) -> float:
    """Reference with scipy.ndimage filters: the skimage recipe (filter, then crop the
    half window at each border), gaussian_weights=True, use_sample_covariance=False."""
    if window == "gaussian":

        def filt(img):
            return ndimage.gaussian_filter(img, sigma=1.5, truncate=3.5)

        pad = 5
    else:

        def filt(img):
            return ndimage.uniform_filter(img, size=7)

        pad = 3
    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx * mx, filt(y * y) - my * my, filt(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s[pad:-pad, pad:-pad].mean())


def test_ssim_single_window_by_hand():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 11, 11, generator=g, dtype=torch.float64)
    y = torch.stack([1 - x[0], 0.5 * x[1] + 0.2, torch.rand(11, 11, generator=g).double()])
    ours = ssim_rows(x, y)
    for row in range(3):
        expected = ssim_by_hand(x[row].numpy(), y[row].numpy(), gaussian_weights())
        assert float(ours[row]) == pytest.approx(expected, abs=1e-12), row
    # negative image: cov = -var, so the structure term is (C2 - 2 var) / (2 var + C2) < 0
    assert float(ours[0]) < 0
    xu = x[:, :7, :7]
    yu = y[:, :7, :7]
    ours_u = ssim_rows(xu, yu, window="uniform")
    for row in range(3):
        expected = ssim_by_hand(xu[row].numpy(), yu[row].numpy(), np.ones((7, 7)))
        assert float(ours_u[row]) == pytest.approx(expected, abs=1e-12), row


def test_ssim_known_values():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 30, 40, generator=g)
    assert torch.allclose(ssim_rows(x, x), torch.ones(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(
        ssim_rows(x, x, window="uniform"), torch.ones(2, dtype=torch.float64), atol=1e-12
    )
    zeros, ones = torch.zeros(1, 12, 12), torch.ones(1, 12, 12)
    c1 = 0.01**2
    assert float(ssim_rows(zeros, ones)) == pytest.approx(c1 / (1 + c1), rel=1e-9)
    assert float(ssim_rows(ones * 0.3, ones * 0.3)) == pytest.approx(1.0, abs=1e-12)
    # constant images 0.2 and 0.6: luminance term only
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    assert float(ssim_rows(ones * 0.2, ones * 0.6)) == pytest.approx(expected, rel=1e-6)
    s = ssim_rows(x, torch.rand(2, 30, 40, generator=g))
    assert (s.abs() < 0.2).all()  # independent noise: near 0
    assert torch.allclose(ssim_rows(x, 1 - x[[1, 0]]), ssim_rows(1 - x[[1, 0]], x))  # symmetric


@pytest.mark.parametrize("window", ["gaussian", "uniform"])
def test_ssim_matches_a_scipy_ndimage_reference(window):
    g = torch.Generator().manual_seed(5)
    base = torch.rand(3, 37, 52, generator=g, dtype=torch.float64)
    smooth = torch.from_numpy(ndimage.gaussian_filter(base.numpy(), sigma=(0, 2, 2)))
    other = torch.stack(
        [smooth[0], (smooth[1] + 0.1 * base[2]).clamp(0, 1), (base[2] > 0.5).double()]
    )
    ours = ssim_rows(smooth, other, window=window)
    for row in range(3):
        expected = ssim_scipy(smooth[row].numpy(), other[row].numpy(), window)
        assert float(ours[row]) == pytest.approx(expected, abs=1e-10), row
    assert float(ours[0]) == pytest.approx(1.0)


def test_ssim_matches_skimage_when_installed():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(6)
    x = torch.rand(30, 40, generator=g, dtype=torch.float64)
    y = (x + 0.3 * torch.rand(30, 40, generator=g, dtype=torch.float64)).clamp(0, 1)
    expected = metrics.structural_similarity(
        x.numpy(), y.numpy(), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0,
    )  # fmt: skip
    assert float(ssim_rows(x[None], y[None])) == pytest.approx(expected, abs=1e-10)


def test_ssim_rejects_small_or_mismatched_images():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_rows(torch.rand(1, 10, 40), torch.rand(1, 10, 40))
    with pytest.raises(ValueError, match="expected two"):
        ssim_rows(torch.rand(1, 20, 20), torch.rand(1, 20, 21))
    with pytest.raises(ValueError, match="unknown SSIM window"):
        ssim_rows(torch.rand(1, 20, 20), torch.rand(1, 20, 20), window="box")


# -------------------------------------------------------------------- metric


class InputOnly(Explainer):
    """Masks from the input's magnitude alone: the same on any classifier."""

    name = "input_only"

    def __init__(self, classifier) -> None:
        self.classifier = classifier
        self.calls: list[tuple[list[str], list[int]]] = []

    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        self.calls.append((list(batch.clip_ids), classes.tolist()))
        mag = batch.log_magnitude
        return Explanation(mask=mag / mag.amax(dim=(1, 2), keepdim=True))


class GradientSaliency(InputOnly):
    """|d logit_c / d |X||, normalised per row: depends on every layer."""

    name = "gradient"

    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        self.calls.append((list(batch.clip_ids), classes.tolist()))
        mag = batch.magnitude.clone().requires_grad_(True)
        logits = self.classifier(FE.logmel_from_magnitude(mag))
        (grad,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), mag)
        saliency = grad.abs()
        return Explanation(mask=saliency / saliency.amax(dim=(1, 2), keepdim=True))


class Constant(InputOnly):
    name = "constant"

    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        return Explanation(mask=torch.full(batch.spec.shape, 0.25))


def make_eval(model, explainer_cls, *, rows=None, classes=None, refit=True, log=None):
    """An Evaluation whose trained masks come from ``explainer_cls`` on ``model`` and
    whose refit builds the same explainer for the classifier it is given."""
    wave = clips(1)
    targets = torch.nn.functional.one_hot(torch.arange(N) % C, C).float()
    spec = FE.stft(wave)
    test = AudioBatch(
        [f"c{i}" for i in range(N)], wave, spec, FE.logmel_from_magnitude(spec.abs()), targets
    )
    with torch.no_grad():
        logits = model(test.logmel)
    rows = torch.arange(N) if rows is None else rows
    classes = logits[rows].argmax(dim=1) if classes is None else classes
    mask = explainer_cls(model).explain(test.select(rows), classes).mask.detach()
    made = log if log is not None else []

    def refit_explainer(classifier, tag):
        explainer = explainer_cls(classifier)
        made.append((tag, classifier, explainer))
        return explainer

    return Evaluation(
        dataset="toy",
        fold="1",
        task=model.task,
        class_names=[f"k{i}" for i in range(C)],
        explainer_name=explainer_cls.name,
        explainer_has_surrogate=False,
        classifier=model,
        front_end=FE,
        device=torch.device("cpu"),
        seed=0,
        test=test,
        classifier_logits=logits,
        decision_thresholds=None,
        surrogate_logits=None,
        explanations=ExplanationSet(
            rows=rows, classes=classes, mask=mask, relevance=None, waveform=wave[rows]
        ),
        conditions={},
        timing=Timing(0.0, [1.0], 0.0, "cpu"),
        refit_explainer=refit_explainer if refit else None,
    )


COLUMNS = {"sanity_spearman_head", "sanity_ssim_head", "sanity_spearman_full", "sanity_ssim_full"}


class BothLevels(SanityCheck):
    """The two levels the module defines; a run computes ``head`` only (cost)."""

    levels = sanity.LEVELS
    columns = sanity._columns(sanity.LEVELS)


def test_columns_are_declared_lower_is_better():
    assert SanityCheck.name == "sanity"
    assert {c.name for c in SanityCheck.columns} == {"sanity_spearman_head", "sanity_ssim_head"}
    assert {c.name for c in BothLevels.columns} == COLUMNS
    assert all(c.direction is Direction.LOWER and c.variant for c in SanityCheck.columns)
    # the two columns randomise through the classifier's own top and bottom levels
    assert [end for _, end in sanity.LEVELS] == ["top", "bottom"]


def test_without_refit_the_metric_says_why_and_computes_nan(model):
    ev = make_eval(model, InputOnly, refit=False)
    assert "refit" in SanityCheck().not_applicable(ev)
    out = BothLevels().compute(ev)
    assert set(out) == COLUMNS and all(math.isnan(float(v)) for v in out.values())


def test_input_only_explainer_is_identical_on_randomised_models(model):
    log: list = []
    ev = make_eval(model, InputOnly, log=log)
    before = state(model)
    out = BothLevels().compute(ev)
    assert set(out) == COLUMNS
    keys = tuple(
        f"test/c{r}/{int(c)}" for r, c in zip(range(N), ev.explanations.classes, strict=True)
    )
    for name, value in out.items():
        assert isinstance(value, RowValues) and value.summary == "mean"
        assert value.keys == keys
        assert value.values == pytest.approx([1.0] * N, abs=1e-9), name
    # one refit per level, on a randomised copy, never on the trained model
    assert [tag for tag, _, _ in log] == ["sanity-head", "sanity-full"]
    head, full = log[0][1], log[1][1]
    assert head is not model and full is not model
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert torch.equal(head.b1[0][0].weight, model.b1[0][0].weight)
    assert not torch.equal(head.fc.weight, model.fc.weight)
    assert not torch.equal(full.b1[0][0].weight, model.b1[0][0].weight)
    # the explainer got the explained rows' clips and classes
    for _, _, explainer in log:
        assert explainer.calls == [([f"c{r}" for r in range(N)], ev.explanations.classes.tolist())]


def test_model_dependent_explainer_values_are_the_scores_of_its_masks(model):
    log: list = []
    ev = make_eval(model, GradientSaliency, log=log)
    out = BothLevels().compute(ev)
    calib = ev.test.logmel[calibration_rows(N)]
    for suffix, through in (("head", "head"), ("full", "b1")):  # kumar's top and bottom
        randomised = randomised_copy(model, through, ev.seed, calibration=calib)
        # the copy handed to the refit is the seeded, calibrated one
        refitted = dict((tag, clf) for tag, clf, _ in log)[f"sanity-{suffix}"]
        for key, value in randomised.state_dict().items():
            assert torch.equal(refitted.state_dict()[key], value), key
        masks = GradientSaliency(randomised).explain(ev.test, ev.explanations.classes).mask
        rho = spearman_rows(ev.explanations.mask, masks)
        ssim = ssim_rows(ev.explanations.mask, masks)
        assert out[f"sanity_spearman_{suffix}"].values == pytest.approx(rho.tolist(), abs=1e-9)
        assert out[f"sanity_ssim_{suffix}"].values == pytest.approx(ssim.tolist(), abs=1e-9)
        # a model-dependent explanation changes: far from the input-only explainer's 1
        # (measured about 0.6-0.7 Spearman; SSIM stays high, about 0.85-0.9, because
        # both gradient maps are near 0 almost everywhere and SSIM's luminance term
        # rewards agreeing dark regions)
        assert float(out[f"sanity_spearman_{suffix}"]) < 0.8, suffix
        assert float(out[f"sanity_ssim_{suffix}"]) < 0.95, suffix


def test_only_the_first_sanity_rows_are_re_explained(model):
    order = torch.arange(20)
    rows = (order // C) % N  # each clip repeated with different classes
    classes = order % C
    log: list = []
    ev = make_eval(model, InputOnly, rows=rows, classes=classes, log=log)
    out = BothLevels().compute(ev)
    n = sanity.SANITY_ROWS
    assert n == 16
    expected_keys = tuple(
        f"test/c{int(r)}/{int(c)}" for r, c in zip(rows[:n], classes[:n], strict=True)
    )
    for value in out.values():
        assert value.keys == expected_keys and len(value) == n
    explained = [(ids, cls) for _, _, e in log for ids, cls in e.calls]
    assert explained == [([f"c{int(r)}" for r in rows[:n]], classes[:n].tolist())] * 2


def test_constant_masks_give_nan_spearman_but_a_defined_ssim(model):
    out = BothLevels().compute(make_eval(model, Constant))
    for suffix in ("head", "full"):
        spearman = out[f"sanity_spearman_{suffix}"]
        assert len(spearman) == 0 and math.isnan(float(spearman))  # rows left out
        assert out[f"sanity_ssim_{suffix}"].values == pytest.approx([1.0] * N)


def test_mask_shape_mismatch_is_an_error(model):
    class Cropped(InputOnly):
        def explain(self, batch, classes):
            return Explanation(mask=super().explain(batch, classes).mask[:, :100])

    ev = make_eval(model, InputOnly)
    ev.refit_explainer = lambda classifier, tag: Cropped(classifier)
    with pytest.raises(ValueError, match="shape"):
        BothLevels().compute(ev)


def test_multilabel_classifier():
    ml = trained_like(Task.MULTILABEL, seed=1)
    out = BothLevels().compute(make_eval(ml, InputOnly))
    assert all(v.values == pytest.approx([1.0] * N, abs=1e-9) for v in out.values())


def test_calibration_rows_spread_over_the_test_set():
    assert calibration_rows(5).tolist() == [0, 1, 2, 3, 4]
    picked = calibration_rows(400)
    assert len(picked) == sanity.CALIBRATION_CLIPS
    assert picked[0] == 0 and picked[-1] == 399
    assert (picked.diff() > 0).all()
