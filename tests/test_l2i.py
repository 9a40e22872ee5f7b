"""The L2I explainer on a tiny real KumarCNN on synthetic band-noise classes (short clips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from explainer_contexts import explainer_context

from l2i_bench import perturb
from l2i_bench.audio import SAMPLE_RATE, FrontEnd
from l2i_bench.data import ClipSet
from l2i_bench.nmf import SparseNMF
from l2i_bench.plugins.classifiers.kumar import KumarCNN
from l2i_bench.plugins.explainers.l2i import (
    L2IExplainer,
    component_mask,
    relevance_of,
    select_components,
)
from l2i_bench.types import Clip, ExplainerDefaults, MaskDomain, Task

CLIP_SECONDS = 0.75  # 65 frames: the classifier's minimum
BANDS = ((200.0, 1500.0), (3000.0, 7000.0), (10000.0, 16000.0))  # class c: noise in BANDS[c]


def band_set(n_per_class: int, seed: int, front_end: FrontEnd) -> ClipSet:
    """Clips of band-limited noise bursts (one band per class) over a weak noise floor:
    each class fills a broad spectral region, as real sound events do, so the NMF
    reconstruction has something class-specific to explain."""
    rng = np.random.default_rng(seed)
    n = round(CLIP_SECONDS * SAMPLE_RATE)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    clips, waves = [], []
    for c, (low, high) in enumerate(BANDS):
        for i in range(n_per_class):
            spectrum = rng.standard_normal(freqs.size) + 1j * rng.standard_normal(freqs.size)
            spectrum *= (freqs >= low * rng.uniform(0.9, 1.1)) & (freqs <= high)
            wave = np.fft.irfft(spectrum, n)
            wave *= rng.uniform(0.2, 0.5) / np.abs(wave).max()
            start = rng.integers(0, n // 3)
            wave[:start] = 0  # onsets vary, so attention over time has something to do
            wave += 0.005 * rng.standard_normal(n)
            clips.append(Clip(f"c{c}_{i}_{seed}", Path("none.wav"), (c,)))
            waves.append(wave.astype(np.float32))
    return ClipSet(clips, np.stack(waves), len(BANDS), front_end)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    front_end = FrontEnd("cpu")
    train, valid, test = (band_set(n, s, front_end) for n, s in ((10, 0), (2, 1), (4, 2)))
    classifier = KumarCNN(len(BANDS), Task.MULTICLASS, width=0.5).eval()
    # Train only the prediction layer, on features computed once (L2I's ESC-50 recipe
    # fine-tunes only the head too): a real classifier in well under a second.
    # BatchNorm statistics from the data first: PyTorch's default init shrinks the signal
    # ~3x per layer, so with the default running stats every clip gives the same taps.
    batch = next(train.batches(len(train)))
    for module in classifier.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration pass
    classifier.train()
    with torch.no_grad():
        classifier(batch.logmel)
    classifier.eval()
    features: list[torch.Tensor] = []
    hook = classifier.fc.register_forward_hook(lambda m, i, o: features.append(i[0]))
    with torch.no_grad():
        classifier(batch.logmel)
    hook.remove()
    optimiser = torch.optim.Adam(classifier.fc.parameters(), lr=0.05, weight_decay=1e-2)
    for _ in range(300):
        loss = F.cross_entropy(classifier.fc(features[0]), batch.targets.argmax(1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    classifier.eval()
    context = explainer_context(
        classifier,
        {"nmf_iter": 30, "batch_size": 6},
        defaults=ExplainerDefaults(nmf_components=8, interpreter_epochs=20, interpreter_lr=1e-3),
        front_end=front_end,
        cache_dir=tmp_path_factory.mktemp("cache"),
        cache_key="bands-test",
    )
    explainer = L2IExplainer(context)
    facts = explainer.fit(train, valid)
    return explainer, facts, classifier, test, front_end


def test_surrogate_agrees_with_classifier_on_held_out_clips(setup) -> None:
    explainer, facts, classifier, test, _ = setup
    batch = next(test.batches(len(test)))
    with torch.no_grad():
        predicted = classifier(batch.logmel).argmax(1)
    assert len(set(predicted.tolist())) >= 2, "classifier degenerate: test is meaningless"
    agreement = (explainer.predict(batch).argmax(1) == predicted).float().mean().item()
    assert agreement >= 0.75  # chance is 1/3
    assert 1 <= facts["best_epoch"] <= 20 and facts["n_components"] == 8


def test_relevance_and_mask_properties(setup) -> None:
    explainer, _, classifier, test, _ = setup
    batch = next(test.batches(6))
    classes = classifier(batch.logmel).argmax(1)
    expl = explainer.explain(batch, classes)
    assert expl.relevance.shape == (6, 8)
    torch.testing.assert_close(expl.relevance.max(1).values, torch.ones(6))
    assert expl.mask.shape == batch.spec.shape
    assert expl.mask.min() >= 0 and expl.mask.max() <= 1
    assert expl.surrogate_logits.shape == (6, 3)
    n = expl.extra["n_components"]
    assert torch.all((n >= 1) & (n <= 5))  # the max-relevance component always passes


def test_activations_are_what_the_explanation_is_built_from(setup) -> None:
    """Diagnostics read ``activations``; they must see the H and z that ``explain`` uses.
    Everything downstream of H is recomputed here by hand from the interpreter's weights
    (attention pooling, linear head, relevance, top-k selection, component ratio)."""
    explainer, _, classifier, test, _ = setup
    batch = next(test.batches(4))
    with torch.no_grad():
        classes = classifier(batch.logmel).argmax(1)
        _, taps = classifier.forward_with_taps(batch.logmel)
        H_direct = explainer.phi(taps, batch.logmel.shape[2])
    H, z = explainer.activations(batch)
    assert H.shape == (4, 8, batch.spec.shape[-1]) and z.shape == (4, 8)
    torch.testing.assert_close(H, H_direct)
    assert H.min() >= 0
    # z: gated attention pooling over time, a_t = softmax_t(w . (tanh(V h_t) * relu(U h_t)))
    theta = explainer.theta
    V, U, w, fc = (
        p.detach() for p in (theta.V.weight, theta.U.weight, theta.w.weight, theta.fc.weight)
    )
    h = H.transpose(1, 2)  # (B, T, K)
    gate = torch.tanh(h @ V.T + theta.V.bias.detach()) * torch.relu(h @ U.T + theta.U.bias.detach())
    attention = torch.softmax((gate @ w.T)[..., 0] + theta.w.bias.detach(), dim=1)
    z_hand = (attention[..., None] * h).sum(dim=1)
    torch.testing.assert_close(z, z_hand, rtol=1e-5, atol=1e-6)

    expl = explainer.explain(batch, classes)
    torch.testing.assert_close(expl.surrogate_logits, z_hand @ fc.T)
    contrib = z_hand * fc[classes]
    relevance = contrib / contrib.max(dim=1, keepdim=True).values
    assert (contrib.max(dim=1).values > 0).all()
    torch.testing.assert_close(expl.relevance, relevance, rtol=1e-5, atol=1e-6)
    chosen = torch.zeros_like(relevance, dtype=torch.bool)
    for row in range(4):
        ranked = sorted(range(8), key=lambda k: -float(relevance[row, k]))
        for k in ranked[: explainer.top_k]:
            chosen[row, k] = bool(relevance[row, k] > explainer.threshold)
    assert torch.equal(expl.extra["n_components"], chosen.sum(1).float())
    W = explainer.W
    full = torch.stack([W @ H[b] for b in range(4)])
    part = torch.stack([W @ (H[b] * chosen[b, :, None]) for b in range(4)])
    torch.testing.assert_close(expl.mask, (part / (full + 1e-6)).clamp(0, 1))


def test_selection_is_top_k_above_threshold() -> None:
    relevance = torch.tensor([[1.0, 0.9, 0.1, 0.5, 0.3, 0.25, 0.8]])
    chosen = select_components(relevance, threshold=0.2, top_k=5)
    assert chosen.tolist() == [[True, True, False, True, True, False, True]]
    chosen = select_components(relevance, threshold=0.6, top_k=5)
    assert chosen.tolist() == [[True, True, False, False, False, False, True]]


def test_relevance_formula_against_hand_computation() -> None:
    z = torch.tensor([[2.0, 1.0, 0.5]])
    weight = torch.tensor([[1.0, -1.0, 4.0], [0.5, 0.5, 0.5]])
    r = relevance_of(z, weight, torch.tensor([0]))
    torch.testing.assert_close(r, torch.tensor([[1.0, -0.5, 1.0]]))
    r = relevance_of(z, weight, torch.tensor([1]))
    torch.testing.assert_close(r, torch.tensor([[1.0, 0.5, 0.25]]))


def test_mask_of_all_components_resynthesises_input(setup) -> None:
    """With activations that reconstruct |X| well, all components give a ratio ≈ 1, so the
    kept input is the input; a subset keeps the paper's exp(E)-1 magnitude."""
    _, _, _, test, front_end = setup
    batch = next(test.batches(2))
    L = batch.log_magnitude
    nmf = SparseNMF(10, beta=1, mu=0.0, max_iter=80, seed=0).fit(torch.cat(list(L), dim=1))
    H = nmf.H_.reshape(10, 2, -1).permute(1, 0, 2)
    everything = torch.ones(2, 10, dtype=torch.bool)
    mask, domain = component_mask(nmf.W_, H, L, everything)
    assert domain == MaskDomain.LOG1P
    assert mask.min() >= 0 and mask.max() <= 1
    length = batch.waveform.shape[1]
    wave = front_end.apply_mask(batch.spec, mask, length, domain)
    err = (wave - batch.waveform).norm() / batch.waveform.norm()
    assert err < 0.05
    some = torch.zeros(2, 10, dtype=torch.bool)
    some[:, :3] = True
    mask, domain = component_mask(nmf.W_, H, L, some)
    WH = torch.einsum("fk,bkt->bft", nmf.W_, H)
    part = torch.einsum("fk,bkt->bft", nmf.W_[:, :3], H[:, :3])
    expected = torch.expm1(L * part / (WH + 1e-6))  # the paper's |Y| = exp(E) - 1
    kept = perturb.keep(batch.spec, mask, domain).abs()
    torch.testing.assert_close(kept, expected, atol=1e-4, rtol=1e-3)


