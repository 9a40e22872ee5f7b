"""Tests of the FLINT baseline: fidelity of the surrogate on held-out clips, relevance,
masks, activation maximisation, multilabel, state round-trip.

A tiny Kumar et al. CNN (width 0.125) is first trained for a few steps on 1 s tone
clips so that its predictions vary across clips (an untrained one predicts one class
for everything, which would make agreement meaningless).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from explainer_contexts import explainer_context

from l2i_bench.audio import SAMPLE_RATE, FrontEnd, log_ratio_to_linear_mask
from l2i_bench.data import ClipSet
from l2i_bench.errors import BenchError
from l2i_bench.plugins.classifiers.kumar import KumarCNN
from l2i_bench.plugins.explainers.flint import (
    FlintExplainer,
    attribute_relevance,
    output_fidelity_loss,
)
from l2i_bench.types import AudioBatch, Clip, ExplainerContext, ExplainerDefaults, Task

TONES_HZ = (400.0, 1800.0, 7000.0)


def tone_clips(n: int, seed: int, front_end: FrontEnd, multilabel: bool = False) -> ClipSet:
    """1 s clips with one sine per label over faint noise (random gain and phase)."""
    rng = np.random.default_rng(seed)
    length = SAMPLE_RATE
    t = np.arange(length) / SAMPLE_RATE
    waves = np.zeros((n, length), dtype=np.float32)
    labels = []
    for row in range(n):
        labs = (row % 3,) if not multilabel else tuple(sorted({row % 3, (row // 3) % 3}))
        wave = 0.01 * rng.standard_normal(length)
        for lab in labs:
            f = TONES_HZ[lab] * rng.uniform(0.95, 1.05)
            wave += rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
        waves[row] = wave
        labels.append(labs)
    clips = [
        Clip(f"t{seed}-{i}", Path(f"/nonexistent/{i}.wav"), lab) for i, lab in enumerate(labels)
    ]
    return ClipSet(clips, waves, 3, front_end)


def make_context(classifier, options: dict, seed: int = 5) -> ExplainerContext:
    defaults = ExplainerDefaults(nmf_components=8, interpreter_epochs=2, interpreter_lr=3e-3)
    return explainer_context(classifier, options, seed=seed, defaults=defaults)


def everything(clips: ClipSet) -> AudioBatch:
    """Every clip of a split in one batch (its features are cached by the set)."""
    return clips.batch(range(len(clips)))


def trained_classifier(train: ClipSet, task: Task) -> KumarCNN:
    torch.manual_seed(0)
    model = KumarCNN(3, task, width=0.125)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(24):
        for batch in train.batches(12, shuffle=True, seed=step):
            logits = model(batch.logmel)
            if task is Task.MULTICLASS:
                loss = F.cross_entropy(logits, batch.targets.argmax(-1))
            else:
                loss = F.binary_cross_entropy_with_logits(logits, batch.targets)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval().requires_grad_(False)


OPTIONS = {"attributes": 8, "hidden": 16, "epochs": 8, "batch_size": 12, "am_steps": 0}


@pytest.fixture(scope="module")
def fitted():
    fe = FrontEnd("cpu")
    train, valid, test = (tone_clips(n, s, fe) for n, s in ((36, 0), (12, 1), (18, 2)))
    clf = trained_classifier(train, Task.MULTICLASS)
    explainer = FlintExplainer(make_context(clf, OPTIONS))
    facts = explainer.fit(train, valid)
    return explainer, facts, test


def test_surrogate_agrees_with_the_classifier_on_held_out_clips(fitted) -> None:
    explainer, facts, test = fitted
    batch = everything(test)
    with torch.no_grad():
        predicted = explainer.context.classifier(batch.logmel).argmax(-1)
    chance = torch.bincount(predicted, minlength=3).max().item() / len(predicted)
    assert chance < 0.7  # the classifier's predictions vary, so agreement means something
    agreement = (explainer.predict(batch).argmax(-1) == predicted).float().mean().item()
    assert agreement >= max(0.8, chance + 0.2), (agreement, chance)
    assert facts["selection"] == "best validation top-1 agreement"
    assert 1 <= facts["best_epoch"] <= OPTIONS["epochs"]
    assert facts["valid_top1_agreement"] == max(facts["valid_history"])


def test_relevance_follows_flint_formula_and_peaks_at_one(fitted) -> None:
    explainer, _, test = fitted
    batch = everything(test)
    classes = torch.arange(len(test)) % 3
    out = explainer.explain(batch, classes)
    with torch.no_grad():
        _, taps = explainer.context.classifier.forward_with_taps(batch.logmel)
        phi = explainer.phi(taps)
    products = phi * explainer.head.weight[classes]  # Phi_j w_{c,j}
    positive = products.amax(-1) > 0
    assert positive.float().mean() > 0.5
    expected = products[positive] / products[positive].amax(-1, keepdim=True)
    assert torch.allclose(out.relevance[positive], expected, atol=1e-5)
    assert torch.allclose(out.relevance[positive].amax(-1), torch.ones(int(positive.sum())))
    assert out.relevance.shape == (len(test), OPTIONS["attributes"])
    assert torch.allclose(out.surrogate_logits, explainer.predict(batch))


def test_masks_lie_in_unit_interval_and_keep_everything_when_all_attributes_relevant(
    fitted,
) -> None:
    explainer, _, test = fitted
    batch = everything(test).select(range(6))
    classes = torch.zeros(6, dtype=torch.long)
    out = explainer.explain(batch, classes)
    assert out.mask.shape == batch.spec.shape
    assert out.mask.min() >= 0 and out.mask.max() <= 1
    keep_all = FlintExplainer(
        make_context(explainer.context.classifier, {**OPTIONS, "threshold": -1e30})
    )
    keep_all.load_state_dict(explainer.state_dict())
    mask = keep_all.explain(batch, classes).mask
    with torch.no_grad():
        decoded = explainer.decoder(explainer.predict_attributes(batch), batch.spec.shape[-1])
    clear = (decoded > 1e-2) & (batch.magnitude > 1e-3)
    assert torch.all(mask[clear] > 0.95)


def test_log_ratio_mask_matches_the_log_domain_resynthesis() -> None:
    gen = torch.Generator().manual_seed(0)
    magnitude = torch.rand(2, 513, 20, generator=gen) * 10
    magnitude[0, :5] = 0.0
    ratio = torch.rand(2, 513, 20, generator=gen) * 1.4 - 0.2  # out of range on purpose
    mask = log_ratio_to_linear_mask(torch.log1p(magnitude), ratio)
    expected = np.expm1(np.log1p(magnitude.numpy()) * np.clip(ratio.numpy(), 0, 1))
    assert np.allclose((mask * magnitude).numpy(), expected, atol=1e-4)
    assert mask.min() >= 0 and mask.max() <= 1
    assert torch.all(mask[0, :5] == 0)


def test_activation_maximisation_raises_the_relevant_attributes(fitted) -> None:
    explainer, _, test = fitted
    batch = everything(test).select(range(3))
    ctx = make_context(explainer.context.classifier, {**OPTIONS, "am_steps": 8, "am_lr": 0.2})
    am = FlintExplainer(ctx)
    am.load_state_dict(explainer.state_dict())
    classes = torch.arange(3)
    out = am.explain(batch, classes)
    audio = out.extra["activation_maximisation"]
    assert audio.shape == batch.waveform.shape and torch.isfinite(audio).all()
    relevant = (out.relevance > ctx.defaults.relevance_threshold).float()
    fe = ctx.front_end

    def relevant_sum(wave: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            _, taps = ctx.classifier.forward_with_taps(fe.logmel(wave))
            return (am.phi(taps) * relevant).sum(-1)

    weak = relevant_sum(batch.waveform * 0.1)  # the starting point: input at -10 dB
    assert torch.all(relevant_sum(audio) > weak), (relevant_sum(audio), weak)


def test_state_round_trips_and_mismatch_is_a_bench_error(fitted) -> None:
    explainer, _, test = fitted
    batch = everything(test).select(range(4))
    fresh = FlintExplainer(make_context(explainer.context.classifier, OPTIONS, seed=99))
    assert not torch.allclose(fresh.predict(batch), explainer.predict(batch))
    fresh.load_state_dict(explainer.state_dict())
    classes = torch.tensor([0, 1, 2, 0])
    assert torch.equal(fresh.predict(batch), explainer.predict(batch))
    assert torch.equal(fresh.explain(batch, classes).mask, explainer.explain(batch, classes).mask)
    other = FlintExplainer(make_context(explainer.context.classifier, {**OPTIONS, "attributes": 5}))
    with pytest.raises(BenchError, match="attributes"):
        other.load_state_dict(explainer.state_dict())


def test_multilabel_trains_with_soft_bce_and_explains() -> None:
    # The multilabel output-fidelity loss is BCE against the classifier's sigmoid
    # (soft targets), written out: -mean(q log p + (1 - q) log(1 - p)).
    surrogate = torch.tensor([[0.5, -2.0, 1.0], [3.0, 0.0, -1.0]])
    teacher = torch.tensor([[2.0, -1.0, 0.0], [-3.0, 1.0, 4.0]])
    p, q = 1 / (1 + np.exp(-surrogate.numpy())), 1 / (1 + np.exp(-teacher.numpy()))
    soft_bce = -np.mean(q * np.log(p) + (1 - q) * np.log(1 - p))
    got = output_fidelity_loss(surrogate, teacher, Task.MULTILABEL)
    assert got.item() == pytest.approx(soft_bce, rel=1e-6)
    # (the multiclass loss is the soft cross-entropy, not BCE)
    soft_ce = -np.mean(
        np.sum(F.softmax(teacher, -1).numpy() * F.log_softmax(surrogate, -1).numpy(), axis=-1)
    )
    got = output_fidelity_loss(surrogate, teacher, Task.MULTICLASS)
    assert got.item() == pytest.approx(soft_ce, rel=1e-6)

    fe = FrontEnd("cpu")
    train, valid = tone_clips(12, 3, fe, True), tone_clips(6, 4, fe, True)
    torch.manual_seed(1)
    clf = KumarCNN(3, Task.MULTILABEL, width=0.125).eval().requires_grad_(False)
    explainer = FlintExplainer(make_context(clf, {**OPTIONS, "epochs": 1}))
    facts = explainer.fit(train, valid)
    assert facts["epochs"] == 1 and facts["best_epoch"] == 1
    # multilabel selection: agreement on the most confident class, recomputed here
    all_valid = everything(valid)
    with torch.no_grad():
        logits, taps = clf.forward_with_taps(all_valid.logmel)
        phi = explainer.phi(taps)
    surrogate = phi @ explainer.head.weight.T  # bias-free linear head, by hand
    agreement = (surrogate.argmax(-1) == logits.argmax(-1)).double().mean().item()
    assert facts["valid_top1_agreement"] == pytest.approx(agreement, abs=1e-12)

    batch = all_valid.select([0, 0, 1])
    classes = torch.tensor([0, 1, 2])
    out = explainer.explain(batch, classes)
    rows = torch.tensor([0, 0, 1])
    torch.testing.assert_close(out.surrogate_logits, surrogate[rows])
    products = phi[rows] * explainer.head.weight[classes]
    peak = products.amax(-1, keepdim=True)
    relevance = torch.where(peak > 0, products / peak, torch.zeros_like(products))
    torch.testing.assert_close(out.relevance, relevance)
    # the max is signed: a larger negative product does not rescale (hand case)
    hand = attribute_relevance(
        torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, -1.0, -2.0]]), torch.tensor([0])
    )
    assert hand.tolist() == [[1.0, -2.0, -6.0]]
    relevant = (relevance > explainer.context.defaults.relevance_threshold).float()
    frames = batch.spec.shape[-1]
    with torch.no_grad():
        ratio = explainer.decoder(phi[rows] * relevant, frames) / (
            explainer.decoder(phi[rows], frames) + 1e-6
        )
    torch.testing.assert_close(out.mask, ratio.clamp(0, 1))
    assert out.mask.shape == batch.spec.shape


def test_classifier_without_taps_is_a_bench_error() -> None:
    class NoTaps(torch.nn.Module):
        task = Task.MULTICLASS
        num_classes = 3

    with pytest.raises(BenchError, match="NoTaps declares no `late_taps`"):
        FlintExplainer(make_context(NoTaps(), OPTIONS))

    class NoChannels(NoTaps):
        tap_names = ("x", "y", "z")
        late_taps = ("x", "y", "z")

    with pytest.raises(BenchError, match=r"late taps \(x, y, z\) in its `tap_channels`"):
        FlintExplainer(make_context(NoChannels(), OPTIONS))

    class MissingTap(NoChannels):
        tap_names = ("x", "y")

    with pytest.raises(BenchError, match=r"tap\(s\) z, but MissingTap exposes x, y"):
        FlintExplainer(make_context(MissingTap(), OPTIONS))
