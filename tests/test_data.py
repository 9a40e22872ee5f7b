"""Clips as the networks hear them: peak-normalised batches, stems scaled with their mix."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from l2i_bench.audio import SAMPLE_RATE, FrontEnd, peak_gains
from l2i_bench.data import ClipSet
from l2i_bench.registry import load_registry
from l2i_bench.types import Clip
from l2i_bench.workspace import FoldWorkspace, RunConfig


def _tone_in_noise(seconds: float = 0.5, freq: float = 440.0) -> np.ndarray:
    """Broadband, so that no bin sits at float32 rounding level, where dB is unstable."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    noise = 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return (np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def test_the_same_clip_at_two_levels_gives_the_same_features(tmp_path):
    """Level invariance is the point of normalising: log(1+|X|) is not scale-invariant."""
    wave = _tone_in_noise()
    wave[100] = -1.3  # a negative peak larger than the positive one
    paths = []
    for gain in (0.05, 0.7):
        path = tmp_path / f"tone-{gain}.wav"
        sf.write(path, wave * gain / 1.3, SAMPLE_RATE, subtype="FLOAT")  # no quantisation floor
        paths.append(path)
    clips = [Clip(clip_id=p.stem, path=p, labels=(0,)) for p in paths]
    clip_set = ClipSet.load(clips, 0.5, 1, FrontEnd("cpu"), cache_dir=tmp_path / "cache")
    batch = clip_set.batch([0, 1])
    assert torch.allclose(batch.waveform.abs().amax(dim=1), torch.ones(2), atol=1e-6)
    assert torch.allclose(batch.log_magnitude[0], batch.log_magnitude[1], atol=1e-3)
    assert torch.allclose(batch.logmel[0], batch.logmel[1], atol=1e-2)
    # The raw files stay as decoded; only what leaves the set is normalised.
    assert np.abs(clip_set.waveforms[0]).max() < 0.06
    np.testing.assert_allclose(clip_set.waveform(1), batch.waveform[1].numpy(), atol=1e-6)
    assert len(list((tmp_path / "cache" / "audio").glob("*.gains.npy"))) == 1  # peaks cached
    sub = clip_set.subset([1])
    assert torch.equal(sub.batch([0]).waveform, batch.waveform[1:])


def test_peak_gains_of_a_silent_row_are_one():
    waves = np.zeros((3, 10), dtype=np.float32)
    waves[1, 4] = -0.25
    np.testing.assert_array_equal(peak_gains(waves, chunk=2), [1.0, 4.0, 1.0])


def test_condition_stems_still_sum_to_the_normalised_mixture(synth_dir, cache_dir):
    registry = load_registry()
    dataset = registry.dataset("synth")(synth_dir)
    dataset.prepare()
    config = RunConfig(
        dataset="synth",
        explainers=[],
        folds=["1"],
        data_dir=synth_dir,
        limit=6,
        cache_dir=cache_dir,
        classifier={"epochs": 2},
        show_progress=False,
    )
    ws = FoldWorkspace(dataset, "1", config, torch.device("cpu"))
    for name, clips in ws.conditions.items():
        mixture = clips.batch(np.arange(len(clips))).waveform
        stems = ws.condition_stems[name]
        assert torch.allclose(mixture.abs().amax(dim=1), torch.ones(len(clips)), atol=1e-6)
        assert torch.allclose(stems["target"] + stems["interference"], mixture, atol=1e-5), name


def _noisy_clips(tmp_path, count: int, seconds: float = 0.5) -> list[Clip]:
    rng = np.random.default_rng(7)
    clips = []
    for i in range(count):
        path = tmp_path / f"clip-{i}.wav"
        wave = rng.standard_normal(int(seconds * SAMPLE_RATE)) * (0.05 + 0.1 * i)
        sf.write(path, wave.astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
        clips.append(Clip(clip_id=path.stem, path=path, labels=(i % 2,)))
    return clips


def _all_batches(clip_set: ClipSet) -> list:
    batches = list(clip_set.batches(3, shuffle=True, seed=4)) + [clip_set.batch([4, 0, 4])]
    return [(b.spec, b.logmel, b.waveform) for b in batches]


def test_cached_features_are_the_per_batch_features_bit_for_bit(tmp_path, monkeypatch):
    """The feature cache must not move a number: in memory, memory-mapped from disk, and
    when neither holds it, every batch (shuffled, any size, repeated rows) is what the
    per-batch front end computes, in the same memory layout (a convolution rounds
    differently on the same values laid out otherwise: a first version of the cache
    returned contiguous log-mels and changed the trained classifier)."""
    from l2i_bench import data

    clips = _noisy_clips(tmp_path, 7)
    front_end = FrontEnd("cpu")

    def clip_set(**kwargs) -> ClipSet:
        return ClipSet.load(clips, 0.5, 2, front_end, cache_dir=tmp_path / "cache", **kwargs)

    plain = clip_set()
    plain.cache_features = False
    expected = _all_batches(plain)
    assert plain.feature_storage == "per batch"

    def same(got, want) -> bool:  # the same numbers in the same memory layout
        return all(
            torch.equal(g, w) and g.stride() == w.stride() for g, w in zip(got, want, strict=True)
        )

    in_memory = clip_set()
    assert in_memory.feature_bytes() == 7 * (513 * 44 * 8 + 44 * 128 * 4)  # 44 frames
    for got, want in zip(_all_batches(in_memory), expected, strict=True):
        assert same(got, want)
    assert in_memory.feature_storage == "memory"

    monkeypatch.setattr(data, "FEATURE_MEMORY_BUDGET", 0)
    on_disk = clip_set()
    for got, want in zip(_all_batches(on_disk), expected, strict=True):
        assert same(got, want)
    assert on_disk.feature_storage == "disk"
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 2
    # a later run maps the same entry instead of computing it again
    monkeypatch.setattr(ClipSet, "_fill", lambda *a: pytest.fail("features recomputed"))
    again = clip_set()
    assert torch.equal(again.batch([2]).logmel, plain.batch([2]).logmel)
    assert again.feature_storage == "disk"
    assert torch.equal(again.batch([0, 4]).spec, on_disk.batch([0, 4]).spec)

    monkeypatch.setattr(data, "FEATURE_DISK_MARGIN", 0.0)
    (tmp_path / "cache" / "features").rename(tmp_path / "moved")
    nowhere = clip_set()
    assert torch.equal(nowhere.batch([4, 0, 4]).logmel, expected[-1][1])
    assert nowhere.feature_storage == "per batch"
