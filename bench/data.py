"""Clips in memory: decode once, cache to disk, batch with features on the device.

Decoding 400 FLAC files takes longer than a forward pass over them, so each split's
waveforms are cached as one ``.npy`` under the cache folder, keyed by the dataset's
fingerprint and the clip list; a changed file list gives a new key, never stale audio.
The entry and its gains carry integrity records (:mod:`l2i_bench.cache`): audio whose
bytes changed after writing is discarded and decoded again, never used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from l2i_bench.audio import SAMPLE_RATE, FrontEnd, peak_gains, read_audio
from l2i_bench.cache import build_array, entry_lock, load_array, save_array
from l2i_bench.errors import BenchError
from l2i_bench.failpoints import failpoint
from l2i_bench.types import AudioBatch, Clip


def multi_hot(clips: Sequence[Clip], num_classes: int) -> np.ndarray:
    targets = np.zeros((len(clips), num_classes), dtype=np.float32)
    for row, clip in enumerate(clips):
        targets[row, list(clip.labels)] = 1.0
    return targets


def load_waveforms(
    paths: Sequence[Path],
    num_samples: int,
    *,
    cache_dir: Path | None = None,
    desc: str = "decoding audio",
    show_progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Waveforms ``(N, num_samples)`` float32 as decoded, and their peak-normalising
    gains ``(N,)`` (:func:`l2i_bench.audio.peak_gains`), read through an on-disk cache.

    The gains are cached beside the audio: finding a peak reads every sample, which for
    a memory-mapped split of many GB should happen once, not at every load."""
    key = hashlib.sha256()
    key.update(str(num_samples).encode())
    for path in paths:
        p = Path(path)
        stat = p.stat() if p.exists() else None
        key.update(
            f"{p.resolve()}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}".encode()
        )
    if cache_dir is None:
        waves = np.zeros((len(paths), num_samples), dtype=np.float32)
        _decode_into(waves, paths, num_samples, desc, show_progress)
        return waves, peak_gains(waves)
    cache_file = Path(cache_dir) / "audio" / f"{key.hexdigest()[:20]}.npy"
    gains_file = cache_file.with_suffix(".gains.npy")
    entry_key = f"audio:{key.hexdigest()}"
    with entry_lock(cache_file):
        waves = load_array(cache_file, entry_key, mmap=True)
        if waves is None or waves.shape != (len(paths), num_samples):
            # Decode straight into a memory-mapped file: a large split (SONYC-UST's
            # training set is ~24 GB of float32) never has to fit in RAM, and a crash
            # leaves only a temporary file, removed by the next run.
            build_array(
                cache_file,
                (len(paths), num_samples),
                lambda out: _decode_into(out, paths, num_samples, desc, show_progress),
                entry_key,
            )
            waves = load_array(cache_file, entry_key, mmap=True)
            gains_file.unlink(missing_ok=True)
        gains = load_array(gains_file, entry_key)
        if gains is None or gains.shape != (len(paths),):
            save_array(gains_file, peak_gains(waves), entry_key)
            gains = load_array(gains_file, entry_key)
    if waves is None or gains is None:
        raise BenchError(
            f"the decoded-audio cache {cache_file} failed its check right after it was written",
            "the cache folder's disk may be failing; pass another --cache-dir",
        )
    return waves, gains


def _decode_into(
    waves: np.ndarray, paths: Sequence[Path], num_samples: int, desc: str, show_progress: bool
) -> None:
    for row, path in enumerate(
        tqdm(paths, desc=desc, unit="clip", disable=not show_progress or len(paths) < 20)
    ):
        waves[row] = read_audio(path, num_samples)
        if row == 0:
            failpoint("decode")


def batch_rows(
    n: int, batch_size: int, *, shuffle: bool = False, seed: int = 0
) -> Iterator[np.ndarray]:
    """Row indices of successive batches over ``n`` rows; a ``shuffle`` is seeded, so
    every :class:`l2i_bench.types.BatchSource` visits rows in the same repeatable order."""
    order = np.arange(n)
    if shuffle:
        np.random.default_rng(seed).shuffle(order)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