def test_state_round_trips(setup) -> None:
    explainer, _, _, test, _ = setup
    batch = next(test.batches(4))
    classes = torch.tensor([0, 1, 2, 0])
    before = explainer.explain(batch, classes)
    clone = L2IExplainer(explainer.context)
    clone.load_state_dict(explainer.state_dict())
    after = clone.explain(batch, classes)
    torch.testing.assert_close(after.mask, before.mask)
    torch.testing.assert_close(after.relevance, before.relevance)
    torch.testing.assert_close(clone.predict(batch), explainer.predict(batch))


def test_log_domain_mask_never_exceeds_the_linear_one_and_punishes_loud_bins():
    """exp is convex, so expm1(r log1p|X|) <= r |X| for r in [0, 1]: the paper's
    log-domain mask is at most the linear ratio, and further below it for loud bins."""
    gen = torch.Generator().manual_seed(3)
    W = torch.rand(20, 6, generator=gen)
    H = torch.rand(2, 6, 30, generator=gen)
    magnitude = 100 * torch.rand(2, 20, 30, generator=gen) ** 3
    selected = torch.tensor([[True, False, True, False, False, True]] * 2)
    ratio, domain = component_mask(W, H, torch.log1p(magnitude), selected, "log")
    assert domain == MaskDomain.LOG1P
    same, linear_domain = component_mask(W, H, torch.log1p(magnitude), selected, "linear")
    assert linear_domain == MaskDomain.LINEAR and torch.equal(ratio, same)
    # what each keeps, as a gain on |X|
    log_mask = perturb.linear_gain(magnitude, ratio, domain)
    linear = perturb.linear_gain(magnitude, same, linear_domain)
    assert torch.all(log_mask <= linear + 1e-6)
    loud = magnitude > 30
    quiet = magnitude < 1
    shrink = log_mask / linear.clamp_min(1e-6)
    assert shrink[loud].mean() < shrink[quiet].mean()
