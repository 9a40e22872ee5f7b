"""ESC-50 on a tiny fixture in the official layout, plus the real fold as integration."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from l2i_bench.errors import BenchError
from l2i_bench.plugins.datasets import esc50 as esc50_module
from l2i_bench.plugins.datasets.esc50 import ESC50

COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
CATEGORIES = ["dog", "rooster", "rain"]
REAL_FOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "esc50-fold4"


def make_layout(
    root: Path, folds=(1, 2, 3, 4, 5), per_class: int = 4, flac_every: int = 3
) -> list[dict[str, str]]:
    """A miniature ESC-50: 3 classes, ``per_class`` clips per class and fold, two takes
    per source recording; every ``flac_every``-th clip is stored as .flac only."""
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    rows, n = [], 0
    for fold in folds:
        for target, category in enumerate(CATEGORIES):
            for k in range(per_class):
                src = f"{fold}{target}{k // 2:03d}"
                take = "AB"[k % 2]
                name = f"{fold}-{src}-{take}-{target}.wav"
                rows.append(
                    dict(
                        zip(
                            COLUMNS, [name, fold, target, category, "False", src, take], strict=True
                        )
                    )
                )
                wave = (0.1 * rng.standard_normal(441)).astype(np.float32)
                fmt = "flac" if n % flac_every == 0 else "wav"
                sf.write(str(root / "audio" / Path(name).with_suffix(f".{fmt}")), wave, 44100)
                n += 1
    # rows deliberately out of target order: class names must follow `target`
    rows.sort(key=lambda r: (r["category"], r["filename"]))
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


@pytest.fixture
def full(tmp_path: Path) -> ESC50:
    make_layout(tmp_path / "esc")
    return ESC50(tmp_path / "esc")


def test_classes_follow_target_and_folds_are_present(full: ESC50) -> None:
    full.prepare()
    assert full.class_names == CATEGORIES
    assert full.folds() == ["1", "2", "3", "4", "5"]


def test_flac_stands_in_for_a_missing_wav(full: ESC50) -> None:
    paths = [c.path for c in full.split("1").test]
    assert {p.suffix for p in paths} == {".wav", ".flac"}
    assert all(p.is_file() for p in paths)


def test_cross_fold_split(full: ESC50) -> None:
    for fold in full.folds():
        split = full.split(fold)
        test = {c.clip_id for c in split.test}
        train, valid = {c.clip_id for c in split.train}, {c.clip_id for c in split.valid}
        assert test == {c.clip_id for c in split.test if c.clip_id.startswith(f"{fold}-")}
        assert all(cid.startswith(f"{fold}-") for cid in test) and len(test) == 12
        assert not (train & valid) and not (train & test) and not (valid & test)
        assert len(train) + len(valid) == 48  # every clip of the other folds is used
        assert Counter(c.labels[0] for c in split.valid).keys() == {0, 1, 2}  # stratified
        assert 0.05 <= len(valid) / 48 <= 0.2
        assert f"test = fold {fold}" in split.protocol
    again = ESC50(full.data_dir).split("2")
    assert [c.clip_id for c in again.valid] == [c.clip_id for c in full.split("2").valid]
    other_seed = ESC50(full.data_dir, split_seed=5).split("2")
    assert {c.clip_id for c in other_seed.test} == {c.clip_id for c in again.test}


def test_single_fold_gets_a_stated_stratified_within_fold_split(tmp_path: Path) -> None:
    make_layout(tmp_path / "one", folds=(4,), per_class=8)
    ds = ESC50(tmp_path / "one")
    assert ds.folds() == ["4"]
    split = ds.split("4")
    parts = [{c.clip_id for c in p} for p in (split.train, split.valid, split.test)]
    assert sum(map(len, parts)) == len(set().union(*parts)) == 24
    for part in (split.train, split.valid, split.test):
        assert set(Counter(c.labels[0] for c in part)) == {0, 1, 2}
    source = {c.clip_id: c.clip_id.split("-")[1] for c in (*split.train, *split.test)}
    assert not {source[c.clip_id] for c in split.train} & {source[c.clip_id] for c in split.test}
    assert "within-fold" in split.protocol and "fold 4" in split.protocol


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="l2i-bench download esc50") as err:
        ESC50(tmp_path / "nowhere").prepare()
    assert str(tmp_path / "nowhere") in str(err.value)


def test_missing_csv(tmp_path: Path) -> None:
    (tmp_path / "esc" / "audio").mkdir(parents=True)
    with pytest.raises(BenchError, match=r"esc50\.csv") as err:
        ESC50(tmp_path / "esc").folds()
    assert "--data-dir" in str(err.value)


def test_csv_missing_columns(tmp_path: Path) -> None:
    make_layout(tmp_path / "esc")
    csv_path = tmp_path / "esc" / "meta" / "esc50.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(line.rsplit(",", 5)[0] + ",x" for line in lines) + "\n")
    with pytest.raises(BenchError, match="target") as err:
        ESC50(tmp_path / "esc").prepare()
    assert str(csv_path) in str(err.value) and "category" in str(err.value)


def test_listed_file_without_audio(full: ESC50) -> None:
    victim = next((full.data_dir / "audio").glob("2-*.wav"))
    victim.unlink()
    with pytest.raises(BenchError, match=re.escape(victim.name)):
        ESC50(full.data_dir).prepare()


def test_fingerprint_tracks_files(full: ESC50) -> None:
    before = full.fingerprint()
    assert ESC50(full.data_dir).fingerprint() == before
    victim = next((full.data_dir / "audio").glob("3-*.wav"))
    sf.write(str(victim), np.zeros(882, dtype=np.float32) + 0.1, 44100)
    assert ESC50(full.data_dir).fingerprint() != before


def test_download_unpacks_the_official_layout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_layout(src, folds=(1,), per_class=2)
    archive = tmp_path / "ESC-50-master.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, Path("ESC-50-master") / path.relative_to(src))
    data_dir = tmp_path / "datasets" / "esc50"
    ESC50.download(data_dir, url=archive.as_uri(), show_progress=False)
    assert (data_dir / "meta" / "esc50.csv").is_file()
    record = json.loads((data_dir / "DOWNLOAD.json").read_text())
    assert record["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert ESC50(data_dir).folds() == ["1"]
    assert not list(data_dir.glob(".download-*"))
    with pytest.raises(BenchError, match="already exists"):
        ESC50.download(data_dir, url=archive.as_uri(), show_progress=False)


def test_plugin_registers_the_class() -> None:
    seen: list[type] = []
    esc50_module.register_datasets(seen.append)
    assert seen == [ESC50]


@pytest.mark.integration
def test_real_fold4_within_fold_split() -> None:
    if not (REAL_FOLD / "meta" / "esc50.csv").is_file():
        pytest.skip(f"{REAL_FOLD} not present")
    ds = ESC50(REAL_FOLD)
    ds.prepare()
    assert ds.folds() == ["4"] and ds.num_classes == 50
    split = ds.split("4")
    parts = [[c.clip_id for c in p] for p in (split.train, split.valid, split.test)]
    ids = [cid for p in parts for cid in p]
    assert len(ids) == len(set(ids)) == 400
    for part, share in zip((split.train, split.valid, split.test), (0.6, 0.15, 0.25), strict=True):
        counts = Counter(c.labels[0] for c in part)
        assert set(counts) == set(range(50))  # every class on every side
        assert abs(len(part) / 400 - share) < 0.06
    assert "within-fold" in split.protocol
