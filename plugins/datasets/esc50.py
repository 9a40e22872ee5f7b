"""``esc50``: ESC-50 (Piczak 2015) in its official layout.

``data_dir/meta/esc50.csv`` lists the clips (columns ``filename, fold, target,
category``, plus ``esc10, src_file, take`` which are not needed) and ``data_dir/audio``
holds them; a listed ``.wav`` may be stored as ``.flac`` with the same stem (as in the
shared fold-4 copy). Classes are ordered by ``target``; names come from ``category``.

Protocols (``Split.protocol`` says which one ran; the run manifest records it):

* several folds present (normally all five): test = fold k, the other folds train, and
  a stratified 10 % of the training folds (seeded) is the validation split. The L2I
  code had no validation split; models are never selected on the test fold here.
* a single fold present (e.g. ``esc50-fold4``): a stratified within-fold split of its
  clips, per class 60 % train / 15 % valid / 25 % test (seeded). Numbers from it are
  *not* comparable with 5-fold ESC-50 results, which is why the protocol says so.

Folds keep fragments of one Freesound recording together, so the cross-fold protocol
is leak-free; the within-fold split keeps a recording's takes on one side when the
class has enough source recordings, and otherwise cannot (a stated fallback).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from l2i_bench import hookimpl
from l2i_bench.download import download as fetch
from l2i_bench.download import safe_extract
from l2i_bench.errors import BenchError
from l2i_bench.listing import SeenRows, listed_file, read_listing
from l2i_bench.types import (
    ClassifierDefaults,
    Clip,
    Dataset,
    ExplainerDefaults,
    Split,
    Task,
)

ESC50_URL = "https://github.com/karolpiczak/ESC-50/archive/master.zip"
REQUIRED_COLUMNS = ("filename", "fold", "target", "category")
CSV_PATH = Path("meta") / "esc50.csv"
NUM_CLASSES = 50
VALID_FRACTION = 0.10  # of each class's training clips, cross-fold protocol
WITHIN_FOLD_FRACTIONS = (0.60, 0.15, 0.25)  # train / valid / test, single-fold protocol
FIX = "run `l2i-bench download esc50`, or pass --data-dir pointing at an ESC-50 folder"


def _take(rng: np.random.Generator, items: Sequence[Clip], fractions: Sequence[float]) -> list:
    """Shuffle one class's clips and cut them by ``fractions`` (rounded, the remainder
    going to the first part). Every part after the first gets at least one clip when
    the class has enough of them, so no class is absent from valid or test."""
    order = [items[i] for i in rng.permutation(len(items))]
    counts = [round(f * len(order)) for f in fractions[1:]]
    if len(order) > len(fractions) - 1:
        counts = [max(1, c) for c in counts]
    parts, end = [], len(order)
    for count in reversed(counts):
        parts.append(order[end - count : end])
        end -= count
    parts.append(order[:end])
    return list(reversed(parts))


def _take_grouped(
    rng: np.random.Generator,
    items: Sequence[Clip],
    fractions: Sequence[float],
    group_of: Callable[[Clip], str],
) -> list[list[Clip]]:
    """Like :func:`_take`, but clips of one source recording (``src_file``) stay in one
    part, so takes A/B/C of one recording never sit in both train and test. The smallest
    groups seed the later parts (test, valid), the rest go where the deficit against
    the target count is largest. Classes with fewer sources than parts fall back to
    :func:`_take` (the protocol text says that this can happen)."""
    groups: dict[str, list[Clip]] = {}
    for clip in items:
        groups.setdefault(group_of(clip), []).append(clip)
    if len(groups) < len(fractions):
        return _take(rng, items, fractions)
    keys = sorted(groups)
    order = [keys[i] for i in rng.permutation(len(keys))]
    wanted = [f * len(items) for f in fractions]
    parts: list[list[Clip]] = [[] for _ in fractions]
    # The smallest sources seed the later parts (test, then valid) so that a big source
    # does not overfill them; order among equal sizes stays random.
    seeds = sorted(order, key=lambda key: len(groups[key]))[: len(fractions) - 1]
    for slot, key in zip(range(len(fractions) - 1, 0, -1), seeds, strict=True):
        parts[slot].extend(groups[key])
    for key in order:
        if key in seeds:
            continue
        deficits = [wanted[k] - len(parts[k]) for k in range(len(parts))]
        parts[max(range(len(parts)), key=lambda k: (deficits[k], k))].extend(groups[key])
    return parts


class ESC50(Dataset):
    """ESC-50: 2,000 five-second clips, 50 classes, 5 folds (official CSV and audio)."""

    name = "esc50"
    description = (
        "ESC-50 environmental sounds (official meta/esc50.csv + audio/, .wav or .flac): "
        "5 s clips, 50 classes; test = fold k with a stratified 10 % validation split of "
        "the other folds, or a stated within-fold split when only one fold is present."
    )
    version = "1"
    task = Task.MULTICLASS
    clip_seconds = 5.0
    explainer_defaults = ExplainerDefaults(
        nmf_components=100, relevance_threshold=0.2, interpreter_epochs=35, interpreter_lr=2e-4
    )  # L2I appendix A.3/A.4 for ESC-50
    classifier_defaults = ClassifierDefaults(width=0.5, epochs=60, lr=1e-3, patience=8)
    # width 0.5: the full-width Kumar CNN trained from scratch on 1,600 clips overfits and is
    # slow on CPU; the manifest records the width, and --option can raise it.

    def __init__(self, data_dir: Path | None = None, *, seed: int = 0, split_seed: int = 0) -> None:
        """``split_seed`` fixes the validation / within-fold split so that runs with
        different training seeds are scored on the same clips."""
        super().__init__(data_dir, seed=seed)
        self.split_seed = split_seed
        self._clips: list[tuple[int, Clip]] | None = None  # (fold, clip)
        self._names: list[str] | None = None
        self._sources: dict[str, str] = {}  # clip id -> src_file (recording of origin)

    # ----------------------------------------------------------------- loading

    @property
    def csv_path(self) -> Path:
        return self.data_dir / CSV_PATH

    def prepare(self) -> None:
        self._load()

    def _read_rows(self) -> list[dict[str, str]]:
        if not self.data_dir.is_dir():
            raise BenchError(f"ESC-50 data folder not found: {self.data_dir}", FIX)
        if not self.csv_path.is_file():
            raise BenchError(f"ESC-50 metadata file not found: {self.csv_path}", FIX)
        with read_listing(self.csv_path, FIX) as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise BenchError(
                    f"{self.csv_path} lacks the column(s) {', '.join(missing)} "
                    f"(found: {', '.join(columns) or 'none'})",
                    "use the official meta/esc50.csv (columns filename, fold, target, "
                    f"category, ...); {FIX}",
                )
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
        if not rows:
            raise BenchError(f"{self.csv_path} lists no clips", FIX)
        return rows

    def _audio_path(self, filename: str, line: int) -> Path:
        listed = listed_file(self.data_dir / "audio", filename, self.csv_path, line, FIX)
        if listed.is_file():
            return listed
        flac = listed.with_suffix(".flac")
        if flac.is_file():
            return flac
        raise BenchError(
            f"audio file listed in {self.csv_path} not found: {listed} (nor {flac.name})",
            f"restore the file, or {FIX}",
        )

    def _load(self) -> list[tuple[int, Clip]]:
        if self._clips is not None:
            return self._clips
        names: dict[int, str] = {}
        clips = []
        seen = SeenRows(self.csv_path, FIX)
        for line, row in enumerate(self._read_rows(), start=2):
            try:
                fold, target = int(row["fold"]), int(row["target"])
            except ValueError as err:
                raise BenchError(
                    f"{self.csv_path} line {line}: fold and target must be integers "
                    f"(got fold={row['fold']!r}, target={row['target']!r})",
                    f"repair the file; {FIX}",
                ) from err
            if not 0 <= target < NUM_CLASSES:
                raise BenchError(
                    f"{self.csv_path} line {line}: target {target} is outside ESC-50's "
                    f"classes 0-{NUM_CLASSES - 1}",
                    f"repair the file; {FIX}",
                )
            if names.setdefault(target, row["category"]) != row["category"]:
                raise BenchError(
                    f"{self.csv_path} line {line}: target {target} is named both "
                    f"{names[target]!r} and {row['category']!r}",
                    f"repair the file; {FIX}",
                )
            seen.add(row["filename"], line, f"clip {row['filename']!r}")
            path = self._audio_path(row["filename"], line)
            clip_id = Path(row["filename"]).stem
            self._sources[clip_id] = row.get("src_file") or clip_id
            clips.append((fold, Clip(clip_id, path, (target,))))
        self._names = [names.get(t, f"class_{t}") for t in range(max(names) + 1)]
        self._clips = clips
        return clips

    @property
    def class_names(self) -> list[str]:
        self._load()
        assert self._names is not None
        return list(self._names)

    def folds(self) -> list[str]:
        return [str(f) for f in sorted({fold for fold, _ in self._load()})]

    # ------------------------------------------------------------------ splits

    def split(self, fold: str) -> Split:
        fold = str(fold)
        present = self.folds()
        if fold not in present:
            raise BenchError(
                f"ESC-50 fold {fold!r} is not in {self.csv_path} (folds present: "
                f"{', '.join(present)})",
                f"choose one of {', '.join(present)}, or {FIX} to get all five folds",
            )
        if len(present) == 1:
            return self._within_fold_split(fold)
        return self._cross_fold_split(fold, present)

    def _source(self, clip: Clip) -> str:
        return self._sources.get(clip.clip_id, clip.clip_id)

    def _by_class(self, clips: list[Clip]) -> dict[int, list[Clip]]:
        groups: dict[int, list[Clip]] = {}
        for clip in sorted(clips, key=lambda c: c.clip_id):
            groups.setdefault(clip.labels[0], []).append(clip)
        return groups

    def _cross_fold_split(self, fold: str, present: list[str]) -> Split:
        test = [c for f, c in self._load() if str(f) == fold]
        pool = [c for f, c in self._load() if str(f) != fold]
        train, valid = [], []
        for label, group in sorted(self._by_class(pool).items()):
            rng = np.random.default_rng([self.split_seed, label, int(fold)])
            tr, va = _take_grouped(rng, group, (1 - VALID_FRACTION, VALID_FRACTION), self._source)
            train += tr
            valid += va
        others = [f for f in present if f != fold]
        note = "" if len(present) == 5 else f" (only folds {', '.join(present)} are present)"
        protocol = (
            f"ESC-50 cross-fold: test = fold {fold}; train = folds {', '.join(others)} minus "
            f"about {VALID_FRACTION:.0%} per class (whole source recordings) held out for "
            "validation "
            f"(split seed {self.split_seed}){note}"
        )
        return Split(fold, train, valid, sorted(test, key=lambda c: c.clip_id), protocol)

    def _within_fold_split(self, fold: str) -> Split:
        clips = [c for f, c in self._load() if str(f) == fold]
        train, valid, test = [], [], []
        for label, group in sorted(self._by_class(clips).items()):
            rng = np.random.default_rng([self.split_seed, label, int(fold)])
            tr, va, te = _take_grouped(rng, group, WITHIN_FOLD_FRACTIONS, self._source)
            train += tr
            valid += va
            test += te
        a, b, c = (f"{x:.0%}" for x in WITHIN_FOLD_FRACTIONS)
        protocol = (
            f"ESC-50 within-fold split: only fold {fold} is present in {self.data_dir}, so its "
            f"clips are split per class into about {a} train / {b} valid / {c} test "
            f"(stratified, split seed {self.split_seed}), keeping the takes of one source "
            "recording together where a class has at least three sources; not comparable "
            "with 5-fold ESC-50 results"
        )
        return Split(fold, train, valid, test, protocol)

    def fingerprint(self) -> str:
        """The CSV bytes plus each audio file's name and size: cheap (no decoding) and it
        changes whenever a file is added, removed, renamed or re-encoded."""
        digest = hashlib.sha256(f"{self.name}:{self.version}".encode())
        digest.update(self.csv_path.read_bytes() if self.csv_path.is_file() else b"")
        for _, clip in self._load():
            digest.update(f"{clip.path.name}:{clip.path.stat().st_size}".encode())
        return digest.hexdigest()[:16]

    # ---------------------------------------------------------------- download

    @classmethod
    def download(
        cls, data_dir: Path | None = None, *, url: str = ESC50_URL, show_progress: bool = True
    ) -> Path:
        """Fetch the official archive (about 600 MB) and unpack it so that
        ``data_dir/meta/esc50.csv`` exists; record its sha256 in ``DOWNLOAD.json``.

        GitHub-generated zips are not byte-stable, so no sha256 is pinned: the computed
        one is recorded for provenance, and the unpacked CSV and audio are checked.
        """
        data_dir = Path(data_dir) if data_dir is not None else cls.default_data_dir()
        if (data_dir / CSV_PATH).is_file():
            raise BenchError(
                f"{data_dir / CSV_PATH} already exists; not downloading over it",
                f"delete {data_dir} first to download again, or use it as it is",
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=data_dir, prefix=".download-") as tmp:
            archive = Path(tmp) / "ESC-50-master.zip"
            sha256 = fetch(url, archive, show_progress=show_progress)
            unpacked = Path(tmp) / "unpacked"
            safe_extract(archive, unpacked)
            roots = [p.parent.parent for p in unpacked.glob("**/meta/esc50.csv")]
            if len(roots) != 1:
                raise BenchError(
                    f"the archive from {url} holds {len(roots)} meta/esc50.csv files, not one",
                    "check the URL points at the official ESC-50 archive",
                )
            for item in roots[0].iterdir():
                dest = data_dir / item.name
                if dest.exists():
                    shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
                os.replace(item, dest)
            size = archive.stat().st_size
        record = {
            "url": url,
            "sha256": sha256,
            "size_bytes": size,
            "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (data_dir / "DOWNLOAD.json").write_text(json.dumps(record, indent=2) + "\n")
        cls(data_dir).prepare()  # every listed file must now be there
        return data_dir


@hookimpl
def register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    register(ESC50)