class ClipSet:
    """A split held in memory as waveforms; features are computed per batch.

    ``waveforms`` are the decoded files as they are (possibly a read-only memory map);
    every batch is peak-normalised on the way out with ``gains`` (see
    :func:`l2i_bench.audio.peak_gains`), so classifier, explainers and metrics all see
    the clip at the level the L2I code feeds its networks. Ground-truth stems are scaled
    by their mixture's gain, never their own, so the mixture stays their sum.

    Implements :class:`l2i_bench.types.BatchSource`.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        waveforms: np.ndarray,
        num_classes: int,
        front_end: FrontEnd,
        gains: np.ndarray | None = None,
    ) -> None:
        if len(clips) != waveforms.shape[0]:
            raise ValueError("one waveform per clip expected")
        self.clips = list(clips)
        self.waveforms = waveforms
        self.gains = peak_gains(waveforms) if gains is None else np.asarray(gains, np.float32)
        if self.gains.shape != (len(self.clips),):
            raise ValueError("one gain per clip expected")
        self.targets = multi_hot(self.clips, num_classes)
        self.front_end = front_end
        self.stem_waves: dict[str, np.ndarray] = {}
        """Ground-truth stems as decoded ``(N, L)``, aligned with ``clips`` (set by the
        workspace when the dataset has them); batches scale them by the mixture's gain."""

    @classmethod
    def load(
        cls,
        clips: Sequence[Clip],
        clip_seconds: float,
        num_classes: int,
        front_end: FrontEnd,
        *,
        cache_dir: Path | None = None,
        desc: str = "decoding audio",
        show_progress: bool = True,
    ) -> ClipSet:
        num_samples = round(clip_seconds * SAMPLE_RATE)
        waves, gains = load_waveforms(
            [c.path for c in clips],
            num_samples,
            cache_dir=cache_dir,
            desc=desc,
            show_progress=show_progress,
        )
        return cls(clips, waves, num_classes, front_end, gains)

    def waveform(self, index: int) -> np.ndarray:
        """Clip ``index`` as the networks hear it (peak-normalised), float32."""
        return np.asarray(self.waveforms[index], dtype=np.float32) * self.gains[index]

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_samples(self) -> int:
        return int(self.waveforms.shape[1])

    def batch(self, indices: Sequence[int] | np.ndarray) -> AudioBatch:
        """Rows ``indices`` with STFT and log-mel computed on the front end's device."""
        idx = np.asarray(indices, dtype=np.int64)
        gains = torch.from_numpy(self.gains[idx]).unsqueeze(1)
        wave = (torch.from_numpy(np.asarray(self.waveforms[idx])) * gains).to(self.front_end.device)
        spec = self.front_end.stft(wave)
        stems = {
            name: (torch.from_numpy(np.asarray(waves[idx])) * gains).to(self.front_end.device)
            for name, waves in self.stem_waves.items()
        }
        return AudioBatch(
            clip_ids=[self.clips[i].clip_id for i in idx.tolist()],
            waveform=wave,
            spec=spec,
            logmel=self.front_end.logmel_from_magnitude(spec.abs()),
            targets=torch.from_numpy(self.targets[idx]).to(self.front_end.device),
            stems=stems,
        )

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0
    ) -> Iterator[AudioBatch]:
        for rows in batch_rows(len(self), batch_size, shuffle=shuffle, seed=seed):
            yield self.batch(rows)

    def subset(self, indices: Sequence[int]) -> ClipSet:
        idx = list(indices)
        sub = ClipSet.__new__(ClipSet)
        sub.clips = [self.clips[i] for i in idx]
        sub.waveforms = self.waveforms[idx]
        sub.gains = self.gains[idx]
        sub.targets = self.targets[idx]
        sub.front_end = self.front_end
        sub.stem_waves = {name: waves[idx] for name, waves in self.stem_waves.items()}
        return sub
