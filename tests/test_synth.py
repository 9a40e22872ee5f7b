"""The synth dataset: deterministic, separable classes, exact stems, stated conditions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from l2i_bench.audio import FrontEnd, read_audio
from l2i_bench.errors import BenchError
from l2i_bench.plugins.datasets import synth
from l2i_bench.plugins.datasets.synth import Synth


def _pcm(path: Path) -> np.ndarray:
    return sf.read(str(path), dtype="int16")[0].astype(np.int64)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    ds = Synth(tmp_path_factory.mktemp("synth") / "synth")
    ds.prepare(show_progress=False)
    return ds


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    plans = [p for p in synth.plan_clips() if p.with_conditions][:3]
    outs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        root = tmp_path / name
        (root / "audio").mkdir(parents=True)
        (root / "stems").mkdir()
        bank = synth.background_bank(seed)
        for plan in plans:
            synth.generate_clip(plan, seed, root, bank)
        outs[name] = {p.relative_to(root): p.read_bytes() for p in root.rglob("*.flac")}
    assert outs["a"] and outs["a"] == outs["b"]
    assert outs["a"].keys() == outs["c"].keys()
    assert all(outs["a"][k] != outs["c"][k] for k in outs["a"])


def test_folds_and_split_protocol(dataset: Synth) -> None:
    assert dataset.folds() == ["1", "2", "3", "4", "5"]
    assert len(dataset.class_names) == 10 == len(set(dataset.class_names))
    split = dataset.split("5")
    fold_of = {
        c.clip_id: c.clip_id.split("-")[0] for c in (*split.train, *split.valid, *split.test)
    }
    assert {fold_of[c.clip_id] for c in split.test} == {"f5"}
    assert {fold_of[c.clip_id] for c in split.valid} == {"f1"}  # (5 mod 5) + 1
    assert {fold_of[c.clip_id] for c in split.train} == {"f2", "f3", "f4"}
    ids = [c.clip_id for c in (*split.train, *split.valid, *split.test)]
    assert len(ids) == len(set(ids)) == 400
    per_class = np.bincount([c.labels[0] for c in split.test], minlength=10)
    assert per_class.tolist() == [8] * 10
    assert set(split.conditions) == {"overlap", "noise"}
    test_ids = {c.clip_id for c in split.test}
    for name, clips in split.conditions.items():
        assert len(clips) == 10 * synth.CONDITION_CLIPS_PER_CLASS_PER_FOLD
        assert all(c.condition == name and c.clip_id.rsplit("-", 1)[0] in test_ids for c in clips)
    assert "fold 5" in split.protocol and "fold 1" in split.protocol
    with pytest.raises(BenchError, match="no fold"):
        dataset.split("6")


def test_every_file_is_a_clip_of_the_right_length(dataset: Synth) -> None:
    split = dataset.split("1")
    for clip in (*split.test[:5], *split.conditions["noise"][:2]):
        for path in (clip.path, *clip.stems.values()):
            info = sf.info(str(path))
            assert info.samplerate == 44100 and info.channels == 1
            assert info.frames == round(2.0 * 44100)


def test_classes_are_distinguishable_by_nearest_centroid(dataset: Synth) -> None:
    """A crude classifier (nearest class mean of the max-over-time log-mel, which sees
    no temporal pattern at all) already beats chance (10 %) by far."""
    split = dataset.split("1")
    front = FrontEnd("cpu")

    def features(clips):
        wave = torch.from_numpy(np.stack([read_audio(c.path) for c in clips]))
        return front.logmel(wave)[:, 0].amax(dim=1).numpy(), np.array([c.labels[0] for c in clips])

    x_train, y_train = features(split.train)
    x_test, y_test = features(split.test)
    centroids = np.stack([x_train[y_train == k].mean(axis=0) for k in range(10)])
    pred = np.argmin(((x_test[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == y_test).mean() >= 0.6


def test_stems_sum_exactly_to_the_mix(dataset: Synth) -> None:
    split = dataset.split("2")
    clips = [*split.test[:4], *split.conditions["overlap"][:6], *split.conditions["noise"][:6]]
    for clip in clips:
        mix = read_audio(clip.path)
        total = read_audio(clip.stems["target"]) + read_audio(clip.stems["interference"])
        assert np.array_equal(mix, total), clip.clip_id


def test_noise_condition_is_0_db_snr(dataset: Synth) -> None:
    split = dataset.split("3")
    clean = {c.clip_id: c for c in split.test}
    for clip in split.conditions["noise"]:
        base = clean[clip.clip_id.removesuffix("-noise")]
        x = read_audio(base.path).astype(np.float64)
        noise = read_audio(clip.path).astype(np.float64) - x
        snr = 10 * np.log10(np.sum(x**2) / np.sum(noise**2))
        assert abs(snr) < 0.5, (clip.clip_id, snr)
        # white: flat spectrum, so the top and bottom halves of the band carry equal power
        spectrum = np.abs(np.fft.rfft(noise)) ** 2
        half = spectrum.size // 2
        assert 0.8 < spectrum[:half].sum() / spectrum[half:].sum() < 1.25


def test_overlap_condition_adds_another_class_at_half_the_peak(dataset: Synth) -> None:
    split = dataset.split("4")
    clean = {c.clip_id: c for c in split.test}
    for clip in split.conditions["overlap"]:
        base = clean[clip.clip_id.removesuffix("-overlap")]
        target = _pcm(clip.stems["target"])
        assert np.array_equal(target, _pcm(base.stems["target"]))
        other = _pcm(clip.stems["interference"]) - _pcm(base.stems["interference"])
        assert abs(np.abs(other).max() / np.abs(target).max() - 0.5) < 0.01
        # the interferer overlaps the target in time
        assert np.any((np.abs(target) > 0) & (np.abs(other) > 0)), clip.clip_id


def test_regenerates_only_when_version_or_seed_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synth, "CLIPS_PER_CLASS_PER_FOLD", 1)
    monkeypatch.setattr(synth, "CONDITION_CLIPS_PER_CLASS_PER_FOLD", 1)
    data_dir = tmp_path / "s"
    first = Synth(data_dir)
    first.prepare(show_progress=False)
    version = json.loads((data_dir / "VERSION.json").read_text())
    assert version["seed"] == 0 and version["generator_version"] == synth.GENERATOR_VERSION
    audio = data_dir / "audio" / "f1-c00-00.flac"
    before = audio.read_bytes()
    stamp = audio.stat().st_mtime_ns
    Synth(data_dir).prepare(show_progress=False)
    assert audio.stat().st_mtime_ns == stamp  # not regenerated

    Synth(data_dir, data_seed=1).prepare(show_progress=False)
    assert json.loads((data_dir / "VERSION.json").read_text())["seed"] == 1
    assert audio.read_bytes() != before

    monkeypatch.setattr(synth, "GENERATOR_VERSION", "test-bump")
    assert not Synth(data_dir, data_seed=1).is_current()
    assert not list(tmp_path.glob(".s.tmp-*"))  # no temporary folders left behind


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(BenchError, match=r"VERSION\.json"):
        Synth(tmp_path / "mine").prepare(show_progress=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_plugin_registers_the_class() -> None:
    seen: list[type] = []
    synth.register_datasets(seen.append)
    assert seen == [Synth]
    assert Synth.name == "synth" and Synth.task == "multiclass"
    assert (1 + round(Synth.clip_seconds * 44100) // 512) // 32 >= 2  # classifier needs T//32 >= 2
