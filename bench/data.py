"""Clips in memory: decode once, cache to disk, batch with features on the device.

Decoding 400 FLAC files takes longer than a forward pass over them, so each split's
waveforms are cached as one ``.npy`` under the cache folder, keyed by the dataset's
fingerprint and the clip list; a changed file list gives a new key, never stale audio.
The entry and its gains carry integrity records (:mod:`l2i_bench.cache`): audio whose
bytes changed after writing is discarded and decoded again, never used.

Features (ours; issue 19): the classifier and every learned explainer iterate the
training split for 15 to 60 epochs, and each batch used to recompute its STFT and
log-mel. A split's features are now computed once per fold, on first use, and every
later batch indexes them: in memory when they fit :data:`FEATURE_MEMORY_BUDGET`,
memory-mapped from the cache folder (keyed like the audio, plus the front end's
settings) when they fit the disk instead, and per batch as before when neither holds
them. Cost: ``N x (F x T x 8 + T x M x 4)`` bytes, the complex STFT and the log-mel:
2.0 MB per 5 s clip at Kumar's 128 bands (ESC-50's 1,200 training clips of a fold:
2.4 GB), 4.0 MB per 10 s clip (SONYC-UST's training split, ~13,500 clips: 54 GB, on
disk). The values are the per-batch ones bit for bit (tested), so no number moves.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from l2i_bench.audio import (
    HOP_LENGTH,
    N_FFT,
    SAMPLE_RATE,
    FrontEnd,
    num_frames,
    peak_gains,
    read_audio,
)
from l2i_bench.cache import build_array, entry_lock, load_array, save_array
from l2i_bench.errors import BenchError
from l2i_bench.failpoints import failpoint
from l2i_bench.magnitude import complex_magnitude
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
    key = _files_key(paths, num_samples)
    if cache_dir is None:
        waves = np.zeros((len(paths), num_samples), dtype=np.float32)
        _decode_into(waves, paths, num_samples, desc, show_progress)
        return waves, peak_gains(waves)
    cache_file = Path(cache_dir) / "audio" / f"{key[:20]}.npy"
    gains_file = cache_file.with_suffix(".gains.npy")
    entry_key = f"audio:{key}"
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


def _files_key(paths: Sequence[Path], num_samples: int) -> str:
    """What identifies decoded audio: the clip length and each file's path, size and
    modification time."""
    key = hashlib.sha256()
    key.update(str(num_samples).encode())
    for path in paths:
        p = Path(path)
        stat = p.stat() if p.exists() else None
        key.update(
            f"{p.resolve()}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}".encode()
        )
    return key.hexdigest()


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


def _default_memory_budget() -> int:
    """A quarter of the machine's memory, at most 8 GiB: features share the RAM with
    the decoded audio, the classifier and an explainer's own state."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return min(total // 4, 8 << 30)


FEATURE_MEMORY_BUDGET = _default_memory_budget()
"""Bytes of features (all cached splits of a process together) kept in memory."""
FEATURE_DISK_MARGIN = 0.2
"""Share of the cache disk's free space a feature entry may take."""
FEATURE_CHUNK = 32
"""Clips featurised at once when a split's features are built."""

_memory_in_use = 0


def _release_memory(size: int) -> None:
    global _memory_in_use
    _memory_in_use -= size


