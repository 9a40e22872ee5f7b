"""L-MAC: its objective on hand-computed masks, its decoder's start, and a fit that
lowers the objective."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from explainer_contexts import explainer_context

from l2i_bench.audio import SAMPLE_RATE, FrontEnd
from l2i_bench.plugins.classifiers.kumar import KumarCNN
from l2i_bench.plugins.explainers.lmac import WEIGHTS, LmacExplainer, lmac_loss
from l2i_bench.types import AudioBatch, Task

FE = FrontEnd("cpu")


def _batch(rows: int, seconds: float, seed: int) -> AudioBatch:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = torch.sin(2 * math.pi * (300 + 2000 * torch.rand(rows, 1, generator=gen)) * t)
    wave = 0.3 * tone + 0.05 * torch.randn(rows, len(t), generator=gen)
    return AudioBatch(
        [f"c{i}" for i in range(rows)], wave, FE.stft(wave), FE.logmel(wave), torch.zeros(rows, 4)
    )


def _net(task: Task = Task.MULTICLASS) -> KumarCNN:
    torch.manual_seed(0)
    return KumarCNN(4, task, 0.125).eval()


def _ce(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return -F.log_softmax(logits, -1)[torch.arange(len(classes)), classes]


def test_objective_on_hand_computed_masks():
    net, batch = _net(), _batch(3, 0.75, 1)
    classes = torch.tensor([0, 3, 1])
    magnitude = batch.magnitude
    silence = torch.full_like(batch.logmel, -100.0)  # 10 log10(1e-10): |X| = 0 everywhere
    with torch.no_grad():
        ce_full, ce_silent = _ce(net(batch.logmel), classes), _ce(net(silence), classes)
        ones = torch.ones_like(magnitude)
        loss, terms = lmac_loss(net, FE, magnitude, ones, classes, Task.MULTICLASS)
        expected = 4.0 * ce_full - 0.2 * ce_silent + 0.4 * 1.0
        torch.testing.assert_close(loss, expected.mean(), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(terms["l1"], torch.ones(3))
        zeros = torch.zeros_like(magnitude)
        loss, _ = lmac_loss(net, FE, magnitude, zeros, classes, Task.MULTICLASS)
        torch.testing.assert_close(
            loss, (4.0 * ce_silent - 0.2 * ce_full).mean(), rtol=1e-4, atol=1e-4
        )
        half = torch.full_like(magnitude, 0.5)  # keeps and removes the same: expm1(log1p/2)
        loss, terms = lmac_loss(net, FE, magnitude, half, classes, Task.MULTICLASS)
        ce_half = _ce(
            net(FE.logmel_from_magnitude(torch.expm1(0.5 * torch.log1p(magnitude)))), classes
        )
        torch.testing.assert_close(terms["ce_in"], ce_half, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(terms["ce_out"], ce_half, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(loss, (3.8 * ce_half + 0.2).mean(), rtol=1e-4, atol=1e-4)


def test_multilabel_objective_uses_the_class_sigmoid():
    net, batch = _net(Task.MULTILABEL), _batch(2, 0.75, 2)
    classes = torch.tensor([2, 1])
    with torch.no_grad():
        _, terms = lmac_loss(
            net, FE, batch.magnitude, torch.ones_like(batch.magnitude), classes, Task.MULTILABEL
        )
        logits = net(batch.logmel)[torch.arange(2), classes]
    torch.testing.assert_close(terms["ce_in"], -F.logsigmoid(logits), rtol=1e-4, atol=1e-5)


def test_decoder_starts_from_the_mel_mapping_and_fits_any_length():
    explainer = LmacExplainer(explainer_context(_net(), front_end=FE))
    torch.testing.assert_close(explainer.decoder.to_linear.weight, FE.mel_to_linear)
    for seconds in (0.75, 2.0):
        batch = _batch(2, seconds, 3)
        explanation = explainer.explain(batch, torch.tensor([1, 2]))
        assert explanation.mask.shape == batch.spec.shape
        assert explanation.mask_domain == "log1p"
        assert float(explanation.mask.min()) > 0.0 and float(explanation.mask.max()) < 1.0


def test_decoder_asked_for_pairs_gives_the_full_decoders_logits_of_those_pairs():
    """Training asks for the decided (row, class) pairs only; their logits must be the
    full ``(B, C, F, T)`` decoder's, bit for bit (the upsampling and the mel-to-STFT map
    act per channel), or the speed-up would change the method."""
    net = KumarCNN(12, Task.MULTICLASS, 0.125).eval()
    explainer = LmacExplainer(explainer_context(net, front_end=FE))
    torch.nn.init.normal_(explainer.decoder.conv2.weight, std=0.5)  # classes differ
    batch = _batch(5, 1.5, 7)
    rows, classes = torch.tensor([0, 1, 1, 3, 4]), torch.tensor([11, 0, 7, 7, 2])
    with torch.no_grad():
        _, taps = net.forward_with_taps(batch.logmel)
        frames, mels = batch.logmel.shape[2:]
        full = explainer.decoder(taps, frames, mels)
        pairs = explainer.decoder(taps, frames, mels, rows, classes)
    assert full.shape == (5, 12, *batch.spec.shape[1:])
    assert torch.equal(pairs, full[rows, classes])
    assert not torch.equal(full[1, 0], full[1, 7])  # the pairs pick distinct channels


class _Clips:
    def __init__(self, batch: AudioBatch) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch)

    def batches(self, batch_size, *, shuffle=False, seed=0):
        order = (
            torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
            if shuffle
            else torch.arange(len(self))
        )
        for start in range(0, len(self), batch_size):
            yield self.batch.select(order[start : start + batch_size])


def test_fitting_lowers_the_objective_and_leaves_the_classifier_alone():
    net = _net()
    before_params = [p.detach().clone() for p in net.parameters()]
    train, valid = _Clips(_batch(8, 0.75, 4)), _Clips(_batch(4, 0.75, 5))
    explainer = LmacExplainer(
        explainer_context(net, {"epochs": 6, "lr": 3e-3, "batch_size": 4}, front_end=FE)
    )
    torch.manual_seed(0)
    with torch.no_grad():
        start = float(explainer._step_loss(train.batch))
    facts = explainer.fit(train, valid)
    with torch.no_grad():
        end = float(explainer._step_loss(train.batch))
    assert end < start - 0.05, (start, end, facts["valid_history"])
    assert facts["best_epoch"] >= 1 and len(facts["valid_history"]) == 6
    assert all(torch.equal(a, b) for a, b in zip(before_params, net.parameters(), strict=True))
    assert all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())  # restored
    assert set(WEIGHTS) == set(facts["weights"])
