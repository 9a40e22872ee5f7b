"""The listening gallery: the interpretations a run wrote to ``listen/``, side by side
per clip, as small audio files and spectrograms on one colour scale.

Method: the runner writes, per fold and explainer, the first test clips' original and
interpretation, and on datasets with stems the first overlap and noise mixture with its
target stem (:mod:`l2i_bench.listening`). Here each clip is one
entry: the original (and the target), then one line per explainer with its player, its
interpretation's spectrogram and the gain it applied.

What is ours:
- **Audio**: Ogg Vorbis (mono, the suite's 44.1 kHz, libsndfile's quality at
  ``compression_level`` 0.7, about 50 kbit/s): a 2 s clip takes about 12 kB against
  176 kB of 16-bit WAV, so a five-fold report stays a few MB; every browser the report
  targets plays it. The same samples give the same bytes (:mod:`l2i_bench.ogg`), so a
  rebuild changes no published file that did not change.
- **Spectrograms**: the front end's ``|STFT|`` (1024/512, Hann) in dB, frequency pooled to 128 rows,
  written as small JPEGs with no axes (the page labels them); the input's, the target's
  and every interpretation's share one scale per clip, the input's peak down to 80 dB
  below it, so a quieter interpretation looks quieter.
- **Gain**: the run stores audio, not masks, so the gallery shows the gain the
  interpretation applied, ``|Y| / |X|`` per bin clipped to [0, 1] (0 where the input
  is more than 80 dB under its peak), on a fixed 0-1 scale. For a linear-domain mask
  this is the mask up to the resynthesis round trip; for a ``log1p`` mask it is the
  linear gain that mask amounts to.

Cost: one STFT, two JPEGs and one Vorbis encode per file; about 30 ms each on one core.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from matplotlib import image as mpimg

from l2i_bench.audio import SAMPLE_RATE, FrontEnd, write_audio
from l2i_bench.magnitude import complex_magnitude
from l2i_bench.results import fold_order

FLOOR_DB = 80.0
ROWS = 128
ORIGINAL, TARGET = "original", "target"


@dataclass
class Interpretation:
    explainer: str
    label: str
    audio: str = ""  # relative to the report folder
    spectrogram: str = ""
    gain: str = ""


@dataclass
class GalleryClip:
    fold: str
    clip_id: str
    original: Path
    target: Path | None = None
    interpretations: list[Interpretation] = field(default_factory=list)
    original_audio: str = ""
    original_spectrogram: str = ""
    target_audio: str = ""
    target_spectrogram: str = ""
    seconds: float = 0.0

    @property
    def condition(self) -> str:
        match = re.search(r"-(overlap|noise)$", self.clip_id)
        return match.group(1) if match else "test clip"


def collect(listen: Path, explainers: list[str], clips_per_fold: int) -> list[GalleryClip]:
    """The gallery's clips from ``listen/fold-*/<explainer>/<clip>--<label>.wav``: per
    fold the first ``clips_per_fold`` test clips and every mixture with a target, each
    with the explainers in ``explainers`` order (others last)."""
    order = {name: i for i, name in enumerate(explainers)}
    clips: dict[tuple[str, str], GalleryClip] = {}
    interpretations: dict[tuple[str, str], dict[str, Interpretation]] = {}
    for fold_dir in sorted(listen.glob("fold-*")):
        fold = fold_dir.name.removeprefix("fold-")
        for explainer_dir in sorted(p for p in fold_dir.iterdir() if p.is_dir()):
            for wav in sorted(explainer_dir.glob("*.wav")):
                clip_id, _, label = wav.stem.rpartition("--")
                if not clip_id:
                    continue
                key = (fold, clip_id)
                if label == ORIGINAL:
                    clips.setdefault(key, GalleryClip(fold, clip_id, wav))
                elif label == TARGET:
                    clips.setdefault(
                        key, GalleryClip(fold, clip_id, wav.with_name(f"{clip_id}--{ORIGINAL}.wav"))
                    )
                    clips[key].target = wav
                else:
                    interpretations.setdefault(key, {})[explainer_dir.name] = Interpretation(
                        explainer=explainer_dir.name, label=label, audio=str(wav)
                    )
    chosen = []
    for fold in sorted({f for f, _ in clips}, key=fold_order):
        own = [c for (f, _), c in sorted(clips.items()) if f == fold]
        plain = [c for c in own if c.condition == "test clip"][:clips_per_fold]
        mixtures = [c for c in own if c.condition != "test clip"]
        for clip in [*plain, *mixtures]:
            found = interpretations.get((clip.fold, clip.clip_id), {})
            clip.interpretations = sorted(
                found.values(), key=lambda i: (order.get(i.explainer, len(order)), i.explainer)
            )
            chosen.append(clip)
    return chosen


def within_budget(clips: list[GalleryClip], max_seconds: float) -> tuple[list[GalleryClip], int]:
    """The clips, whole folds at a time in fold order, while their interpretations hold
    at most ``max_seconds`` of audio (the first fold always), and how many clips were
    left out. A second of interpretation costs about 18 kB here (Vorbis and two JPEGs:
    2.6 MB for the 72 two-second ones of results/synth), so the default 400 s keeps a
    gallery near 7 MB, under the 10 MB a published report may take, and its build near
    10 s on 2 cores."""
    kept: list[GalleryClip] = []
    seconds = 0.0
    for fold in dict.fromkeys(c.fold for c in clips):
        own = [c for c in clips if c.fold == fold]
        cost = sum(sf.info(str(c.original)).duration * len(c.interpretations) for c in own)
        if kept and seconds + cost > max_seconds:
            break
        kept += own
        seconds += cost
    return kept, len(clips) - len(kept)


def render(clips: list[GalleryClip], report: Path, *, compression: float = 0.7) -> None:
    """Write the audio and spectrogram files of ``clips`` under ``report/media`` and
    fill in their relative paths."""
    media = report / "media"
    media.mkdir(parents=True, exist_ok=True)
    for n, clip in enumerate(clips):
        stem = f"f{clip.fold}-{n:03d}"
        wave = _read(clip.original)
        clip.seconds = len(wave) / SAMPLE_RATE
        source = magnitude(wave)
        top = 20 * np.log10(source.max() + 1e-10)
        clip.original_audio = _encode(wave, media / f"{stem}-original.ogg", report, compression)
        clip.original_spectrogram = _spectrogram(
            source, top, media / f"{stem}-original.jpg", report
        )
        if clip.target is not None and clip.target.is_file():
            target = _read(clip.target)
            clip.target_audio = _encode(target, media / f"{stem}-target.ogg", report, compression)
            clip.target_spectrogram = _spectrogram(
                magnitude(target), top, media / f"{stem}-target.jpg", report
            )
        for item in clip.interpretations:
            wave_i = _read(Path(item.audio))
            own = magnitude(wave_i)
            base = media / f"{stem}-{_safe(item.explainer)}"
            item.audio = _encode(wave_i, base.with_suffix(".ogg"), report, compression)
            item.spectrogram = _spectrogram(
                own, top, base.with_name(base.name + "-spec.jpg"), report
            )
            item.gain = _gain(own, source, top, base.with_name(base.name + "-gain.jpg"), report)


def save(clips: list[GalleryClip], report: Path, omitted: int = 0) -> None:
    """``report/gallery.json``: the rendered clips and how many the audio budget left
    out, so a later rebuild without ``listen/`` (a fresh clone) can carry the media
    over and still say what the gallery lacks (:func:`carry_over`)."""
    payload = {
        "omitted": omitted,
        "clips": [
            {
                **{k: v for k, v in asdict(c).items() if k not in ("original", "target")},
                "interpretations": [asdict(i) for i in c.interpretations],
            }
            for c in clips
        ],
    }
    (report / "gallery.json").write_text(json.dumps(payload, indent=1))


def carry_over(old_report: Path, report: Path) -> tuple[list[GalleryClip], int]:
    """The clips of a previous build with their media copied into ``report``, and how
    many clips that build left out (no clips and 0 when there is no previous build or its
    gallery.json is unreadable; a gallery.json written before 2026-12-07 is a bare
    list of clips and records no omissions)."""
    try:
        payload = json.loads((old_report / "gallery.json").read_text())
    except (OSError, ValueError):
        return [], 0
    if isinstance(payload, list):
        payload = {"omitted": 0, "clips": payload}
    if (old_report / "media").is_dir():
        shutil.copytree(old_report / "media", report / "media", dirs_exist_ok=True)
    clips = []
    for item in payload.get("clips", []):
        interpretations = [Interpretation(**i) for i in item.pop("interpretations", [])]
        clip = GalleryClip(original=Path(), **item)
        clip.interpretations = interpretations
        clips.append(clip)
    return clips, int(payload.get("omitted", 0))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _read(path: Path) -> np.ndarray:
    wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {rate} Hz, the suite writes {SAMPLE_RATE} Hz")
    return wave.mean(axis=1)


def magnitude(wave: np.ndarray) -> np.ndarray:
    """``|STFT|`` (F, T) by the front end's own STFT, so the gallery shows what the
    metrics and the classifier see."""
    return complex_magnitude(_front_end().stft(torch.from_numpy(wave)[None]))[0].numpy()


@functools.cache
def _front_end() -> FrontEnd:
    return FrontEnd("cpu")


def _pool(data: np.ndarray) -> np.ndarray:
    """Frequency pooled to :data:`ROWS` rows (mean over equal bands of bins)."""
    edges = np.linspace(0, data.shape[0], ROWS + 1).astype(int)
    return np.stack([data[a:b].mean(axis=0) for a, b in itertools.pairwise(edges)])


def _spectrogram(mag: np.ndarray, top: float, path: Path, report: Path) -> str:
    db = 20 * np.log10(_pool(mag) + 1e-10)
    mpimg.imsave(
        path,
        db,
        cmap="magma",
        vmin=top - FLOOR_DB,
        vmax=top,
        origin="lower",
        pil_kwargs={"quality": 85},
    )
    return path.relative_to(report).as_posix()


def gain_map(own: np.ndarray, source: np.ndarray, top: float) -> np.ndarray:
    """``|Y| / |X|`` per bin in [0, 1]; 0 where the input is more than
    :data:`FLOOR_DB` under ``top`` (its peak in dB), where the ratio is noise."""
    frames = min(own.shape[1], source.shape[1])
    own, source = own[:, :frames], source[:, :frames]
    audible = 20 * np.log10(source + 1e-10) > top - FLOOR_DB
    ratio = np.where(audible, own / np.maximum(source, 1e-10), 0.0)
    return np.clip(ratio, 0.0, 1.0)


def _gain(own: np.ndarray, source: np.ndarray, top: float, path: Path, report: Path) -> str:
    mpimg.imsave(
        path,
        _pool(gain_map(own, source, top)),
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        origin="lower",
        pil_kwargs={"quality": 85},
    )
    return path.relative_to(report).as_posix()


def _encode(wave: np.ndarray, path: Path, report: Path, compression: float) -> str:
    write_audio(path, wave, compression=compression)
    return path.relative_to(report).as_posix()
