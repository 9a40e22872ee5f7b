"""Builds a miniature SONYC-UST v2 in the official layout, at test time (nothing binary
is committed): ``annotations.csv`` with the real header, ``dcase-ust-taxonomy.yaml``
and short generated ``audio/*.wav`` clips.

The annotation rows imitate the real file's structure so the target rules are
exercised: three volunteers per clip (noisy votes, proximity filled for their positive
fine tags), SONYC team rows that label one coarse group at a time (``-1`` elsewhere),
a verified row (``annotator_id == 0``) for every validate/test clip but one of each,
verified and team rows saying "all present" on two training clips (they must not
change the volunteer-based targets),
a training clip with only a verified row, and two volunteer ``-1`` cells (majority then means 1 of 1, not 1 of 3).

Class ``c``'s sound is a tone at ``300 * (c + 1)`` Hz with a class-specific amplitude
modulation over a quiet noise floor, so a classifier could in principle learn it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44100
COARSE = [
    "engine",
    "machinery-impact",
    "non-machinery-impact",
    "powered-saw",
    "alert-signal",
    "music",
    "human-voice",
    "dog",
]
FINE: dict[int, list[tuple[str, str]]] = {
    1: [("1", "small-sounding-engine"), ("2", "medium-sounding-engine"),
        ("3", "large-sounding-engine"), ("X", "engine-of-uncertain-size")],
    2: [("1", "rock-drill"), ("2", "jackhammer"), ("3", "hoe-ram"), ("4", "pile-driver"),
        ("X", "other-unknown-impact-machinery")],
    3: [("1", "non-machinery-impact")],
    4: [("1", "chainsaw"), ("2", "small-medium-rotating-saw"), ("3", "large-rotating-saw"),
        ("X", "other-unknown-powered-saw")],
    5: [("1", "car-horn"), ("2", "car-alarm"), ("3", "siren"), ("4", "reverse-beeper"),
        ("X", "other-unknown-alert-signal")],
    6: [("1", "stationary-music"), ("2", "mobile-music"), ("3", "ice-cream-truck"),
        ("X", "music-from-uncertain-source")],
    7: [("1", "person-or-small-group-talking"), ("2", "person-or-small-group-shouting"),
        ("3", "large-crowd"), ("4", "amplified-speech"), ("X", "other-unknown-human-voice")],
    8: [("1", "dog-barking-whining")],
}  # fmt: skip
IDENTITY = ["split", "sensor_id", "audio_filename", "annotator_id", "year", "week", "day",
            "hour", "borough", "block", "latitude", "longitude"]  # fmt: skip
FINE_PRESENCE = [f"{c}-{f}_{n}_presence" for c, tags in FINE.items() for f, n in tags]
COARSE_PRESENCE = [f"{i}_{n}_presence" for i, n in enumerate(COARSE, start=1)]
FINE_PROXIMITY = [f"{c}-{f}_{n}_proximity" for c, tags in FINE.items() for f, n in tags]
HEADER = IDENTITY + FINE_PRESENCE + COARSE_PRESENCE + FINE_PROXIMITY


@dataclass(frozen=True)
class SonycFixture:
    root: Path
    truth: dict[str, tuple[int, ...]]  # audio filename -> classes present in the audio
    no_verified: tuple[str, ...]  # validate/test clips without a verified row
    only_verified: tuple[str, ...]  # train clips without volunteer rows


def taxonomy_yaml() -> str:
    lines = ["# DCASE urban sound tagging taxonomy (miniature copy for tests)", "coarse:"]
    lines += [f"  {i}: {name}" for i, name in enumerate(COARSE, start=1)]
    lines.append("fine:")
    for c, tags in FINE.items():
        lines.append(f"  {c}:")
        lines += [f"    {f}: {n}" for f, n in tags]
    return "\n".join(lines) + "\n"


def _clip_audio(rng: np.random.Generator, labels: tuple[int, ...], seconds: float) -> np.ndarray:
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    wave = 0.01 * rng.standard_normal(n)
    for c in labels:
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + c) * t + rng.uniform(0, 2 * np.pi))
        wave += 0.1 * envelope * np.sin(2 * np.pi * 300.0 * (c + 1) * t)
    return np.clip(wave, -1, 1).astype(np.float32)


def _row(split: str, filename: str, annotator: int, sensor: int) -> dict[str, object]:
    return {
        "split": split, "sensor_id": sensor, "audio_filename": filename,
        "annotator_id": annotator, "year": 2019, "week": 10 + sensor % 40, "day": sensor % 7,
        "hour": 8 + sensor % 12, "borough": (1, 3, 4)[sensor % 3], "block": 500 + sensor,
        "latitude": 40.7 + sensor / 1000, "longitude": -73.9 - sensor / 1000,
    }  # fmt: skip


def _fill(row: dict, coarse: list[int], rng: np.random.Generator, proximity: bool) -> dict:
    """Fine, coarse and proximity columns from coarse values (1/0/-1): a positive group
    gets one random fine tag (the X tag included), the coarse column follows the fine
    ones as in the real file."""
    for c, tags in FINE.items():
        value = coarse[c - 1]
        chosen = int(rng.integers(len(tags))) if value == 1 else -1
        for k, (f, n) in enumerate(tags):
            fine = value if value == -1 else int(k == chosen)
            row[f"{c}-{f}_{n}_presence"] = fine
            near = ("near", "far", "notsure")[int(rng.integers(3))]
            row[f"{c}-{f}_{n}_proximity"] = near if proximity and fine == 1 else -1
        row[f"{c}_{COARSE[c - 1]}_presence"] = value
    return row


def build_sonyc_fixture(
    root: Path,
    *,
    counts: tuple[int, int, int] = (24, 8, 10),
    clip_seconds: float = 1.0,
    seed: int = 0,
) -> SonycFixture:
    """Write the miniature dataset under ``root`` and return what was put there."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "dcase-ust-taxonomy.yaml").write_text(taxonomy_yaml())
    rows: list[dict] = []
    truth: dict[str, tuple[int, ...]] = {}
    no_verified: list[str] = []
    only_verified: list[str] = []
    index = 0
    for split, count in zip(("train", "validate", "test"), counts, strict=True):
        for k in range(count):
            sensor = {"train": 1, "validate": 40, "test": 60}[split] + k % 5
            filename = f"{sensor:02d}_{index:06d}.wav"
            index += 1
            if split == "train" and k < 3:
                labels: tuple[int, ...] = ()  # background only: the NMF noise clips
            else:
                first = (k * 3) % 8  # every class is present in several training clips
                labels = tuple(sorted({first, int(rng.integers(8))} if k % 2 else {first}))
            truth[filename] = labels
            seconds = clip_seconds
            rate = RATE if k % 7 else RATE // 2  # some clips need resampling
            wave = _clip_audio(rng, labels, seconds)[:: RATE // rate]
            sf.write(str(root / "audio" / filename), wave, rate, subtype="PCM_16")
            present = [int(c in labels) for c in range(8)]
            volunteers = 3
            if split == "train" and k == 3:
                volunteers = 0  # only a verified row: no minority target
                only_verified.append(filename)
            for v in range(volunteers):
                votes = []
                for c in range(8):
                    if not labels:
                        votes.append(0)
                    elif present[c]:
                        votes.append(int(v == 0 or rng.random() < 0.6))
                    else:
                        votes.append(int(rng.random() < 0.08))
                if split == "train" and k == 5:  # cells left unannotated:
                    absent = min(set(range(8)) - set(labels))
                    votes[absent] = -1 if v == 1 else 0  # -1 is no vote
                    if v > 0:
                        votes[labels[0]] = -1  # majority is 1 of 1, not 1 of 3
                annotator = 1000 + int(rng.integers(1, 500))
                rows.append(_fill(_row(split, filename, annotator, sensor), votes, rng, True))
            verified = split != "train" or k in (3, 4, 6)
            if split != "train" and k == count - 1:
                verified = False  # leaves the evaluation set
                no_verified.append(filename)
            if verified:
                for member in (-11, -12):
                    for group in range(8):  # team members label one coarse group per row
                        team = [-1] * 8
                        team[group] = 1 if split == "train" else present[group]
                        rows.append(_fill(_row(split, filename, member, sensor), team, rng, False))
                agreed = [1] * 8 if split == "train" and k != 3 else present
                rows.append(_fill(_row(split, filename, 0, sensor), agreed, rng, False))
    order = rng.permutation(len(rows))  # the real file is not grouped by clip
    with open(root / "annotations.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER)
        writer.writeheader()
        writer.writerows(rows[i] for i in order)
    return SonycFixture(root, truth, tuple(no_verified), tuple(only_verified))
