"""Classifiers as plugins: the contract, kumar's unchanged identity, CNN14's published
layer names, its own log-mel bands, and a narrow CNN14 explained beside kumar."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import pytest
import torch
from fault_plugins import CLASSIFIER, tiny_config
from fault_plugins import registry as fault_registry

from l2i_bench.audio import SAMPLE_RATE, FrontEnd, mel_filterbank
from l2i_bench.classifier import ClassifierConfig, config_hash
from l2i_bench.errors import BenchError
from l2i_bench.plugins.classifiers.cnn14 import Cnn14
from l2i_bench.plugins.classifiers.kumar import KumarCNN
from l2i_bench.randomise import cascade_levels
from l2i_bench.runner import run_benchmark
from l2i_bench.types import FeatureSpec, Task

# The public PANNs CNN14 (Kong et al. 2020, audioset_tagging_cnn's Cnn14 with
# sample_rate 32000, window 1024, hop 320, 64 mel bins, 527 classes): every tensor of
# its state dict, written out from the published architecture, not from our module.
PANNS_CHANNELS = [(1, 64), (64, 128), (128, 256), (256, 512), (512, 1024), (1024, 2048)]


def published_cnn14_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
        "spectrogram_extractor.stft.conv_imag.weight": (513, 1, 1024),
        "logmel_extractor.melW": (513, 64),
    }

    def bn(prefix: str, n: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (n,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn("bn0", 64)
    for k, (c_in, c_out) in enumerate(PANNS_CHANNELS, start=1):
        shapes[f"conv_block{k}.conv1.weight"] = (c_out, c_in, 3, 3)
        shapes[f"conv_block{k}.conv2.weight"] = (c_out, c_out, 3, 3)
        bn(f"conv_block{k}.bn1", c_out)
        bn(f"conv_block{k}.bn2", c_out)
    shapes.update(
        {
            "fc1.weight": (2048, 2048),
            "fc1.bias": (2048,),
            "fc_audioset.weight": (527, 2048),
            "fc_audioset.bias": (527,),
        }
    )
    return shapes


def _checkpoint(path: Path, shapes: dict[str, tuple[int, ...]], **changes) -> Path:
    generator = torch.Generator().manual_seed(0)
    state = {
        key: (
            torch.tensor(7, dtype=torch.long)
            if key.endswith("num_batches_tracked")
            else torch.randn(shape, generator=generator)
        )
        for key, shape in shapes.items()
    }
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            state.pop(key)
        else:
            state[key] = value
    torch.save({"iteration": 1000000, "model": state}, path)  # PANNs' checkpoint layout
    return path


def test_the_public_cnn14_state_dict_loads_tensor_for_tensor(tmp_path):
    shapes = published_cnn14_shapes()
    path = _checkpoint(tmp_path / "Cnn14_mAP=0.431.pth", shapes)
    model = Cnn14(50, Task.MULTICLASS, width=1.0)
    counts = model.load_pretrained(path)
    # every published tensor but the AudioSet head and PANNs' own STFT and filterbank
    assert counts == {"loaded": len(shapes) - 5, "skipped": 5}
    stored = torch.load(path, weights_only=True)["model"]
    ours = model.state_dict()
    for key in (
        "bn0.running_var",
        "conv_block3.conv2.weight",
        "conv_block6.bn2.bias",
        "fc1.weight",
    ):
        assert torch.equal(ours[key], stored[key]), key
    assert ours["fc.weight"].shape == (50, 2048)  # the new head, not loaded
    # our module has exactly the published backbone, nothing more
    backbone = {k for k in shapes if not k.startswith(("spectrogram", "logmel", "fc_audioset"))}
    assert {k for k in ours if not k.startswith("fc.")} == backbone


@pytest.mark.parametrize(
    ("changes", "width", "message"),
    [
        ({}, 0.5, r"conv_block1\.conv1\.weight has shape \(64, 1, 3, 3\) but CNN14 at width 0\.5"),
        (
            {"conv_block2__conv1__weight": None},
            1.0,
            r"lacks 1 CNN14 tensor\(s\), first conv_block2",
        ),
        (
            {"conv_block9__conv1__weight": torch.zeros(1)},
            1.0,
            r"conv_block9\.conv1\.weight is not a CNN14 layer",
        ),
        ({"logmel_extractor__melW": torch.zeros(513, 128)}, 1.0, r"has 128 mel bands"),
    ],
)
def test_a_checkpoint_that_does_not_fit_names_the_first_bad_key(tmp_path, changes, width, message):
    path = _checkpoint(tmp_path / "ckpt.pth", published_cnn14_shapes(), **changes)
    with pytest.raises(BenchError, match=message):
        Cnn14(50, Task.MULTICLASS, width=width).load_pretrained(path)


def test_checkpoints_load_without_running_code(tmp_path):
    pickled = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a pickled module, not a state dict
    with pytest.raises(BenchError, match=r"cannot load pretrained classifier checkpoint"):
        Cnn14(3, Task.MULTICLASS, width=0.125).load_pretrained(pickled)
    listing = tmp_path / "list.pt"
    torch.save([1, 2, 3], listing)
    with pytest.raises(BenchError, match="does not hold a state dict"):
        KumarCNN(3, Task.MULTICLASS, width=0.125).load_pretrained(listing)


def test_cnn14_hears_its_own_bands_in_power_db():
    """64 Slaney bands 50 Hz - 14 kHz of |X|^2, 10 log10 without a floor: a 1 kHz tone
    peaks in the band centred on 1 kHz, at 10 log10 of the power the host's Hann STFT
    gives it through that filter."""
    front = FrontEnd("cpu", Cnn14.features)
    assert front.n_mels == 64 and front.floor_db == 80.0
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = 0.5 * torch.sin(2 * torch.pi * 1000.0 * t)
    logmel = front.logmel(tone[None])[0, 0]  # (T, 64)
    mel = torch.from_numpy(mel_filterbank(Cnn14.features)).float()
    band = int(logmel[40].argmax())
    centres = librosa.mel_frequencies(64 + 2, fmin=50.0, fmax=14_000.0)[1:-1]
    assert abs(centres[band] - 1000.0) < 60.0  # bands 54 Hz apart there
    # the power of the middle frame, through the same filter, by hand
    spec = torch.stft(tone, 1024, 512, window=torch.hann_window(1024), return_complex=True)
    expected = 10 * torch.log10((mel @ spec.abs().square())[band, 40])
    assert float(logmel[40, band]) == pytest.approx(float(expected), abs=1e-3)
    # no floor: a silent stretch stays at amin (-100 dB), 80 dB clipping would lift it
    quiet = front.logmel(torch.zeros(1, SAMPLE_RATE))
    assert float(quiet.max()) == pytest.approx(-100.0)
    # kumar's (the default) is unchanged: magnitude, 128 bands, 80 dB floor
    assert FrontEnd("cpu").n_mels == 128 and KumarCNN.features == FeatureSpec()


def test_bands_the_host_cannot_give_are_refused():
    with pytest.raises(BenchError, match=r"up to|between 0 and its Nyquist"):
        mel_filterbank(FeatureSpec(n_mels=64, fmin=50, fmax=30_000, power=2))
    with pytest.raises(BenchError, match="hold no STFT bin"):
        mel_filterbank(FeatureSpec(n_mels=400, fmin=0, fmax=2000))


def test_taps_and_levels_follow_the_contract():
    model = Cnn14(5, Task.MULTILABEL, width=0.125).eval()
    logits, taps = model.forward_with_taps(torch.randn(2, 1, 96, 64))
    assert logits.shape == (2, 5)
    assert {k: tuple(v.shape[1:]) for k, v in taps.items()} == {
        "block1": (8, 96, 64),
        "block2": (16, 48, 32),
        "block3": (32, 24, 16),
        "block4": (64, 12, 8),
        "block5": (128, 6, 4),
        "block6": (256, 3, 2),
    }
    assert model.tap_channels == {k: int(v.shape[1]) for k, v in taps.items()}
    assert cascade_levels(model) == ["head", "fc1", *(f"block{k}" for k in range(6, 0, -1))]
    with pytest.raises(ValueError, match="at least 32 frames"):
        model(torch.randn(1, 1, 16, 64))
    with pytest.raises(ValueError, match=r"expects log-mel input \(B, 1, T, 64\)"):
        model(torch.randn(1, 1, 96, 128))


def test_kumar_keeps_the_keys_it_had_before_classifiers_were_plugins():
    """The default classifier's name enters no key: its cached checkpoints and the
    published cells stay valid (these hashes were computed before the move)."""
    assert "name" not in ClassifierConfig().to_dict()
    assert config_hash(ClassifierConfig(), Task.MULTICLASS, 10) == "128e2abf1444"
    assert (
        config_hash(ClassifierConfig(width=0.25, epochs=30, seed=7), Task.MULTILABEL, 8)
        == "803d58ec28f2"
    )
    assert config_hash(ClassifierConfig(name="cnn14"), Task.MULTICLASS, 10) != "128e2abf1444"


def test_a_narrow_cnn14_is_trained_explained_and_published_beside_kumar(synth_dir, tmp_path):
    """On the tiny synth of the fault suite (cheap metrics), so that the two classifiers
    train in seconds; every explainer on CNN14: tests/test_sonyc_ust.py."""
    registry = fault_registry("random,kumar,cnn14,gradcam")
    assert {"kumar", "cnn14"} <= set(registry.names("classifier"))
    out, cache = tmp_path / "out", tmp_path / "cache"
    threads = torch.get_num_threads()
    try:
        for classifier in ({"name": "kumar"}, {"name": "cnn14"}):
            config = tiny_config(
                synth_dir,
                out,
                cache,
                explainers=["random", "gradcam"],
                classifier={**CLASSIFIER, **classifier},
            )
            summary = run_benchmark(config, registry)
            assert summary.failed == []
    finally:
        torch.set_num_threads(threads)
    assert (out / "synth-tiny" / "leaderboard.csv").is_file()
    assert (out / "synth-tiny--cnn14" / "leaderboard.csv").is_file()
    [manifest] = [json.loads(p.read_text()) for p in (out / "synth-tiny--cnn14" / "runs").glob("*")]
    assert manifest["classifier"]["1/seed-0"]["config"]["name"] == "cnn14"
    assert manifest["settings"]["classifier_config"]["name"] == "cnn14"
    kumar_sha = json.loads(next((out / "synth-tiny" / "runs").glob("*")).read_text())["classifier"]
    assert kumar_sha["1/seed-0"]["sha256"] != manifest["classifier"]["1/seed-0"]["sha256"]
    assert "name" not in kumar_sha["1/seed-0"]["config"]
    # the report of each folder says which classifier its explainers explain
    from l2i_bench.report import build_report

    for folder, name in (("synth-tiny", "kumar"), ("synth-tiny--cnn14", "cnn14")):
        html = build_report(out / folder, registry=registry).read_text()
        assert f'<code id="classifier-name">{name}</code>' in html
    # verify finds the classifier's folder: a rerun with one value changed differs there
    import shutil

    from l2i_bench.verify import VerifyRequest, verify

    rerun = tmp_path / "rerun"
    shutil.copytree(out / "synth-tiny--cnn14" / "cells", rerun / "synth-tiny--cnn14" / "cells")
    cell_file = rerun / "synth-tiny--cnn14" / "cells" / "fold-1" / "seed-0" / "random.json"
    cell = json.loads(cell_file.read_text())
    changed = next(
        s for s in cell["scores"] if s["value"] is not None and s["metric"] == "coverage"
    )
    changed["value"] += 0.5
    cell_file.write_text(json.dumps(cell))
    table, _ = verify(VerifyRequest(results=out / "synth-tiny--cnn14", rerun=rerun), registry)
    differing = table[table["status"] != "identical"]
    assert list(differing["column"]) == [changed["column"]], differing