class ClipSet:
    """A split held in memory as waveforms, with its features computed once.

    ``waveforms`` are the decoded files as they are (possibly a read-only memory map);
    every batch is peak-normalised on the way out with ``gains`` (see
    :func:`l2i_bench.audio.peak_gains`), so classifier, explainers and metrics all see
    the clip at the level the L2I code feeds its networks. Ground-truth stems are scaled
    by their mixture's gain, never their own, so the mixture stays their sum.

    The STFT and log-mel of every clip are built on the first batch and reused by every
    later one (module docstring: where they are kept and what they cost);
    ``feature_storage`` says where they went.

    Implements :class:`l2i_bench.types.BatchSource`.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        waveforms: np.ndarray,
        num_classes: int,
        front_end: FrontEnd,
        gains: np.ndarray | None = None,
        *,
        cache_dir: Path | None = None,
        show_progress: bool = False,
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
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.show_progress = show_progress
        self.cache_features = True
        """False: compute features per batch (the benchmark's "before")."""
        self.feature_storage: str | None = None
        """``"memory"``, ``"disk"`` or ``"per batch"`` once decided, on the first batch."""
        self._spec: torch.Tensor | np.ndarray | None = None  # (N, T, F) complex, or (.., 2)
        self._logmel: torch.Tensor | np.ndarray | None = None  # (N, M, T)

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
        return cls(
            clips,
            waves,
            num_classes,
            front_end,
            gains,
            cache_dir=cache_dir,
            show_progress=show_progress,
        )

    def waveform(self, index: int) -> np.ndarray:
        """Clip ``index`` as the networks hear it (peak-normalised), float32."""
        return np.asarray(self.waveforms[index], dtype=np.float32) * self.gains[index]

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_samples(self) -> int:
        return int(self.waveforms.shape[1])

    def batch(self, indices: Sequence[int] | np.ndarray) -> AudioBatch:
        """Rows ``indices`` with STFT and log-mel on the front end's device."""
        idx = np.asarray(indices, dtype=np.int64)
        gains = torch.from_numpy(self.gains[idx]).unsqueeze(1)
        wave = (torch.from_numpy(np.asarray(self.waveforms[idx])) * gains).to(self.front_end.device)
        if self._features_ready():
            spec, logmel = self._cached_features(idx)
        else:
            spec = self.front_end.stft(wave)
            logmel = self.front_end.logmel_from_magnitude(complex_magnitude(spec))
        stems = {
            name: (torch.from_numpy(np.asarray(waves[idx])) * gains).to(self.front_end.device)
            for name, waves in self.stem_waves.items()
        }
        return AudioBatch(
            clip_ids=[self.clips[i].clip_id for i in idx.tolist()],
            waveform=wave,
            spec=spec,
            logmel=logmel,
            targets=torch.from_numpy(self.targets[idx]).to(self.front_end.device),
            stems=stems,
        )

    # ------------------------------------------------------------------ features

    def _feature_shapes(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """Stored shapes: the STFT frames-major ``(N, T, F)``, the log-mel ``(N, M, T)``."""
        frames = num_frames(self.num_samples)
        return (len(self), frames, N_FFT // 2 + 1), (len(self), self.front_end.n_mels, frames)

    def feature_bytes(self) -> int:
        """What this split's cached features take: complex STFT and log-mel."""
        spec_shape, logmel_shape = self._feature_shapes()
        return 8 * math.prod(spec_shape) + 4 * math.prod(logmel_shape)

    def _features_ready(self) -> bool:
        if self.feature_storage is None:
            self.feature_storage = self._build_features() if self.cache_features else "per batch"
        return self.feature_storage in ("memory", "disk")

    def _cached_features(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of the cached features, with the memory layout the front end returns
        (``torch.stft``'s frames-major STFT, the log-mel as a transposed view): a
        convolution on the same values in another layout rounds differently, and the
        cache promises the same numbers, not only the same values."""
        device = self.front_end.device
        if isinstance(self._spec, torch.Tensor):
            rows = torch.from_numpy(idx)
            spec, logmel = self._spec[rows], self._logmel[rows]
        else:  # memory-mapped float32 (N, T, F, 2) and (N, M, T)
            spec = torch.view_as_complex(torch.from_numpy(np.ascontiguousarray(self._spec[idx])))
            logmel = torch.from_numpy(np.ascontiguousarray(self._logmel[idx]))
        spec = spec.to(device).transpose(-1, -2)  # (B, F, T) over (B, T, F) memory
        logmel = logmel.to(device).transpose(-1, -2).unsqueeze(1)  # (B, 1, T, M) over (B, M, T)
        return spec, logmel

    def _fill(self, spec_out, logmel_out) -> None:
        """Features of every clip, in chunks, into the given arrays (tensors or maps):
        the STFT frames-major ``(N, T, F)``, the log-mel bands-major ``(N, M, T)``."""
        saved, self.feature_storage = self.feature_storage, "per batch"
        try:
            starts = range(0, len(self), FEATURE_CHUNK)
            for start in tqdm(
                starts,
                desc=f"features of {len(self)} clips",
                unit="batch",
                disable=not self.show_progress or len(starts) < 4,
                leave=False,
            ):
                batch = self.batch(np.arange(start, min(start + FEATURE_CHUNK, len(self))))
                spec = batch.spec.cpu().transpose(-1, -2)
                logmel = batch.logmel.cpu()[:, 0].transpose(-1, -2)
                rows = slice(start, start + len(spec))
                if isinstance(spec_out, torch.Tensor):
                    spec_out[rows] = spec
                    logmel_out[rows] = logmel
                else:
                    spec_out[rows] = torch.view_as_real(spec.contiguous()).numpy()
                    logmel_out[rows] = logmel.numpy()
        finally:
            self.feature_storage = saved

    def _build_features(self) -> str:
        global _memory_in_use
        size = self.feature_bytes()
        spec_shape, logmel_shape = self._feature_shapes()
        if _memory_in_use + size <= FEATURE_MEMORY_BUDGET:
            self._spec = torch.empty(spec_shape, dtype=torch.complex64)
            self._logmel = torch.empty(logmel_shape, dtype=torch.float32)
            self._fill(self._spec, self._logmel)
            _memory_in_use += size
            weakref.finalize(self, _release_memory, size)
            return "memory"
        if self.cache_dir is not None and self._fits_on_disk(size):
            self._spec, self._logmel = self._disk_features(spec_shape, logmel_shape)
            if self._spec is not None:
                return "disk"
        return "per batch"

    def _fits_on_disk(self, size: int) -> bool:
        folder = self.cache_dir / "features"
        probe = folder if folder.exists() else self.cache_dir
        while not probe.exists():
            probe = probe.parent
        return size <= FEATURE_DISK_MARGIN * shutil.disk_usage(probe).free

    def _disk_features(self, spec_shape, logmel_shape):
        """The split's features memory-mapped from the cache folder, built if absent."""
        settings = asdict(self.front_end.features) | {
            "n_fft": N_FFT,
            "hop": HOP_LENGTH,
            "layout": "stft NTF, log-mel NMT",
        }
        digest = hashlib.sha256(
            (_files_key([c.path for c in self.clips], self.num_samples) + repr(settings)).encode()
        ).hexdigest()
        folder = self.cache_dir / "features"
        spec_file, logmel_file = (
            folder / f"{digest[:20]}.stft.npy",
            folder / f"{digest[:20]}.logmel.npy",
        )
        key = f"features:{digest}"
        with entry_lock(spec_file):
            spec = load_array(spec_file, key, mmap=True)
            logmel = load_array(logmel_file, key, mmap=True)
            if (
                spec is None
                or logmel is None
                or spec.shape != (*spec_shape, 2)
                or logmel.shape != logmel_shape
            ):

                def fill_spec(out: np.ndarray) -> None:  # both files in one pass
                    build_array(logmel_file, logmel_shape, lambda lm: self._fill(out, lm), key)

                build_array(spec_file, (*spec_shape, 2), fill_spec, key)
                spec = load_array(spec_file, key, mmap=True)
                logmel = load_array(logmel_file, key, mmap=True)
        return spec, logmel

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0
    ) -> Iterator[AudioBatch]:
        for rows in batch_rows(len(self), batch_size, shuffle=shuffle, seed=seed):
            yield self.batch(rows)

    def subset(self, indices: Sequence[int]) -> ClipSet:
        idx = list(indices)
        sub = ClipSet(
            [self.clips[i] for i in idx],
            self.waveforms[idx],
            self.targets.shape[1],
            self.front_end,
            self.gains[idx],
            cache_dir=self.cache_dir,
            show_progress=self.show_progress,
        )
        sub.stem_waves = {name: waves[idx] for name, waves in self.stem_waves.items()}
        sub.cache_features = self.cache_features
        return sub
