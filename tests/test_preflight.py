"""What `explain` says before it trains: classifier presets that are their settings
written out, a training estimate timed on this device that holds within a factor of the
training that follows, the flags that would reuse a cached classifier of other settings,
and an explainer fit estimated from a recorded one."""

from __future__ import annotations

import json
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from cells import make_cell
from fault_plugins import TinySynth, registry, tiny_config

from l2i_bench import cli, preflight
from l2i_bench.classifier import ClassifierConfig, checkpoint_path
from l2i_bench.errors import BenchError
from l2i_bench.explain_file import ExplainRequest, explain_file
from l2i_bench.preflight import (
    classifier_lines,
    compatible_classifiers,
    estimate_training,
    explainer_line,
)
from l2i_bench.workspace import FoldWorkspace, classifier_identity, run_settings

CPU = torch.device("cpu")


@pytest.fixture
def one_thread():
    """Torch at one thread (a run's --threads 1), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny(synth_dir) -> TinySynth:
    dataset = TinySynth(synth_dir)
    dataset.show_progress = False
    dataset.prepare()
    return dataset


def _path(dataset, config, threads=None) -> Path:
    key, settings = classifier_identity(dataset, "1", config, CPU, threads=threads)
    return checkpoint_path(config.cache_dir, key, settings, dataset.task, dataset.num_classes)


def test_a_preset_is_its_settings_written_out(tiny, tmp_path, one_thread):
    assert cli._parse_classifier(["preset=fast"]) == {"width": 0.25, "epochs": 30}
    for order in (["epochs=10", "preset=fast"], ["preset=fast", "epochs=10"]):
        assert cli._parse_classifier(order) == {"width": 0.25, "epochs": 10}  # explicit wins
    assert cli._parse_classifier(["preset=default"]) == {}
    assert cli._parse_classifier(["preset=paper"]) == {"width": 1.0}
    with pytest.raises(BenchError, match=r"unknown classifier preset 'fats' \(did you mean 'fast'"):
        cli._parse_classifier(["preset=fats"])

    config = tiny_config(tiny.data_dir, tmp_path / "out", tmp_path / "cache")
    for preset, written in (
        ("fast", {"width": 0.25, "epochs": 30}),
        ("paper", {"width": 1.0}),
        ("default", {}),
    ):
        named = replace(config, classifier={"preset": preset})  # the Python API expands too
        spelled = replace(config, classifier=written)
        assert classifier_identity(tiny, "1", named, CPU) == classifier_identity(
            tiny, "1", spelled, CPU
        )
        assert _path(tiny, named) == _path(tiny, spelled)
        assert run_settings(named, tiny, []) == run_settings(spelled, tiny, [])
    paper = classifier_identity(tiny, "1", replace(config, classifier={"preset": "paper"}), CPU)
    assert (paper[1].width, paper[1].epochs) == (1.0, 30)  # synth's own epochs


def test_the_estimate_holds_within_a_factor_of_the_training_it_precedes(tiny, tmp_path, one_thread):
    estimates = []

    def estimate(ws: FoldWorkspace) -> None:
        estimates.append(
            estimate_training(
                ws.train,
                ws.valid,
                config=ws.classifier_config,
                architecture=ws.architecture,
                task=ws.dataset.task,
                num_classes=ws.dataset.num_classes,
                device=ws.device,
            )
        )

    config = tiny_config(
        tiny.data_dir,
        tmp_path / "out",
        tmp_path / "cache",
        classifier={"epochs": 4, "width": 0.125, "patience": 10},  # every epoch runs
    )
    kumar = registry().classifier("kumar")
    ws = FoldWorkspace(tiny, "1", config, CPU, kumar, before_training=estimate)
    [guess] = estimates
    assert len(ws.classifier.history) == guess.epochs == 4
    assert guess.clips == len(ws.train) and guess.device == "cpu, 1 thread"
    assert 1 / 3 < guess.total_seconds / ws.classifier.train_seconds < 3
    # the steps it timed leave the training as it would have been without them
    plain = FoldWorkspace(tiny, "1", replace(config, cache_dir=tmp_path / "other"), CPU, kumar)
    assert plain.classifier.checkpoint_sha256 == ws.classifier.checkpoint_sha256
    # a cached classifier is loaded, not estimated
    FoldWorkspace(tiny, "1", config, CPU, kumar, before_training=estimate)
    assert len(estimates) == 1


def test_explain_says_what_it_trains_and_which_flags_reuse_a_cached_classifier(
    tiny, synth_dir, tmp_path, one_thread, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # no results/ here: no recorded fit to estimate from
    lines: list[str] = []
    reg = registry()

    def explain(classifier: dict) -> dict:
        request = ExplainRequest(
            audio=synth_dir / "audio" / "f1-c00-00.flac",
            explainer="profile",
            dataset="synth-tiny",
            fold="1",
            data_dir=synth_dir,
            out=tmp_path / "explained",
            device="cpu",
            cache_dir=tmp_path / "cache",
            classifier=classifier,
            threads=1,
            show_progress=False,
            say=lines.append,
        )
        return explain_file(request, reg).record

    record = explain({"epochs": 1, "width": 0.125})
    clips = len(tiny.split("1").train)
    assert lines[0] == (
        "classifier: none cached for kumar width 0.125, up to 1 epochs, seed 0 (cpu, 1 "
        f"thread) in {tmp_path / 'cache'}: it is trained on fold 1's training split once "
        "its clips are decoded"
    )
    assert lines[1].startswith(
        f"will train classifier kumar width 0.125 for up to 1 epochs on {clips} clips: about "
    )
    assert "on this device (cpu, 1 thread)" in lines[1]
    assert lines[2] == (
        f"explainer: will fit profile on {clips} training clips (no recorded fit of it on "
        "synth-tiny to estimate the time from)"
    )
    assert record["seconds"]["classifier_reused"] is False
    [cached] = list((tmp_path / "cache" / "classifiers").glob("*.pt"))

    # another epoch count: the cached classifier is named by the flags that reuse it
    config = tiny_config(
        tiny.data_dir, None, tmp_path / "cache", classifier={"epochs": 2, "width": 0.125}
    )
    hint = classifier_lines(tiny, "1", config, CPU, trainable=True)
    assert hint[1].startswith("  cached for synth-tiny fold 1 (kumar) with other settings")
    assert hint[2].startswith(
        "    --classifier width=0.125 --classifier epochs=1   (width 0.125, 1 epochs max, "
        "best epoch 1, trained in "
    )
    # and at another thread count, with the --threads that reuses it
    torch.set_num_threads(2)
    [other] = compatible_classifiers(tiny, "1", replace(config, classifier={}), CPU)
    assert other.path == cached
    assert other.flags == ["--classifier width=0.125", "--classifier epochs=1", "--threads 1"]
    torch.set_num_threads(1)

    # the flags, given back, load that very checkpoint: nothing is trained
    lines.clear()
    settings = cli._parse_classifier([f.split()[1] for f in other.flags if "classifier" in f])
    record = explain(settings)
    assert lines[0] == (
        f"classifier: kumar width 0.125, up to 1 epochs, loaded from the cache ({cached})"
    )
    assert not any(line.startswith("will train") for line in lines)
    assert lines[1].startswith("explainer: profile's fit on this classifier is cached")
    assert record["seconds"]["classifier_reused"] is True


def test_a_preset_that_names_a_cached_classifier_is_offered(tiny, tmp_path, one_thread):
    """A checkpoint made with the paper preset is offered as ``preset=paper``."""
    from l2i_bench.cache import save_torch

    config = tiny_config(tiny.data_dir, None, tmp_path / "cache", classifier={"epochs": 2})
    paper = replace(config, classifier={"preset": "paper"})
    path = _path(tiny, paper)
    settings = classifier_identity(tiny, "1", paper, CPU)[1]
    save_torch(path, {"config": settings.to_dict(), "train_seconds": 120.0}, path.stem)
    [found] = compatible_classifiers(tiny, "1", config, CPU)
    assert (found.path, found.flags) == (path, ["--classifier width=1"])
    assert found.preset_flags == ["--classifier preset=paper"]
    assert found.train_seconds == 120.0


def test_the_fit_estimate_is_a_recorded_fit_scaled_by_epochs(tmp_path, monkeypatch):
    cell = make_cell(
        "1",
        "l2i",
        [],
        dataset="synth-tiny",
        device="cpu (x86_64, 1 threads)",
        fit={"epochs": 10, "fit_seconds": 600.0},
        settings={"classifier_config": {"width": 0.25, "epochs": 30}},
    )
    path = tmp_path / "results" / "synth-tiny" / "cells" / "fold-1" / "seed-0" / "l2i.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(cell.to_json()))
    monkeypatch.chdir(tmp_path)
    ws = types.SimpleNamespace(
        explainer_cache_path=lambda cls: tmp_path / "absent.pt",
        train=[None] * 40,
        dataset=types.SimpleNamespace(name="synth-tiny"),
        config=types.SimpleNamespace(classifier_name="kumar"),
        device=CPU,
        classifier_config=ClassifierConfig(width=0.25, epochs=30),
        fold="1",
        options_for=lambda name: {"epochs": "5"},
    )
    learned = types.SimpleNamespace(name="l2i", needs_training=True)
    line = explainer_line(ws, learned)
    assert line.startswith(
        "explainer: will fit l2i on 40 training clips: about 5 min, from its recorded fit in "
        "results/synth-tiny/cells/fold-1/seed-0/l2i.json (fold 1, cpu (x86_64, 1 threads), "
        "classifier width 0.25, scaled to 5 epochs from its 10)"
    )
    recorded_on = "cpu (x86_64, 1 threads)"
    monkeypatch.setattr(preflight, "device_name", lambda device: recorded_on)
    assert explainer_line(ws, learned).endswith(f"this device: {recorded_on}")
    monkeypatch.setattr(preflight, "device_name", lambda device: "NVIDIA H200")
    assert explainer_line(ws, learned).endswith(
        "this device: NVIDIA H200 (the record is from another device)"
    )
    assert explainer_line(ws, types.SimpleNamespace(name="x", needs_training=False)) is None


def test_plugins_and_help_list_the_presets(capsys):
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    fast = next(line for line in out.splitlines() if line.split()[:2] == ["preset", "fast"])
    assert "--classifier preset=fast: width=0.25 epochs=30;" in fast
    with pytest.raises(SystemExit):  # the --classifier help names every preset
        cli.main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "preset=NAME (default: (none); fast: width=0.25 epochs=30; paper: width=1;" in text
