"""``sonyc-ust``: SONYC Urban Sound Tagging v2 (Cartwright et al. 2020), multilabel.

Reads the official v2.3 layout (Zenodo record 3966543): ``data_dir/annotations.csv``,
``data_dir/dcase-ust-taxonomy.yaml`` and ``data_dir/audio/*.wav`` (10 s clips; other
rates are resampled by the shared reader).

``annotations.csv`` has one row per *annotation*, many per clip: ``annotator_id > 0``
is a Zooniverse volunteer, ``< 0`` a SONYC team member (who labelled one coarse group
at a time, so the other groups hold ``-1``), ``0`` the team's verified ground truth.
The 8 coarse classes are read from their ``<n>_<name>_presence`` columns *by name*
(the L2I code assumed they were the last 8 columns; the official file does not
promise that).

Targets (``target_mode``):

* ``minority`` (default; DCASE 2020 baseline and L2I): a training clip is positive
  for a class if at least one volunteer said 1. Team and verified rows are ignored for
  training, as in the DCASE baseline (the L2I code summed every row, team rows with
  their ``-1`` cells included; we ignore ``-1`` cells explicitly).
* ``majority``: positive if more than half of the volunteers who annotated the class
  said 1 (2 of 3 in practice).
* ``verified``: every split, training included, from the verified rows only.

Validation and test targets always come from the verified row (``annotator_id == 0``);
clips of those splits without one leave the evaluation sets, and the split's
``protocol`` says how many. There is one fold, ``official``: the dataset's own
train / validate / test split (sensor-disjoint train/validate, later-in-time test).

The taxonomy file is checked with a tiny reader for the subset of YAML it uses (a
top-level ``coarse:`` block mapping ids to names), so PyYAML is not a dependency.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

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

COARSE_CLASSES: tuple[str, ...] = (
    "engine",
    "machinery-impact",
    "non-machinery-impact",
    "powered-saw",
    "alert-signal",
    "music",
    "human-voice",
    "dog",
)
"""The 8 coarse classes in the official order (taxonomy ids 1..8)."""

L2I_POS_WEIGHT: tuple[float, ...] = (1.0, 3.0, 3.0, 3.0, 3.0, 5.0, 1.5, 10.0)
"""Per-class BCE positive weights of the L2I SONYC-UST classifier (method notes §1.4)."""

ANNOTATIONS = "annotations.csv"
TAXONOMY = "dcase-ust-taxonomy.yaml"
AUDIO_DIR = "audio"
FOLD = "official"
SPLIT_NAMES = {"train": "train", "validate": "valid", "test": "test"}
TARGET_MODES = ("minority", "majority", "verified")
REQUIRED_COLUMNS = ("split", "audio_filename", "annotator_id")

ZENODO_RECORD = "3966543"
ZENODO_URL = f"https://zenodo.org/records/{ZENODO_RECORD}/files"
ZENODO_FILES: dict[str, str | None] = {
    "annotations.csv": "70b507b15bb4cfcce4870925302f276b",
    "dcase-ust-taxonomy.yaml": "6c1cca1c4c383a6ebb0cb71cb74fe3a9",
    "audio-0.tar.gz": "bbb4dbae7d2e58e18d24878b9ee1eb51",
    "audio-1.tar.gz": "7c369ff37ac6a1fdd8493fdffe62e0a1",
    "audio-2.tar.gz": "412241c063d7f196953d3dd1c44aeb5e",
    "audio-3.tar.gz": "d2a872392d95993a2c238d305b940812",
    "audio-4.tar.gz": "b15b0e0cb3f8584259ef0d24293a9be3",
    "audio-5.tar.gz": "de745f887067433757a2f2c8f99f99bb",
    "audio-6.tar.gz": "b0286c67468369d66336f6f5ddede31f",
    "audio-7.tar.gz": "ff300183ab7a9d3f2f74c3b730ffeb52",
    "audio-8.tar.gz": "7be76b821fa6dbe20f6b50ca440e1024",
    "audio-9.tar.gz": "959f7edfbb26eadad9865069f38aa9dd",
    "audio-10.tar.gz": "84e94de273666c537a3e6b709ee88d9b",
    "audio-11.tar.gz": "44fe1f43121a7d1178aa0cdf7477793b",
    "audio-12.tar.gz": "a7eb21011f460b5ac289f8e285e875ab",
    "audio-13.tar.gz": "27945a8b1008eec787f97213164951e6",
    "audio-14.tar.gz": "fb8c7d81c3bde3a0c86c1e55e6a85a24",
    "audio-15.tar.gz": "f6af9b65d876ef96d199b9e5f0473cb9",
    "audio-16.tar.gz": "e8337c61a90c30989d500f950fbe443a",
    "audio-17.tar.gz": "3e47e85eb4564a30fe7f442ee97ec7b9",
    "audio-18.tar.gz": "c6b2ef4d0d5b7269d465c469cdbbdc4b",
}
"""Files of Zenodo record 3966543 (SONYC-UST v2.3) and their md5 (soundata's REMOTES)."""

FIX = (
    "run `l2i-bench download sonyc-ust` (about 16 GB from Zenodo record 3966543), or pass "
    "--data-dir pointing at a folder with annotations.csv, dcase-ust-taxonomy.yaml and audio/"
)


def presence_column(index: int, name: str) -> str:
    """The coarse presence column of taxonomy id ``index`` (1-based), e.g. ``1_engine_presence``."""
    return f"{index}_{name}_presence"


# ------------------------------------------------------------------- taxonomy


_KEY_VALUE = re.compile(r"^(\s+)(['\"]?)([^'\":#]+?)\2\s*:\s*(.*?)\s*$")


def _unquote(text: str) -> str:
    text = text.split(" #", 1)[0].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def read_coarse_taxonomy(path: Path) -> dict[str, str]:
    """The ``coarse`` mapping (id -> name, both as text) of a DCASE-UST taxonomy file.

    Reads only the YAML subset the official file uses for it: a top-level ``coarse:``
    key followed by an indented block of ``id: name`` lines (or a one-line flow
    mapping ``coarse: {1: engine, ...}``); comments and other keys are skipped.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    heads = [re.match(r"^coarse\s*:\s*(.*?)\s*$", line.split("#", 1)[0]) for line in lines]
    start = next((i for i, head in enumerate(heads) if head), None)
    if start is None:
        raise BenchError(
            f"{path} has no top-level `coarse:` mapping, so it is not a DCASE-UST taxonomy file",
            f"restore the official {TAXONOMY}; {FIX}",
        )
    head = heads[start]
    assert head is not None
    inline = head.group(1)
    mapping: dict[str, str] = {}
    if inline:
        if not (inline.startswith("{") and inline.endswith("}")):
            raise BenchError(f"{path}: cannot read `coarse: {inline}`", f"restore it; {FIX}")
        for item in filter(None, (p.strip() for p in inline[1:-1].split(","))):
            key, _, value = item.partition(":")
            mapping[_unquote(key)] = _unquote(value)
        return mapping
    for line in lines[start + 1 :]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _KEY_VALUE.match(line)
        if not line[0].isspace():
            break  # the next top-level key ends the block
        if match is None or not match.group(4):
            raise BenchError(
                f"{path}: cannot read the line {line.strip()!r} of the `coarse:` block "
                "(expected `id: name`)",
                f"restore the official {TAXONOMY}; {FIX}",
            )
        mapping[match.group(3).strip()] = _unquote(match.group(4))
    return mapping


def check_taxonomy(path: Path) -> None:
    """Fail unless the taxonomy's coarse classes are the 8 this plugin reads, in order."""
    if not Path(path).is_file():
        raise BenchError(f"SONYC-UST taxonomy file not found: {path}", FIX)
    found = read_coarse_taxonomy(path)
    expected = {str(i): name for i, name in enumerate(COARSE_CLASSES, start=1)}
    if found != expected:
        shown = ", ".join(f"{k}: {v}" for k, v in found.items()) or "nothing"
        raise BenchError(
            f"{path} lists the coarse classes {{{shown}}}, not the DCASE-UST v2 ones "
            f"({', '.join(f'{k}: {v}' for k, v in expected.items())})",
            f"use the taxonomy of SONYC-UST v2 (Zenodo record {ZENODO_RECORD}); {FIX}",
        )


# ---------------------------------------------------------------- annotations


@dataclass
class ClipVotes:
    """What the annotation rows of one clip say, per coarse class."""

    split: str
    volunteers: int = 0  # volunteer rows seen
    votes: list[int] = field(default_factory=lambda: [0] * len(COARSE_CLASSES))  # volunteer 1s
    annotated: list[int] = field(default_factory=lambda: [0] * len(COARSE_CLASSES))  # non -1
    verified: list[int] | None = None  # union of the annotator_id == 0 rows, if any

    def targets(self, mode: str) -> tuple[int, ...] | None:
        """Positive class indices under ``mode``, or ``None`` when the clip has no row
        that mode can use (no volunteer rows, or no verified row)."""
        if mode == "verified":
            return None if self.verified is None else _positives(self.verified)
        if self.volunteers == 0:
            return None
        if mode == "minority":
            return _positives([int(v >= 1) for v in self.votes])
        return _positives([int(v > n / 2) for v, n in zip(self.votes, self.annotated, strict=True)])


def _positives(flags: Sequence[int]) -> tuple[int, ...]:
    return tuple(i for i, flag in enumerate(flags) if flag)


def _cell(value: str, where: str) -> int:
    """A presence cell: 1, 0 or -1 (not annotated); an empty cell counts as -1."""
    text = value.strip()
    if not text:
        return -1
    try:
        number = int(float(text))
    except ValueError:
        number = None
    if number not in (1, 0, -1):
        raise BenchError(
            f"{where}: presence value {value!r} is not 1, 0 or -1",
            f"repair the file or restore the official {ANNOTATIONS}",
        )
    return number


def read_annotations(path: Path) -> dict[str, ClipVotes]:
    """Per audio filename, the coarse votes of all its annotation rows (file order).

    Columns are looked up by name; a missing column is an error naming it. ``-1``
    cells count neither as a vote nor as an annotation of that class.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"SONYC-UST annotation file not found: {path}", FIX)
    columns = [presence_column(i, n) for i, n in enumerate(COARSE_CLASSES, start=1)]
    clips: dict[str, ClipVotes] = {}
    seen = SeenRows(path, FIX)
    with read_listing(path, FIX) as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in (*REQUIRED_COLUMNS, *columns) if c not in header]
        if missing:
            raise BenchError(
                f"{path} lacks the column(s) {', '.join(missing)}",
                "use the official SONYC-UST v2 annotations.csv (columns split, sensor_id, "
                "audio_filename, annotator_id, ..., <n>_<coarse name>_presence); " + FIX,
            )
        at = {name: header.index(name) for name in (*REQUIRED_COLUMNS, *columns)}
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path} line {line}"
            if len(row) < len(header):
                raise BenchError(
                    f"{where} has {len(row)} fields, the header {len(header)}",
                    f"repair the file or restore the official {ANNOTATIONS}",
                )
            split = row[at["split"]].strip()
            if split not in SPLIT_NAMES:
                raise BenchError(
                    f"{where}: unknown split {split!r} (expected train, validate or test)",
                    f"repair the file or restore the official {ANNOTATIONS}",
                )
            name = row[at["audio_filename"]].strip()
            try:
                annotator = int(float(row[at["annotator_id"]]))
            except ValueError as err:
                raise BenchError(
                    f"{where}: annotator_id {row[at['annotator_id']]!r} is not an integer",
                    f"repair the file or restore the official {ANNOTATIONS}",
                ) from err
            listed_file(Path(AUDIO_DIR), name, path, line, FIX)
            # Team members (annotator_id < 0) write one row per coarse group, so only a
            # row repeated whole is a duplicate.
            seen.add(tuple(c.strip() for c in row), line, f"the whole row for {name!r}")
            votes = clips.setdefault(name, ClipVotes(split))
            if votes.split != split:
                raise BenchError(
                    f"{where}: {name} is in split {split!r} here and {votes.split!r} above",
                    f"repair the file or restore the official {ANNOTATIONS}",
                )
            cells = [_cell(row[at[c]], where) for c in columns]
            if annotator > 0:
                votes.volunteers += 1
                for c, value in enumerate(cells):
                    votes.votes[c] += value == 1
                    votes.annotated[c] += value != -1
            elif annotator == 0:
                previous = votes.verified or [0] * len(columns)
                votes.verified = [int(p or v == 1) for p, v in zip(previous, cells, strict=True)]
    if not clips:
        raise BenchError(f"{path} lists no annotations", FIX)
    return clips


# -------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class SonycClassifierDefaults(ClassifierDefaults):
    """Classifier defaults with the per-class BCE positive weight. ``ClassifierDefaults``
    has no ``pos_weight`` yet; the runner copies every field that ``ClassifierConfig``
    also has, so declaring it here is enough for it to reach the loss."""

    pos_weight: tuple[float, ...] | None = None


class SonycUST(Dataset):
    """SONYC-UST v2: 10 s urban recordings, 8 coarse multilabel classes, official split."""

    name = "sonyc-ust"
    description = (
        "SONYC-UST v2 urban sound tagging (official annotations.csv, dcase-ust-taxonomy.yaml, "
        "audio/): 10 s clips, 8 coarse classes, multilabel; official train/validate/test "
        "split, training targets by minority vote of volunteers, evaluation on verified labels."
    )
    version = "1"
    task = Task.MULTILABEL
    clip_seconds = 10.0
    explainer_defaults = ExplainerDefaults(
        nmf_components=80,
        relevance_threshold=0.3,
        dictionary_strategy="noise_then_class",
        interpreter_epochs=21,
        interpreter_lr=5e-4,
    )  # L2I appendix A.1 (10 components x 8 classes after 10 noise ones) and A.4
    explainer_options: Mapping[str, Mapping[str, str]] = {"vibi": {"epochs": "30"}}  # A.7
    classifier_defaults = SonycClassifierDefaults(
        width=0.5, epochs=30, lr=1e-3, batch_size=32, patience=5, pos_weight=L2I_POS_WEIGHT
    )
    # width 0.5: the paper fine-tuned an AudioSet-pretrained full-width CNN for 10 epochs;
    # from scratch, half the channels trains about 3x faster on 13.5k ten-second clips and
    # is the same choice as for ESC-50 (--classifier width=1 restores the paper's width,
    # --classifier pretrained=FILE loads Kumar et al.'s weights). Fewer epochs and a
    # shorter patience than ESC-50 because each epoch is about 17x larger.

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        seed: int = 0,
        target_mode: str = "minority",
        clip_seconds: float | None = None,
    ) -> None:
        """``target_mode`` picks the training targets (see the module docstring);
        ``clip_seconds`` overrides the 10 s clip length (tests use short clips)."""
        super().__init__(data_dir, seed=seed)
        if target_mode not in TARGET_MODES:
            raise BenchError(
                f"unknown SONYC-UST target mode {target_mode!r}",
                f"use one of {', '.join(TARGET_MODES)}",
            )
        self.target_mode = target_mode
        if clip_seconds is not None:
            if clip_seconds <= 0:
                raise BenchError(f"clip_seconds must be > 0, got {clip_seconds}")
            self.clip_seconds = float(clip_seconds)
        self._split: Split | None = None

    @property
    def annotations_path(self) -> Path:
        return self.data_dir / ANNOTATIONS

    @property
    def taxonomy_path(self) -> Path:
        return self.data_dir / TAXONOMY

    @property
    def class_names(self) -> list[str]:
        return list(COARSE_CLASSES)

    def folds(self) -> list[str]:
        return [FOLD]

    def prepare(self) -> None:
        self._load()

    def split(self, fold: str) -> Split:
        if str(fold) != FOLD:
            raise BenchError(
                f"SONYC-UST has no fold {fold!r}; its only fold is {FOLD!r} (the official "
                "train/validate/test split)",
                f"pass --folds {FOLD} or leave --folds out",
            )
        return self._load()

    # ----------------------------------------------------------------- loading

    def _load(self) -> Split:
        if self._split is not None:
            return self._split
        if not self.data_dir.is_dir():
            raise BenchError(f"SONYC-UST data folder not found: {self.data_dir}", FIX)
        check_taxonomy(self.taxonomy_path)
        votes = read_annotations(self.annotations_path)
        parts: dict[str, list[Clip]] = {"train": [], "valid": [], "test": []}
        listed: dict[str, int] = dict.fromkeys(parts, 0)
        dropped: dict[str, int] = dict.fromkeys(parts, 0)
        missing_audio: list[Path] = []
        for filename in sorted(votes):
            clip_votes = votes[filename]
            part = SPLIT_NAMES[clip_votes.split]
            listed[part] += 1
            mode = self.target_mode if part == "train" else "verified"
            labels = clip_votes.targets(mode)
            if labels is None:
                dropped[part] += 1
                continue
            path = self.data_dir / AUDIO_DIR / filename
            if not path.is_file():
                missing_audio.append(path)
                continue
            parts[part].append(Clip(Path(filename).stem, path, labels))
        if missing_audio:
            raise BenchError(
                f"{len(missing_audio)} audio file(s) listed in {self.annotations_path} are "
                f"missing, e.g. {missing_audio[0]}",
                f"restore them (all audio-*.tar.gz archives unpack into {AUDIO_DIR}/), or {FIX}",
            )
        self._split = Split(
            FOLD, parts["train"], parts["valid"], parts["test"], self._protocol(listed, dropped)
        )
        return self._split

    def _protocol(self, listed: Mapping[str, int], dropped: Mapping[str, int]) -> str:
        rule = {
            "minority": "positive if at least one volunteer annotator (annotator_id > 0) "
            "said present (DCASE 2020 baseline and L2I 'minority vote')",
            "majority": "positive if more than half of the volunteer annotators who "
            "annotated the class said present",
            "verified": "the verified row (annotator_id 0) only",
        }[self.target_mode]

        def kept(part: str) -> str:
            return f"{listed[part] - dropped[part]} of {listed[part]} clips"

        without = "verified row" if self.target_mode == "verified" else "volunteer annotation"
        return (
            f"SONYC-UST v2 official split: train = split 'train' ({kept('train')}; "
            f"{dropped['train']} without a {without} dropped), targets: {rule}; "
            f"valid = split 'validate' ({kept('valid')}) and test = split 'test' "
            f"({kept('test')}), targets from the verified row (annotator_id 0); "
            f"{dropped['valid']} validate and {dropped['test']} test clips without a "
            f"verified row left out; -1 (not annotated) cells ignored; target mode "
            f"{self.target_mode!r}; clips of {self.clip_seconds:g} s"
        )

    def fingerprint(self) -> str:
        """The annotation and taxonomy bytes, the target mode, the clip length and each
        audio file's name and size: cheap, and it changes when the targets would."""
        digest = hashlib.sha256(
            f"{self.name}:{self.version}:{self.target_mode}:{self.clip_seconds}".encode()
        )
        for path in (self.annotations_path, self.taxonomy_path):
            digest.update(path.read_bytes() if path.is_file() else b"")
        split = self._load()
        for clip in (*split.train, *split.valid, *split.test):
            digest.update(f"{clip.path.name}:{clip.path.stat().st_size}".encode())
        return digest.hexdigest()[:16]

    # ---------------------------------------------------------------- download

    @classmethod
    def download(
        cls,
        data_dir: Path | None = None,
        *,
        base_url: str = ZENODO_URL,
        files: Mapping[str, str | None] = ZENODO_FILES,
        show_progress: bool = True,
    ) -> Path:
        """Fetch the record's files (md5-checked where known), unpack the audio
        tarballs safely into ``data_dir/audio`` and record what was fetched in
        ``DOWNLOAD.json``.

        Resumable: each tarball leaves a marker under ``data_dir/.download`` once its
        audio is in place, so a rerun after an interruption fetches only what is left.
        ``base_url`` and ``files`` (name -> md5 or ``None``) exist for mirrors and tests.
        """
        data_dir = Path(data_dir) if data_dir is not None else cls.default_data_dir()
        record_path = data_dir / "DOWNLOAD.json"
        if record_path.is_file():
            raise BenchError(
                f"{record_path} exists: SONYC-UST was already downloaded there",
                f"delete {data_dir} first to download again, or use it as it is",
            )
        staging = data_dir / ".download"
        staging.mkdir(parents=True, exist_ok=True)
        audio_dir = data_dir / AUDIO_DIR
        audio_dir.mkdir(exist_ok=True)
        record: dict[str, dict[str, object]] = {}
        names = list(files)
        for name in tqdm(names, desc="sonyc-ust files", unit="file", disable=not show_progress):
            done = staging / f"{name}.done"
            if done.is_file():
                record[name] = json.loads(done.read_text())
                continue
            url = _url(base_url, name)
            local = staging / name
            sha256 = fetch(url, local, show_progress=show_progress)
            md5 = _md5_of(local)
            expected = files[name]
            if expected is not None and md5 != expected.lower():
                local.unlink(missing_ok=True)
                raise BenchError(
                    f"{url}: md5 {md5} does not match the expected {expected}",
                    "retry the download; if it fails again the upstream file changed, so "
                    "check it by hand before trusting it",
                )
            if name.endswith((".tar.gz", ".tgz", ".tar", ".zip")):
                count = _unpack_audio(local, staging / f"{name}.unpacked", audio_dir)
                size = local.stat().st_size
                local.unlink()
            else:
                size = local.stat().st_size
                os.replace(local, data_dir / name)
                count = None
            facts = {
                "url": url,
                "md5": md5,
                "md5_checked": expected is not None,
                "sha256": sha256,
                "size_bytes": size,
                "wav_files": count,
            }
            done.write_text(json.dumps(facts))
            record[name] = facts
        record_path.write_text(
            json.dumps(
                {
                    "zenodo_record": ZENODO_RECORD,
                    "base_url": base_url,
                    "files": record,
                    "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                indent=2,
            )
            + "\n"
        )
        shutil.rmtree(staging, ignore_errors=True)
        cls(data_dir).prepare()  # every listed clip must now be there
        return data_dir


def _url(base_url: str, name: str) -> str:
    url = f"{base_url.rstrip('/')}/{name}"
    return f"{url}?download=1" if url.startswith(("http://", "https://")) else url


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _unpack_audio(archive: Path, scratch: Path, audio_dir: Path) -> int:
    """Safely extract ``archive`` and move every ``.wav`` in it (at any depth) into
    ``audio_dir``; returns how many. The archives' inner folder names are not relied on."""
    shutil.rmtree(scratch, ignore_errors=True)
    safe_extract(archive, scratch)
    count = 0
    for wav in sorted(scratch.rglob("*.wav")):
        if wav.name.startswith("._") or not wav.is_file() or wav.is_symlink():
            continue  # macOS resource forks and links are not audio
        os.replace(wav, audio_dir / wav.name)
        count += 1
    shutil.rmtree(scratch, ignore_errors=True)
    if count == 0:
        raise BenchError(
            f"{archive.name} holds no .wav file",
            "check that the URL points at a SONYC-UST audio archive",
        )
    return count


@hookimpl
def register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    register(SonycUST)
