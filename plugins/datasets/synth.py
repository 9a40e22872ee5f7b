"""``synth``: the embedded default dataset, generated procedurally on first use.

Why a synthetic set: it needs no download, it is generated in seconds, and its ground
truth is *known*: every clip is one event of a class over a quiet background, and the
event and background are kept as separate stems. That makes it the place where
explainers can be scored against the truth (does the mask keep the event?) and the
place where the paper's corruption experiments (appendix A.5.1) become measurable:

* ``overlap``: the clip plus an event of *another* class whose peak is
  :data:`OVERLAP_GAIN` times the target's peak (-6 dB, between the mixing gains 0.15
  and 1.0 of the L2I code's overlap pairs), placed so that the two events overlap in
  time;
* ``noise``: the clip plus white Gaussian noise with the same energy as the clip,
  i.e. 0 dB SNR, as ``ESC50(add_noise=True)`` does in the L2I code.

Each of the ten classes has its own spectro-temporal signature (steady tone, harmonic
tone with vibrato, up- and down-chirps, click train, band-limited noise burst, bell,
AM tone, siren, two-tone alternation); pitch, duration and onset are drawn per clip.

Exactness of the stems: every stem is quantised to the 16-bit grid *before* mixing,
and the mix is the integer sum of the quantised stems, so ``mix == target +
interference`` holds exactly after decoding (PCM values are multiples of 2**-15 and
their float32 sums are exact). This keeps the identity at half the size of 32-bit
float files; the files are lossless FLAC, which shrinks the mostly silent stems.

Layout of ``data_dir`` (default ``datasets/synth/``)::

    VERSION.json   generator version, seed and sizes; a mismatch triggers regeneration
    meta.csv       one row per mix (clean and conditions), with its stems
    audio/         the mixes (what the classifier hears)
    stems/         target events, backgrounds and interferences
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from l2i_bench import hookimpl
from l2i_bench.audio import SAMPLE_RATE
from l2i_bench.cache import entry_lock, process_alive
from l2i_bench.errors import BenchError
from l2i_bench.types import (
    ClassifierDefaults,
    Clip,
    Dataset,
    ExplainerDefaults,
    Split,
    Task,
)

GENERATED_MB = 168  # du -sh of a generated set (16-bit WAV mixes and stems)

GENERATOR_VERSION = "1"
"""Bump whenever a change below alters the generated audio: it forces regeneration."""

CLIP_SECONDS = 2.0  # 173 STFT frames: short enough for the CPU main job, T // 32 = 5
NUM_SAMPLES = round(CLIP_SECONDS * SAMPLE_RATE)
NUM_FOLDS = 5
CLIPS_PER_CLASS_PER_FOLD = 8
CONDITIONS = ("overlap", "noise")
CONDITION_CLIPS_PER_CLASS_PER_FOLD = 6  # 60 per test fold and condition: enough rows the
# classifier still gets right under 0 dB noise for a ground-truth mean worth reading
BACKGROUND_BANK = 16  # backgrounds are shared files: a clip's background stem is one of these
OVERLAP_GAIN = 0.5  # interferer peak / target peak (-6 dB)
NOISE_SNR_DB = 0.0  # clip energy / white-noise energy
EVENT_PEAK_RANGE = (0.1, 0.25)  # headroom: a 0 dB noise mix of a long tone stays below 0.8
BACKGROUND_DBFS_RANGE = (-60.0, -50.0)  # RMS of the pink-noise background
FADE_SECONDS = 0.005
PCM_SCALE = 32768.0
META_COLUMNS = (
    "clip_id",
    "filename",
    "fold",
    "label",
    "class_name",
    "condition",
    "target_stem",
    "interference_stem",
    "seed",
    "generator_version",
    "onset_s",
    "duration_s",
    "interferer_label",
    "gain",
    "snr_db",
)


# ------------------------------------------------------------------ event synthesis


def _time(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / SAMPLE_RATE


def _phase(freq: np.ndarray) -> np.ndarray:
    """Phase of a sinusoid with instantaneous frequency ``freq`` (Hz per sample)."""
    return 2.0 * np.pi * np.cumsum(freq) / SAMPLE_RATE


def _steady_tone(rng: np.random.Generator, n: int) -> np.ndarray:
    freq = rng.uniform(400.0, 1600.0)
    return np.sin(2 * np.pi * freq * _time(n) + rng.uniform(0, 2 * np.pi))


def _harmonic_vibrato(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = rng.uniform(150.0, 350.0)
    rate, depth = rng.uniform(5.0, 7.0), rng.uniform(0.02, 0.04)
    phase = _phase(f0 * (1.0 + depth * np.sin(2 * np.pi * rate * _time(n))))
    harmonics = [k for k in range(1, 11) if k * f0 * (1 + depth) < 16_000]
    return sum(np.sin(k * phase) / k for k in harmonics)


def _sweep(f_start: float, f_end: float, n: int) -> np.ndarray:
    """Exponential sweep: equal time per octave, a straight line on a mel axis."""
    freq = f_start * (f_end / f_start) ** (np.arange(n) / max(n - 1, 1))
    return np.sin(_phase(freq))


def _up_chirp(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = rng.uniform(300.0, 700.0)
    return _sweep(f0, f0 * rng.uniform(4.0, 8.0), n)


def _down_chirp(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = rng.uniform(2500.0, 5000.0)
    return _sweep(f0, f0 / rng.uniform(4.0, 8.0), n)


def _click_train(rng: np.random.Generator, n: int) -> np.ndarray:
    rate = rng.uniform(8.0, 16.0)
    click_len = int(0.004 * SAMPLE_RATE)
    decay = np.exp(-np.arange(click_len) / (0.0008 * SAMPLE_RATE))
    out = np.zeros(n)
    for start in np.arange(0.0, n / SAMPLE_RATE, 1.0 / rate):
        i = int(start * SAMPLE_RATE)
        seg = out[i : i + click_len]
        seg += rng.standard_normal(seg.shape[0]) * decay[: seg.shape[0]]
    return out


def _band_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    centre = rng.uniform(2500.0, 6000.0)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spectrum[(freqs < centre / np.sqrt(2)) | (freqs > centre * np.sqrt(2))] = 0.0
    return np.fft.irfft(spectrum, n)


def _bell(rng: np.random.Generator, n: int) -> np.ndarray:
    f0, tau = rng.uniform(300.0, 700.0), rng.uniform(0.25, 0.5)
    t = _time(n)
    ratios = (1.0, 2.76, 5.40, 8.93, 13.34)  # free-bar modes: inharmonic partials
    amps = (1.0, 0.6, 0.4, 0.25, 0.15)
    return sum(
        a * np.exp(-t * (1 + 0.5 * k) / tau) * np.sin(2 * np.pi * r * f0 * t)
        for k, (r, a) in enumerate(zip(ratios, amps, strict=True))
    )


def _am_tone(rng: np.random.Generator, n: int) -> np.ndarray:
    carrier, rate = rng.uniform(1000.0, 3000.0), rng.uniform(12.0, 25.0)
    t = _time(n)
    return (1.0 - 0.9 * (0.5 + 0.5 * np.cos(2 * np.pi * rate * t))) * np.sin(
        2 * np.pi * carrier * t
    )


def _siren(rng: np.random.Generator, n: int) -> np.ndarray:
    centre = rng.uniform(700.0, 1400.0)
    dev, rate = centre * rng.uniform(0.3, 0.5), rng.uniform(1.5, 3.0)
    return np.sin(_phase(centre + dev * np.sin(2 * np.pi * rate * _time(n))))


def _two_tone(rng: np.random.Generator, n: int) -> np.ndarray:
    low = rng.uniform(500.0, 1000.0)
    high = low * rng.uniform(1.25, 1.5)
    period = rng.uniform(0.12, 0.25)
    which = (_time(n) // period).astype(int) % 2
    return np.sin(_phase(np.where(which == 0, low, high)))


@dataclass(frozen=True)
class SoundClass:
    name: str
    make: Callable[[np.random.Generator, int], np.ndarray]
    duration: tuple[float, float]  # seconds
    fade: bool = True  # soft on/off ramps (not for sounds with their own attack/decay)


SOUND_CLASSES: tuple[SoundClass, ...] = (
    SoundClass("steady_tone", _steady_tone, (0.4, 1.2)),
    SoundClass("harmonic_vibrato", _harmonic_vibrato, (0.5, 1.2)),
    SoundClass("up_chirp", _up_chirp, (0.3, 0.8)),
    SoundClass("down_chirp", _down_chirp, (0.3, 0.8)),
    SoundClass("click_train", _click_train, (0.4, 1.0), fade=False),
    SoundClass("noise_burst", _band_noise, (0.3, 0.8)),
    SoundClass("bell", _bell, (0.8, 1.4), fade=False),
    SoundClass("am_tone", _am_tone, (0.5, 1.2)),
    SoundClass("siren", _siren, (1.0, 1.6)),
    SoundClass("two_tone", _two_tone, (0.6, 1.4)),
)


def make_event(label: int, rng: np.random.Generator) -> np.ndarray:
    """One event of class ``label``, peak-normalised to 1, of a random duration."""
    spec = SOUND_CLASSES[label]
    n = round(rng.uniform(*spec.duration) * SAMPLE_RATE)
    event = np.asarray(spec.make(rng, n), dtype=np.float64)
    if spec.fade:
        ramp = np.linspace(0.0, 1.0, round(FADE_SECONDS * SAMPLE_RATE))
        event[: ramp.size] *= ramp
        event[-ramp.size :] *= ramp[::-1]
    return event / np.max(np.abs(event))


def place(event: np.ndarray, onset: int) -> np.ndarray:
    out = np.zeros(NUM_SAMPLES)
    out[onset : onset + event.size] = event[: NUM_SAMPLES - onset]
    return out


def pink_noise(rng: np.random.Generator, rms: float) -> np.ndarray:
    """Pink (1/f power) noise with the given RMS: a quiet, natural-sounding floor."""
    spectrum = np.fft.rfft(rng.standard_normal(NUM_SAMPLES))
    freqs = np.fft.rfftfreq(NUM_SAMPLES, 1.0 / SAMPLE_RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, NUM_SAMPLES)
    return noise * (rms / np.sqrt(np.mean(noise**2)))


def quantise(wave: np.ndarray) -> np.ndarray:
    """Integer PCM-16 codes; stems are mixed as integers so the identity is exact."""
    return np.clip(np.round(wave * PCM_SCALE), -32768, 32767).astype(np.int32)


# ------------------------------------------------------------------ clip generation


@dataclass(frozen=True)
class ClipPlan:
    index: int
    fold: str
    label: int
    clip_id: str
    with_conditions: bool


def plan_clips() -> list[ClipPlan]:
    plans = []
    for fold in range(1, NUM_FOLDS + 1):
        for label in range(len(SOUND_CLASSES)):
            for k in range(CLIPS_PER_CLASS_PER_FOLD):
                index = len(plans)
                clip_id = f"f{fold}-c{label:02d}-{k:02d}"
                with_conditions = k < CONDITION_CLIPS_PER_CLASS_PER_FOLD
                plans.append(ClipPlan(index, str(fold), label, clip_id, with_conditions))
    return plans


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """One independent stream per (seed, clip, purpose): clips do not depend on order."""
    return np.random.default_rng([seed, index, stream])


def _write(path: Path, codes: np.ndarray) -> None:
    if np.any(np.abs(codes) > 32767):
        raise AssertionError(f"stem {path} would clip; reduce levels")  # internal invariant
    sf.write(str(path), codes.astype(np.int16), SAMPLE_RATE, subtype="PCM_16", format="FLAC")


def background_bank(seed: int) -> list[np.ndarray]:
    """The shared quiet backgrounds (PCM codes). Sharing them across clips keeps the data
    small; the background a clip gets is drawn independently of its class."""
    bank = []
    for j in range(BACKGROUND_BANK):
        rng = _rng(seed, 1_000_000 + j, 0)
        bank.append(quantise(pink_noise(rng, 10 ** (rng.uniform(*BACKGROUND_DBFS_RANGE) / 20))))
    return bank


def background_name(j: int) -> str:
    return f"stems/background-{j:02d}.flac"


def generate_clip(
    plan: ClipPlan, seed: int, root: Path, backgrounds: list[np.ndarray]
) -> list[dict[str, str]]:
    """Write one clip, its target stem and (for the condition subset) its overlap and
    noise versions; return its meta rows."""
    rng = _rng(seed, plan.index, 0)
    event = make_event(plan.label, rng)
    peak = rng.uniform(*EVENT_PEAK_RANGE)
    onset = int(rng.integers(0, NUM_SAMPLES - event.size))
    target = quantise(place(event * peak, onset))
    bg_index = int(rng.integers(BACKGROUND_BANK))
    background = backgrounds[bg_index]
    clean = target + background
    cid = plan.clip_id
    files = {f"audio/{cid}.flac": clean, f"stems/{cid}-target.flac": target}
    common = {
        "fold": plan.fold,
        "label": str(plan.label),
        "class_name": SOUND_CLASSES[plan.label].name,
        "target_stem": f"stems/{cid}-target.flac",
        "seed": str(seed),
        "generator_version": GENERATOR_VERSION,
        "onset_s": f"{onset / SAMPLE_RATE:.4f}",
        "duration_s": f"{event.size / SAMPLE_RATE:.4f}",
        "interferer_label": "",
        "gain": "",
        "snr_db": "",
    }
    rows = [
        {
            **common,
            "clip_id": cid,
            "filename": f"audio/{cid}.flac",
            "condition": "clean",
            "interference_stem": background_name(bg_index),
        }
    ]
    if plan.with_conditions:
        # Overlap: another class's event, overlapping the target in time.
        orng = _rng(seed, plan.index, 1)
        other = int(orng.choice([c for c in range(len(SOUND_CLASSES)) if c != plan.label]))
        o_event = make_event(other, orng)
        lo = max(0, onset - o_event.size // 2)
        hi = min(NUM_SAMPLES - o_event.size, onset + event.size // 2)
        o_onset = int(orng.integers(lo, hi + 1)) if hi >= lo else NUM_SAMPLES - o_event.size
        overlap_interf = background + quantise(place(o_event * OVERLAP_GAIN * peak, o_onset))
        # Noise: white noise with the clean clip's energy (0 dB SNR), as in the L2I code.
        nrng = _rng(seed, plan.index, 2)
        noise = np.clip(nrng.standard_normal(NUM_SAMPLES), -4.0, 4.0)  # no rare huge peaks
        clean_energy = float(np.sum((clean / PCM_SCALE) ** 2))
        noise *= np.sqrt(clean_energy / np.sum(noise**2) / 10 ** (NOISE_SNR_DB / 10))
        noise_interf = background + quantise(noise)
        files.update(
            {
                f"audio/{cid}-overlap.flac": target + overlap_interf,
                f"stems/{cid}-overlap-interference.flac": overlap_interf,
                f"audio/{cid}-noise.flac": target + noise_interf,
                f"stems/{cid}-noise-interference.flac": noise_interf,
            }
        )
        rows.append(
            {
                **common,
                "clip_id": f"{cid}-overlap",
                "filename": f"audio/{cid}-overlap.flac",
                "condition": "overlap",
                "interference_stem": f"stems/{cid}-overlap-interference.flac",
                "interferer_label": str(other),
                "gain": str(OVERLAP_GAIN),
            }
        )
        rows.append(
            {
                **common,
                "clip_id": f"{cid}-noise",
                "filename": f"audio/{cid}-noise.flac",
                "condition": "noise",
                "interference_stem": f"stems/{cid}-noise-interference.flac",
                "snr_db": str(NOISE_SNR_DB),
            }
        )
    for rel, codes in files.items():
        _write(root / rel, codes)
    return rows


def version_record(seed: int) -> dict[str, object]:
    """What identifies a generated set; any difference means regenerate."""
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "clip_seconds": CLIP_SECONDS,
        "folds": NUM_FOLDS,
        "clips_per_class_per_fold": CLIPS_PER_CLASS_PER_FOLD,
        "condition_clips_per_class_per_fold": CONDITION_CLIPS_PER_CLASS_PER_FOLD,
        "overlap_gain": OVERLAP_GAIN,
        "noise_snr_db": NOISE_SNR_DB,
        "classes": [c.name for c in SOUND_CLASSES],
    }


def generate(data_dir: Path, seed: int, *, show_progress: bool = True) -> None:
    """Generate the whole set into a temporary sibling folder, then move it into place,
    so an interrupted generation never leaves a folder that looks complete."""
    data_dir = Path(data_dir)
    _check_ours(data_dir)  # before spending time on generation
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = data_dir.parent / f".{data_dir.name}.tmp-{os.getpid()}"
    for stale in data_dir.parent.glob(f".{data_dir.name}.tmp-*"):  # a killed generation's
        pid = stale.name.rsplit("-", 1)[-1]
        if stale == tmp or (pid.isdigit() and not process_alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)
    (tmp / "audio").mkdir(parents=True)
    (tmp / "stems").mkdir()
    backgrounds = background_bank(seed)
    for j, codes in enumerate(backgrounds):
        _write(tmp / background_name(j), codes)
    rows: list[dict[str, str]] = []
    plans = plan_clips()
    for plan in tqdm(plans, desc="generating synth", unit="clip", disable=not show_progress):
        rows.extend(generate_clip(plan, seed, tmp, backgrounds))
    with open(tmp / "meta.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=META_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (tmp / "VERSION.json").write_text(json.dumps(version_record(seed), indent=2) + "\n")
    if data_dir.exists():
        _check_ours(data_dir)
        shutil.rmtree(data_dir)
    os.replace(tmp, data_dir)


def _check_ours(data_dir: Path) -> None:
    """A stale generated set may be replaced, never a folder this generator did not make."""
    if not data_dir.exists():
        return
    ours = data_dir.is_dir() and (
        (data_dir / "VERSION.json").is_file() or not any(data_dir.iterdir())
    )
    if not ours:
        raise BenchError(
            f"{data_dir} exists but holds no synth VERSION.json, so it was not generated "
            "by the synth dataset and will not be overwritten",
            "remove or rename that folder, or pass another --data-dir for synth",
        )


# ------------------------------------------------------------------ the plugin


class Synth(Dataset):
    """Ten synthetic sound classes with known stems and overlap/noise conditions."""

    name = "synth"
    description = (
        "Embedded default: 10 procedurally generated event classes over a quiet pink-noise "
        "background, 2 s clips, 5 folds x 80 clips, stems kept; overlap (-6 dB peak) and "
        "white-noise (0 dB SNR) conditions for 60 clips per fold. Generated in seconds, no network."
    )
    version = GENERATOR_VERSION
    task = Task.MULTICLASS
    clip_seconds = CLIP_SECONDS
    explainer_defaults = ExplainerDefaults(
        nmf_components=40,  # 10 classes: fewer than ESC-50's 100 for 50 classes (appendix A.3)
        relevance_threshold=0.2,
        interpreter_epochs=15,
        interpreter_lr=1e-3,
    )
    classifier_defaults = ClassifierDefaults(width=0.25, epochs=30, lr=1e-3, patience=6)
    # SLIME's 1000 perturbations per clip dominate a CPU run of this small demo set; 300
    # (7.5 per segment of its 40-cell grid on 2 s clips) at a third of the cost.
    explainer_options: ClassVar[Mapping[str, Mapping[str, str]]] = {"slime": {"samples": "300"}}

    def __init__(self, data_dir: Path | None = None, *, seed: int = 0, data_seed: int = 0) -> None:
        """``seed`` is the run's seed (unused: the splits are fixed folds); ``data_seed``
        fixes the generated audio, so that every run of the benchmark sees the same data
        whatever its training seed."""
        super().__init__(data_dir, seed=seed)
        self.data_seed = data_seed
        self._rows: list[dict[str, str]] | None = None

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in SOUND_CLASSES]

    def is_current(self) -> bool:
        version_file = self.data_dir / "VERSION.json"
        if not version_file.is_file() or not (self.data_dir / "meta.csv").is_file():
            return False
        try:
            recorded = json.loads(version_file.read_text())
        except (OSError, ValueError):
            return False
        return recorded == json.loads(json.dumps(version_record(self.data_seed)))

    def prepare(self, *, show_progress: bool | None = None) -> None:
        """Generate the data unless a set of this generator version and seed is there,
        saying where and how much first (a ``--data-dir`` pointed at the wrong empty
        folder should not fill it unannounced). Two first runs at once: the second waits
        for the first's set instead of generating (and replacing) it under its feet."""
        show = self.show_progress if show_progress is None else show_progress
        if not self.is_current():
            with entry_lock(
                self.data_dir, message=f"waiting for another run generating {self.data_dir}"
            ):
                if not self.is_current():
                    print(
                        f"synth: generating the embedded dataset into {self.data_dir} "
                        f"({GENERATED_MB} MB, seed {self.data_seed}; reused by later runs)",
                        file=sys.stderr,
                    )
                    generate(self.data_dir, self.data_seed, show_progress=show)
            self._rows = None
        missing = [
            r["filename"] for r in self._meta() if not (self.data_dir / r["filename"]).is_file()
        ]
        if missing:
            raise BenchError(
                f"{len(missing)} synth files listed in {self.data_dir / 'meta.csv'} are missing "
                f"(first: {self.data_dir / missing[0]})",
                f"delete {self.data_dir} and run again to regenerate it",
            )

    def _meta(self) -> list[dict[str, str]]:
        if self._rows is None:
            if not self.is_current():
                self.prepare()
            with open(self.data_dir / "meta.csv", newline="") as fh:
                self._rows = list(csv.DictReader(fh))
        return self._rows

    def default_folds(self) -> list[str]:
        """The embedded demo runs fold 1 unless ``--folds`` asks for more, so the main job
        takes minutes on a 2-core CPU; ``--folds 1,2,3,4,5`` gives mean and std."""
        return ["1"]

    def folds(self) -> list[str]:
        return [str(k) for k in range(1, NUM_FOLDS + 1)]

    def _clip(self, row: dict[str, str]) -> Clip:
        return Clip(
            clip_id=row["clip_id"],
            path=self.data_dir / row["filename"],
            labels=(int(row["label"]),),
            stems={
                "target": self.data_dir / row["target_stem"],
                "interference": self.data_dir / row["interference_stem"],
            },
            condition=row["condition"],
        )

    def split(self, fold: str) -> Split:
        fold = str(fold)
        if fold not in self.folds():
            raise BenchError(
                f"synth has no fold {fold!r}", f"choose one of {', '.join(self.folds())}"
            )
        valid_fold = str(int(fold) % NUM_FOLDS + 1)
        by_part: dict[str, list[Clip]] = {"train": [], "valid": [], "test": []}
        conditions: dict[str, list[Clip]] = {c: [] for c in CONDITIONS}
        for row in self._meta():
            if row["condition"] != "clean":
                if row["fold"] == fold:
                    conditions[row["condition"]].append(self._clip(row))
                continue
            part = (
                "test" if row["fold"] == fold else "valid" if row["fold"] == valid_fold else "train"
            )
            by_part[part].append(self._clip(row))
        return Split(
            fold=fold,
            train=by_part["train"],
            valid=by_part["valid"],
            test=by_part["test"],
            protocol=(
                f"synth 5-fold: test = fold {fold}, validation = fold {valid_fold}, "
                "train = the other 3 folds; conditions overlap and noise are the test-fold "
                f"clips mixed with another class's event at {OVERLAP_GAIN} x peak and with "
                f"white noise at {NOISE_SNR_DB:g} dB SNR"
            ),
            conditions=conditions,
        )

    def fingerprint(self) -> str:
        """The generator version and seed fully determine the audio."""
        return f"synth-v{GENERATOR_VERSION}-s{self.data_seed}"

    @classmethod
    def download(cls, data_dir: Path | None = None) -> Path:
        """Nothing to fetch: generates the set (the CLI's ``download synth``)."""
        dataset = cls(data_dir)
        dataset.prepare()
        return dataset.data_dir


@hookimpl
def register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    register(Synth)
