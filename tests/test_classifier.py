"""Tests of the Kumar et al. classifier: shapes, training, caching, pretrained loading.

Everything runs on tiny widths and 1 s synthetic clips so the file stays fast on CPU.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, f1_score

from l2i_bench.audio import SAMPLE_RATE, FrontEnd, num_frames
from l2i_bench.classifier import (
    THRESHOLD_GRID,
    ClassifierConfig,
    choose_thresholds,
    evaluate_logits,
    train_or_load_classifier,
)
from l2i_bench.data import ClipSet
from l2i_bench.errors import BenchError
from l2i_bench.plugins.classifiers.kumar import KumarCNN
from l2i_bench.types import Clip, Task

WIDTH = 0.125
TONES_HZ = (400.0, 1800.0, 7000.0)


def ch(n: int, width: float = WIDTH) -> int:
    """The contract's channel rule, restated here so the tests check the module."""
    return max(4, round(n * width))


def tone_clips(
    labels: list[tuple[int, ...]], num_classes: int, seconds: float, seed: int
) -> ClipSet:
    """Clips holding a sine per positive label (random phase, gain, onset jitter)
    over faint noise; classes are separable by frequency alone."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    waves = np.zeros((len(labels), n), dtype=np.float32)
    for row, labs in enumerate(labels):
        wave = 0.01 * rng.standard_normal(n)
        for lab in labs:
            freq = TONES_HZ[lab] * rng.uniform(0.95, 1.05)
            wave += rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.3))
        waves[row] = wave
    clips = [
        Clip(clip_id=f"c{seed}-{i}", path=Path(f"/nonexistent/c{i}.wav"), labels=labs)
        for i, labs in enumerate(labels)
    ]
    return ClipSet(clips, waves, num_classes, FrontEnd("cpu"))


def multiclass_sets(per_class_train: int, per_class_valid: int) -> tuple[ClipSet, ClipSet]:
    train_labels = [(c,) for c in range(3) for _ in range(per_class_train)]
    valid_labels = [(c,) for c in range(3) for _ in range(per_class_valid)]
    return tone_clips(train_labels, 3, 1.0, seed=1), tone_clips(valid_labels, 3, 1.0, seed=2)


# --------------------------------------------------------------------- architecture


@pytest.mark.parametrize("seconds", [1.0, 5.0])
def test_tap_shapes_follow_the_contract(seconds: float) -> None:
    frames = num_frames(round(seconds * SAMPLE_RATE))
    model = KumarCNN(num_classes=7, task=Task.MULTICLASS, width=WIDTH).eval()
    logits, taps = model.forward_with_taps(torch.randn(2, 1, frames, 128))
    assert logits.shape == (2, 7)
    assert taps["B4"].shape == (2, ch(128), frames // 8, 16)
    assert taps["B5"].shape == (2, ch(256), frames // 16, 8)
    assert taps["B6"].shape == (2, ch(512), frames // 32, 4)
    assert model.tap_names == ("B4", "B5", "B6")
    assert model.tap_channels == {"B4": ch(128), "B5": ch(256), "B6": ch(512)}


def test_paper_shapes_at_full_width_for_esc50_clips() -> None:
    # Method notes §1.1: T=431 gives B4 128x53x16, B5 256x26x8, B6 512x13x4.
    model = KumarCNN(num_classes=50, task=Task.MULTICLASS, width=1.0).eval()
    with torch.no_grad():
        _, taps = model.forward_with_taps(torch.randn(1, 1, 431, 128))
    assert {k: tuple(v.shape[1:]) for k, v in taps.items()} == {
        "B4": (128, 53, 16),
        "B5": (256, 26, 8),
        "B6": (512, 13, 4),
    }


def _kumar_by_hand(model: KumarCNN, x: torch.Tensor):
    """The network's forward pass rewritten from the architecture (blocks b1-b6 with a
    2x2 max pool after each, F1, the 1x1 head conv + ReLU, mean over time and
    frequency, the linear layer), independent of ``forward_with_taps``."""
    h = x
    for block in (model.b1, model.b2, model.b3):
        h = F.max_pool2d(block(h), 2)
    t4 = model.b4(h)
    t5 = model.b5(F.max_pool2d(t4, 2))
    t6 = model.b6(F.max_pool2d(t5, 2))
    h = model.f1(F.max_pool2d(t6, 2))
    h = F.relu(F.conv2d(h, model.head_conv.weight, model.head_conv.bias))
    feature = h.flatten(2).mean(dim=2)
    return feature @ model.fc.weight.T + model.fc.bias, {"B4": t4, "B5": t5, "B6": t6}


def test_call_matches_forward_with_taps_and_probabilities_follow_task() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 1, 256, 128)  # 256 frames: B6 leaves 4 frames, no padding path
    multi = KumarCNN(4, Task.MULTICLASS, WIDTH).eval()
    with torch.no_grad():
        logits = multi(x)
        tapped, taps = multi.forward_with_taps(x)
        by_hand, hand_taps = _kumar_by_hand(multi, x)
    torch.testing.assert_close(logits, by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tapped, by_hand, rtol=1e-5, atol=1e-6)
    # documented tap shapes: B4 (T//8, 16), B5 (T//16, 8), B6 (T//32, 4)
    assert taps["B4"].shape == (3, ch(128), 32, 16)
    assert taps["B5"].shape == (3, ch(256), 16, 8)
    assert taps["B6"].shape == (3, ch(512), 8, 4)
    for name in ("B4", "B5", "B6"):
        torch.testing.assert_close(taps[name], hand_taps[name])
    # multiclass: softmax, written out
    expected = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    torch.testing.assert_close(multi.probabilities(logits), expected)
    # multilabel: independent sigmoids (rows do not sum to 1)
    label = KumarCNN(4, Task.MULTILABEL, WIDTH).eval()
    raw = torch.tensor([[2.0, -1.0, 0.0, 3.0]])
    torch.testing.assert_close(
        label.probabilities(raw), 1 / (1 + torch.exp(-raw)), rtol=0, atol=1e-6
    )
    assert label.probabilities(raw).sum().item() == pytest.approx(
        1 / (1 + np.exp(-2)) + 1 / (1 + np.exp(1)) + 0.5 + 1 / (1 + np.exp(-3)), abs=1e-6
    )


def test_rejects_wrong_input_layout() -> None:
    model = KumarCNN(2, Task.MULTICLASS, WIDTH)
    with pytest.raises(ValueError, match="128"):
        model(torch.randn(1, 1, 100, 64))
    with pytest.raises(ValueError, match="frames"):
        model(torch.randn(1, 1, 40, 128))


# ------------------------------------------------------------------------- training


def test_training_separates_tones_and_cache_is_reused(tmp_path: Path) -> None:
    train, valid = multiclass_sets(per_class_train=6, per_class_valid=4)
    config = ClassifierConfig(width=WIDTH, epochs=7, lr=3e-3, batch_size=6, patience=2, seed=0)
    first = train_or_load_classifier(
        train,
        valid,
        task=Task.MULTICLASS,
        num_classes=3,
        config=config,
        cache_dir=tmp_path,
        cache_key="synth-fold1",
        device="cpu",
        show_progress=False,
    )
    assert not first.reused
    logits = evaluate_logits(first.model, valid, 8, "cpu")
    accuracy = float((logits.argmax(1).numpy() == valid.targets.argmax(1)).mean())
    assert accuracy >= 0.9
    assert first.best_validation_score == pytest.approx(accuracy)
    assert first.thresholds is None
    assert first.checkpoint.parent == tmp_path / "classifiers"
    assert re.fullmatch(r"synth-fold1-[0-9a-f]{12}\.pt", first.checkpoint.name)
    assert 1 <= first.best_epoch <= len(first.history) <= config.epochs
    assert not first.model.training

    second = train_or_load_classifier(
        train,
        valid,
        task=Task.MULTICLASS,
        num_classes=3,
        config=config,
        cache_dir=tmp_path,
        cache_key="synth-fold1",
        device="cpu",
        show_progress=False,
    )
    assert second.reused
    assert second.checkpoint == first.checkpoint
    assert second.checkpoint_sha256 == first.checkpoint_sha256
    assert second.history == first.history
    assert torch.equal(evaluate_logits(second.model, valid, 8, "cpu"), logits)


def test_changed_config_or_corrupt_cache_retrains_deterministically(tmp_path: Path, capfd) -> None:
    train, valid = multiclass_sets(per_class_train=2, per_class_valid=1)
    config = ClassifierConfig(width=WIDTH, epochs=1, batch_size=4, seed=0)
    kwargs = dict(
        task=Task.MULTICLASS,
        num_classes=3,
        cache_dir=tmp_path,
        cache_key="k",
        device="cpu",
        show_progress=False,
    )
    first = train_or_load_classifier(train, valid, config=config, **kwargs)
    other = train_or_load_classifier(
        train, valid, config=ClassifierConfig(width=WIDTH, epochs=1, batch_size=4, seed=1), **kwargs
    )
    assert not other.reused and other.checkpoint != first.checkpoint

    first_logits = evaluate_logits(first.model, valid, 4, "cpu")
    first.checkpoint.write_bytes(b"not a checkpoint")
    capfd.readouterr()
    again = train_or_load_classifier(train, valid, config=config, **kwargs)
    warning = capfd.readouterr().err
    assert f"discarding cache entry {first.checkpoint}" in warning and "recomputed" in warning
    assert not again.reused
    assert again.checkpoint_sha256 == first.checkpoint_sha256  # the weights' identity
    # Retraining with the same seed repeats the run exactly.
    assert torch.equal(evaluate_logits(again.model, valid, 4, "cpu"), first_logits)
    assert again.history[0]["train_loss"] == first.history[0]["train_loss"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train_or_load_classifier(train, valid, config=config, **kwargs).reused


def test_multilabel_thresholds_are_chosen_in_open_unit_interval(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    combos = [(0,), (1,), (2,), (0, 1), (1, 2), (0, 2), (0, 1, 2)]
    train = tone_clips([combos[i] for i in rng.integers(0, 7, 14)], 3, 1.0, seed=4)
    valid = tone_clips(combos, 3, 1.0, seed=5)
    config = ClassifierConfig(
        width=WIDTH, epochs=2, batch_size=7, seed=0, pos_weight=[1.0, 2.0, 1.0]
    )
    result = train_or_load_classifier(
        train,
        valid,
        task=Task.MULTILABEL,
        num_classes=3,
        config=config,
        cache_dir=tmp_path,
        cache_key="ml",
        device="cpu",
        show_progress=False,
    )
    assert result.thresholds is not None and result.thresholds.shape == (3,)
    assert bool(((result.thresholds > 0) & (result.thresholds < 1)).all())
    # Recompute from the returned model's validation probabilities, independently: per
    # class, the first grid threshold with the best F1 of p >= t (0.5 when F1 is 0).
    logits = evaluate_logits(result.model, valid, 7, "cpu")
    probs = torch.sigmoid(logits).numpy()
    expected = []
    for c in range(3):
        f1s = [
            f1_score(valid.targets[:, c], probs[:, c] >= t, zero_division=0.0)
            for t in THRESHOLD_GRID
        ]
        expected.append(THRESHOLD_GRID[int(np.argmax(f1s))] if max(f1s) > 0 else 0.5)
    assert result.thresholds.tolist() == pytest.approx(expected, abs=1e-6)
    # the kept epoch's validation score is the micro average precision of that model
    best = result.history[result.best_epoch - 1]["val_score"]
    assert best == pytest.approx(
        average_precision_score(valid.targets, probs, average="micro"), abs=1e-6
    )
    reused = train_or_load_classifier(
        train,
        valid,
        task=Task.MULTILABEL,
        num_classes=3,
        config=config,
        cache_dir=tmp_path,
        cache_key="ml",
        device="cpu",
        show_progress=False,
    )
    assert reused.reused and torch.equal(reused.thresholds, result.thresholds)


def test_choose_thresholds_maximises_f1_per_class() -> None:
    gen = torch.Generator().manual_seed(0)
    targets = (torch.rand(60, 4, generator=gen) > 0.6).float()
    probs = (0.6 * targets + 0.5 * torch.rand(60, 4, generator=gen)).clamp(0, 1)
    targets[:, 3] = 0  # a class without positives keeps the neutral 0.5
    chosen = choose_thresholds(probs, targets)
    for c in range(3):
        scores = [
            f1_score(targets[:, c].numpy(), (probs[:, c] >= t).numpy(), zero_division=0)
            for t in THRESHOLD_GRID
        ]
        got = f1_score(targets[:, c].numpy(), (probs[:, c] >= chosen[c]).numpy())
        assert got == pytest.approx(max(scores))
        assert float(chosen[c]) in [pytest.approx(t) for t in THRESHOLD_GRID]
    assert float(chosen[3]) == pytest.approx(0.5)


def test_bad_settings_raise_bench_errors(tmp_path: Path) -> None:
    train, valid = multiclass_sets(per_class_train=1, per_class_valid=1)
    kwargs = dict(cache_dir=tmp_path, cache_key="k", device="cpu", show_progress=False)
    with pytest.raises(BenchError, match="pos_weight"):
        train_or_load_classifier(
            train,
            valid,
            task=Task.MULTILABEL,
            num_classes=3,
            config=ClassifierConfig(width=WIDTH, epochs=1, pos_weight=[1.0]),
            **kwargs,
        )
    with pytest.raises(BenchError, match="validation"):
        train_or_load_classifier(
            train,
            valid.subset([]),
            task=Task.MULTICLASS,
            num_classes=3,
            config=ClassifierConfig(width=WIDTH, epochs=1),
            **kwargs,
        )


def test_config_coerces_command_line_strings() -> None:
    config = ClassifierConfig(
        width="0.5", epochs="3", lr="1e-4", augment="false", pos_weight="1,3.5", pretrained="w.pt"
    )
    assert config.to_dict() == {
        "width": 0.5, "epochs": 3, "lr": 1e-4, "batch_size": 32, "patience": 8, "seed": 0,
        "pretrained": "w.pt", "pos_weight": [1.0, 3.5], "augment": False,
    }  # fmt: skip
    with pytest.raises(BenchError, match="epochs"):
        ClassifierConfig(epochs="2.5")
    with pytest.raises(BenchError, match="augment"):
        ClassifierConfig(augment="maybe")


# ----------------------------------------------------------------------- pretrained


def kumar_state_dict(width: float, num_audioset_classes: int = 527) -> dict[str, torch.Tensor]:
    """A state dict named and shaped like Kumar et al.'s ``weak_mxh64_1024`` (method
    notes §1.1), each tensor filled with its layer number so a load can be traced."""
    convs = {  # layer number: (in, out, kernel)
        1: (1, 16, 3),
        2: (16, 16, 3),
        4: (16, 32, 3),
        5: (32, 32, 3),
        7: (32, 64, 3),
        8: (64, 64, 3),
        10: (64, 128, 3),
        11: (128, 128, 3),
        13: (128, 256, 3),
        14: (256, 256, 3),
        16: (256, 512, 3),
        18: (512, 1024, 2),
    }
    state: dict[str, torch.Tensor] = {}
    for layer, (c_in, c_out, k) in convs.items():
        c_in = 1 if c_in == 1 else ch(c_in, width)
        c_out = ch(c_out, width)
        value = float(layer)
        state[f"layer{layer}.0.weight"] = torch.full((c_out, c_in, k, k), value)
        state[f"layer{layer}.0.bias"] = torch.full((c_out,), value)
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"layer{layer}.1.{name}"] = torch.full((c_out,), value)
        state[f"layer{layer}.1.num_batches_tracked"] = torch.tensor(layer)
    state["layer19.0.weight"] = torch.zeros(num_audioset_classes, ch(1024, width), 1, 1)
    state["layer19.0.bias"] = torch.zeros(num_audioset_classes)
    return state


def test_pretrained_kumar_checkpoint_fills_the_backbone_only(tmp_path: Path) -> None:
    path = tmp_path / "kumar.pt"
    torch.save({"state_dict": kumar_state_dict(WIDTH)}, path)
    model = KumarCNN(10, Task.MULTICLASS, WIDTH)
    head_before = model.fc.weight.detach().clone()
    counts = model.load_pretrained(path)
    assert counts["loaded"] == 12 * 7 and counts["skipped"] == 2
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    # Backbone convs in forward order are Kumar layers 1,2,4,5,7,8,10,11,13,14,16,18.
    expected = [1, 2, 4, 5, 7, 8, 10, 11, 13, 14, 16, 18]
    assert [float(c.weight.detach().flatten()[0]) for c in convs[:12]] == expected
    assert torch.equal(model.fc.weight, head_before)


def test_pretrained_file_errors_name_the_file(tmp_path: Path) -> None:
    model = KumarCNN(10, Task.MULTICLASS, WIDTH)
    corrupt = tmp_path / "corrupt-weights.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(BenchError, match=re.escape("corrupt-weights.pt")):
        model.load_pretrained(corrupt)
    with pytest.raises(BenchError, match=re.escape("missing.pt")):
        model.load_pretrained(tmp_path / "missing.pt")
    wrong_width = tmp_path / "full-width.pt"
    torch.save(kumar_state_dict(1.0), wrong_width)
    with pytest.raises(BenchError, match=r"full-width\.pt(.|\n)*width"):
        model.load_pretrained(wrong_width)
    unrelated = tmp_path / "unrelated.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, unrelated)
    with pytest.raises(BenchError, match=re.escape("unrelated.pt")):
        model.load_pretrained(unrelated)


def test_corrupt_pretrained_file_fails_training_with_bench_error(tmp_path: Path) -> None:
    train, valid = multiclass_sets(per_class_train=1, per_class_valid=1)
    bad = tmp_path / "audioset.pt"
    bad.write_text("definitely not torch")
    config = ClassifierConfig(width=WIDTH, epochs=1, pretrained=bad)
    with pytest.raises(BenchError, match=re.escape("audioset.pt")):
        train_or_load_classifier(
            train,
            valid,
            task=Task.MULTICLASS,
            num_classes=3,
            config=config,
            cache_dir=tmp_path,
            cache_key="k",
            device="cpu",
            show_progress=False,
        )
