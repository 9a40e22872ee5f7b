"""SONYC-UST on a generated miniature in the official layout: target rules against an
independent pandas computation, split counts, errors, the downloader on file:// URLs,
and (marked slow) the whole benchmark with every registered explainer."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_sonyc import COARSE, SonycFixture, build_sonyc_fixture, taxonomy_yaml

from l2i_bench.errors import BenchError
from l2i_bench.plugins.datasets.sonyc_ust import SonycUST, read_coarse_taxonomy

COARSE_COLUMNS = [f"{i}_{n}_presence" for i, n in enumerate(COARSE, start=1)]
L2I_POS_WEIGHT = [1.0, 3.0, 3.0, 3.0, 3.0, 5.0, 1.5, 10.0]  # method notes §1.4


@pytest.fixture(scope="module")
def fixture(tmp_path_factory) -> SonycFixture:
    return build_sonyc_fixture(tmp_path_factory.mktemp("sonyc"))


@pytest.fixture
def own_copy(fixture: SonycFixture, tmp_path: Path) -> Path:
    """A private copy a test may damage."""
    return Path(shutil.copytree(fixture.root, tmp_path / "sonyc"))


def _labels(split) -> dict[str, dict[str, tuple[int, ...]]]:
    return {
        part: {c.clip_id: tuple(c.labels) for c in getattr(split, part)}
        for part in ("train", "valid", "test")
    }


def _expected(root: Path, train_rule: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """The target rules recomputed with pandas group-bys over the CSV."""
    df = pd.read_csv(root / "annotations.csv")
    stem = df["audio_filename"].str.replace(".wav", "", regex=False)
    df = df.assign(clip=stem)
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    for split, part in (("train", "train"), ("validate", "valid"), ("test", "test")):
        rows = df[df["split"] == split]
        rule = train_rule if split == "train" else "verified"
        if rule == "verified":
            ok = rows[rows["annotator_id"] == 0].groupby("clip")[COARSE_COLUMNS].max() == 1
        else:
            vol = rows[rows["annotator_id"] > 0]
            said = (vol[COARSE_COLUMNS] == 1).groupby(vol["clip"]).sum()
            if rule == "minority":
                ok = said >= 1
            else:
                annotated = (vol[COARSE_COLUMNS] != -1).groupby(vol["clip"]).sum()
                ok = said > annotated / 2
        out[part] = {
            clip: tuple(int(i) for i in np.flatnonzero(flags.to_numpy()))
            for clip, flags in ok.iterrows()
        }
    return out


# ---------------------------------------------------------------- targets


@pytest.mark.parametrize("mode", ["minority", "majority", "verified"])
def test_targets_match_an_independent_groupby(fixture: SonycFixture, mode: str) -> None:
    split = SonycUST(fixture.root, target_mode=mode).split("official")
    assert _labels(split) == _expected(fixture.root, mode)


def test_evaluation_targets_are_the_generated_truth(fixture: SonycFixture) -> None:
    """The verified rows were written from the audio's true classes."""
    split = SonycUST(fixture.root).split("official")
    for clip in (*split.valid, *split.test):
        assert clip.labels == fixture.truth[clip.path.name]


def test_team_and_verified_rows_do_not_change_minority_training_targets(
    fixture: SonycFixture,
) -> None:
    # Two training clips have team and verified rows saying "all 8 present"; only the
    # volunteers' votes decide training targets, and those include every true class.
    df = pd.read_csv(fixture.root / "annotations.csv")
    with_team = set(df[(df["split"] == "train") & (df["annotator_id"] < 0)]["audio_filename"])
    with_team -= set(fixture.only_verified)
    assert len(with_team) == 2
    split = SonycUST(fixture.root).split("official")
    for clip in split.train:
        assert set(fixture.truth[clip.path.name]) <= set(clip.labels)
        if clip.path.name in with_team:
            assert len(clip.labels) < len(COARSE)


def test_split_counts_and_protocol(fixture: SonycFixture) -> None:
    df = pd.read_csv(fixture.root / "annotations.csv")
    listed = df.groupby("split")["audio_filename"].nunique()
    split = SonycUST(fixture.root).split("official")
    assert len(split.train) == listed["train"] - len(fixture.only_verified)
    assert len(split.valid) == listed["validate"] - 1
    assert len(split.test) == listed["test"] - 1
    assert "1 validate and 1 test clips without a verified row left out" in split.protocol
    ids = {c.clip_id for part in (split.train, split.valid, split.test) for c in part}
    assert not ids & {Path(f).stem for f in fixture.no_verified + fixture.only_verified}
    verified = SonycUST(fixture.root, target_mode="verified").split("official")
    with_zero = df[(df["split"] == "train") & (df["annotator_id"] == 0)]["audio_filename"]
    assert {c.path.name for c in verified.train} == set(with_zero)


def test_classes_folds_and_defaults(fixture: SonycFixture) -> None:
    ds = SonycUST(fixture.root)
    assert ds.class_names == COARSE
    assert ds.folds() == ["official"]
    assert ds.task == "multilabel" and SonycUST.clip_seconds == 10.0
    assert list(SonycUST.classifier_defaults.pos_weight) == L2I_POS_WEIGHT
    d = SonycUST.explainer_defaults
    assert (d.nmf_components, d.dictionary_strategy, d.interpreter_epochs) == (
        80, "noise_then_class", 21,
    )  # fmt: skip


def test_columns_are_read_by_name(fixture: SonycFixture, own_copy: Path) -> None:
    df = pd.read_csv(own_copy / "annotations.csv", dtype=str, keep_default_na=False)
    order = np.random.default_rng(1).permutation(len(df.columns))
    df[df.columns[order]].to_csv(own_copy / "annotations.csv", index=False)
    shuffled = _labels(SonycUST(own_copy).split("official"))
    assert shuffled == _labels(SonycUST(fixture.root).split("official"))


def test_fingerprint_follows_target_mode_and_annotations(
    fixture: SonycFixture, own_copy: Path
) -> None:
    base = SonycUST(own_copy).fingerprint()
    assert SonycUST(own_copy, target_mode="majority").fingerprint() != base
    with open(own_copy / "annotations.csv", "a") as fh:
        fh.write("\n")
    assert SonycUST(own_copy).fingerprint() != base


# ----------------------------------------------------------------- errors


def test_missing_files_name_the_path_and_the_fix(own_copy: Path) -> None:
    (own_copy / "annotations.csv").rename(own_copy / "elsewhere.csv")
    with pytest.raises(BenchError, match=r"annotations\.csv") as err:
        SonycUST(own_copy).prepare()
    assert "l2i-bench download sonyc-ust" in str(err.value)
    (own_copy / "dcase-ust-taxonomy.yaml").unlink()
    with pytest.raises(BenchError, match="taxonomy file not found"):
        SonycUST(own_copy).prepare()
    with pytest.raises(BenchError, match="data folder not found"):
        SonycUST(own_copy / "nope").prepare()


def test_missing_coarse_column_is_named(own_copy: Path) -> None:
    df = pd.read_csv(own_copy / "annotations.csv", dtype=str, keep_default_na=False)
    df.drop(columns=["6_music_presence"]).to_csv(own_copy / "annotations.csv", index=False)
    with pytest.raises(BenchError, match="6_music_presence"):
        SonycUST(own_copy).prepare()


def test_missing_audio_and_bad_values(own_copy: Path) -> None:
    victim = sorted((own_copy / "audio").glob("*.wav"))[5]
    victim.unlink()
    with pytest.raises(BenchError, match=victim.name):
        SonycUST(own_copy).prepare()
    text = (own_copy / "annotations.csv").read_text().splitlines()
    header = text[0].split(",")
    cells = text[1].split(",")
    cells[header.index("3_non-machinery-impact_presence")] = "yes"
    (own_copy / "annotations.csv").write_text("\n".join([text[0], ",".join(cells)]) + "\n")
    with pytest.raises(BenchError, match=r"line 2.*'yes'"):
        SonycUST(own_copy).prepare()


def test_wrong_taxonomy_fold_and_mode(fixture: SonycFixture, own_copy: Path) -> None:
    yaml = own_copy / "dcase-ust-taxonomy.yaml"
    yaml.write_text(taxonomy_yaml().replace("  8: dog", "  8: cat"))
    with pytest.raises(BenchError, match="8: cat"):
        SonycUST(own_copy).prepare()
    with pytest.raises(BenchError, match="official"):
        SonycUST(fixture.root).split("1")
    with pytest.raises(BenchError, match="minority, majority, verified"):
        SonycUST(fixture.root, target_mode="any")


def test_taxonomy_reader_handles_quotes_comments_and_flow_style(tmp_path: Path) -> None:
    block = tmp_path / "block.yaml"
    block.write_text(
        "version: 2\ncoarse:\n  # ids\n  1: 'engine'  # a comment\n\n  \"2\": machinery-impact\n"
        "fine:\n  1:\n    1: small-sounding-engine\n"
    )
    assert read_coarse_taxonomy(block) == {"1": "engine", "2": "machinery-impact"}
    flow = tmp_path / "flow.yaml"
    flow.write_text("coarse: {1: engine, 2: 'dog'}\n")
    assert read_coarse_taxonomy(flow) == {"1": "engine", "2": "dog"}
    (tmp_path / "none.yaml").write_text("fine:\n  1: x\n")
    with pytest.raises(BenchError, match="no top-level `coarse:`"):
        read_coarse_taxonomy(tmp_path / "none.yaml")


# --------------------------------------------------------------- download


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _record(fixture: SonycFixture, where: Path) -> dict[str, str | None]:
    """A local copy of the Zenodo record: the two text files and the audio split over
    two tarballs with different inner folders."""
    where.mkdir()
    shutil.copy(fixture.root / "annotations.csv", where)
    shutil.copy(fixture.root / "dcase-ust-taxonomy.yaml", where)
    wavs = sorted((fixture.root / "audio").glob("*.wav"))
    for k, prefix in ((0, "audio"), (1, "sonyc/audio-1")):
        with tarfile.open(where / f"audio-{k}.tar.gz", "w:gz") as tf:
            for wav in wavs[k::2]:
                tf.add(wav, arcname=f"{prefix}/{wav.name}")
    files: dict[str, str | None] = {p.name: _md5(p) for p in sorted(where.iterdir())}
    files["dcase-ust-taxonomy.yaml"] = None  # an unknown md5 is recorded, not checked
    return files


def test_download_rebuilds_the_layout_and_resumes(fixture: SonycFixture, tmp_path: Path):
    files = _record(fixture, tmp_path / "record")
    base = (tmp_path / "record").as_uri()
    target = tmp_path / "data"
    wrong = {**files, "audio-1.tar.gz": "0" * 32}
    with pytest.raises(BenchError, match="md5"):
        SonycUST.download(target, base_url=base, files=wrong, show_progress=False)
    assert not (target / "DOWNLOAD.json").exists()
    (tmp_path / "record" / "audio-0.tar.gz").unlink()  # done already: must not be refetched
    SonycUST.download(target, base_url=base, files=files, show_progress=False)
    got = SonycUST(target).split("official")
    assert _labels(got) == _labels(SonycUST(fixture.root).split("official"))
    record = json.loads((target / "DOWNLOAD.json").read_text())["files"]
    assert record["annotations.csv"]["md5"] == files["annotations.csv"]
    assert record["dcase-ust-taxonomy.yaml"]["md5_checked"] is False
    assert record["audio-0.tar.gz"]["wav_files"] + record["audio-1.tar.gz"]["wav_files"] == len(
        list((fixture.root / "audio").glob("*.wav"))
    )
    assert not (target / ".download").exists()
    with pytest.raises(BenchError, match="already downloaded"):
        SonycUST.download(target, base_url=base, files=files, show_progress=False)


def test_download_refuses_an_escaping_archive(fixture: SonycFixture, tmp_path: Path) -> None:
    record = tmp_path / "record"
    record.mkdir()
    with tarfile.open(record / "audio-0.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("../escaped.wav")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"RIFF"))
    with pytest.raises(BenchError, match="refusing to extract"):
        SonycUST.download(
            tmp_path / "data",
            base_url=record.as_uri(),
            files={"audio-0.tar.gz": None},
            show_progress=False,
        )
    assert not (tmp_path / "escaped.wav").exists()
    assert not (tmp_path / "data" / "escaped.wav").exists()


# ------------------------------------------------------------- end to end


@pytest.mark.parametrize("classifier", ["kumar", "cnn14"])
def test_every_explainer_runs_on_the_miniature(tmp_path: Path, classifier: str) -> None:
    """The whole grid with every registered explainer on 1 s clips (a subclass only
    shortens the clip length; the registry entry replaces the installed one if any),
    explaining each built-in classifier (their taps, bands and levels differ). About
    30-70 s each on 2 CPU cores."""
    from l2i_bench.registry import PluginInfo, load_registry
    from l2i_bench.runner import RunConfig, run_benchmark

    class ShortSonyc(SonycUST):
        clip_seconds = 1.0

    data = build_sonyc_fixture(tmp_path / "data", counts=(16, 6, 6)).root
    registry = load_registry()
    registry.entries["dataset"].pop("sonyc-ust", None)
    registry.add("dataset", ShortSonyc, PluginInfo("sonyc-test", "tests", "tests", "0"))
    explainers = registry.names("explainer")
    config = RunConfig(
        dataset="sonyc-ust",
        explainers=explainers,
        data_dir=data,
        device="cpu",
        limit=3 if classifier == "kumar" else 2,
        out=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        classifier={"name": classifier, "epochs": 2, "width": 0.125},
        options={
            "l2i": {"epochs": "1", "components": "16", "nmf_iter": "20"},
            "flint": {"epochs": "1", "am_steps": "1"},
            "vibi": {"epochs": "1"},
            "slime": {"samples": "50"},
            "iba": {"steps": "2", "draws": "2"},
            "integrated-gradients": {"steps": "4"},
            "smoothgrad": {"samples": "3"},
            "gradient-shap": {"samples": "3", "background": "4"},
            "occlusion": {"stride_frames": "16", "stride_mels": "16"},
            "lmac": {"epochs": "1"},
            "wam-ig": {"steps": "3"},
            "wam-sg": {"samples": "3"},
        },
        listen=0,
        show_progress=False,
    )
    summary = run_benchmark(config, registry)
    board = pd.read_csv(summary.leaderboard).set_index("explainer")
    # the oracle references need stems, which SONYC-UST has not: skipped, with a note
    needs_stems = {n for n in explainers if registry.explainer(n).needs_stems}
    assert needs_stems == {"oracle", "anti-oracle"}
    assert sorted(board.index) == sorted(set(explainers) - needs_stems)
    manifest = json.loads(summary.manifest.read_text())
    assert sorted(n for _, _, n in manifest["cells"]["not_applicable"]) == sorted(needs_stems)
    validity = pd.read_csv(summary.leaderboard.parent / "metric_validity.csv")
    assert set(validity["verdict"]) == {"untestable"}
    # every contender is compared with both controls there, flagged untestable columns
    tests = pd.read_csv(summary.leaderboard.parent / "significance.csv")
    contenders = {n for n in explainers if not registry.explainer(n).reference}
    controls = tests[tests["role"] == "control"]
    assert set(controls["explainer"]) >= contenders
    assert set(controls["versus"]) == {"random", "loudest"}
    assert set(tests["column_validity"]) == {"untestable"}  # no stems, no oracle
    # the multilabel AUPRC is set-level: with one cell it pairs on one unit, never separated
    auprc = tests[tests["column"] == "fidelity_auprc_micro_dcase"]
    assert set(auprc["units"]) == {"cells"} and set(auprc["verdict"]) == {"not separated"}

    def column(prefix: str) -> pd.Series:
        (name,) = [c for c in board.columns if c.startswith(prefix + " ") and "std" not in c]
        return board[name]

    for prefix in ("classifier_auprc_micro_dcase", "classifier_auprc_macro_dcase"):
        assert column(prefix).between(0, 1).all()
    surrogate = [n for n in explainers if registry.explainer(n).has_surrogate]
    assert surrogate, "some registered explainer has a surrogate model"
    for prefix in (
        "fidelity_auprc_macro_dcase",
        "fidelity_auprc_micro_dcase",
        "fidelity_auprc_macro_fixed11",
        "fidelity_auprc_micro_fixed11",
    ):
        assert column(prefix)[surrogate].between(0, 1).all(), prefix
    manifest = json.loads(summary.manifest.read_text())
    assert manifest["classifier"]["official/seed-0"]["config"]["pos_weight"] == L2I_POS_WEIGHT
    assert len(manifest["classifier"]["official/seed-0"]["thresholds"]) == len(COARSE)
    assert "left out" in manifest["dataset"]["folds"]["official"]["protocol"]


def _install_entry_point(where: Path, monkeypatch) -> None:
    """Until ``pyproject.toml`` lists the plugin, declare it the way any installed
    distribution does: a ``.dist-info`` folder with ``entry_points.txt`` on sys.path."""
    from l2i_bench.registry import load_registry

    if "sonyc-ust" in load_registry().names("dataset"):
        return
    dist = where / "l2i_bench_sonyc_test-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: l2i-bench-sonyc-test\nVersion: 0.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[l2i_bench]\nsonyc_ust = l2i_bench.plugins.datasets.sonyc_ust\n"
    )
    monkeypatch.syspath_prepend(str(where))


@pytest.mark.slow
def test_cli_runs_through_an_entry_point_at_10_s(tmp_path: Path, capsys, monkeypatch) -> None:
    """``l2i-bench run --explainers l2i,random,oracle --dataset sonyc-ust --data-dir
    FIXTURE`` through an entry point, at the real 10 s clip length (the 1 s clips are
    zero-padded). Every explainer runs on SONYC-UST in the grid test above (1 s clips);
    at 10 s each cell costs 20-40 s on 2 cores, so this one runs a learned explainer,
    the control and a reference that must be skipped for want of stems."""
    from l2i_bench.cli import main
    from l2i_bench.registry import load_registry

    _install_entry_point(tmp_path / "site", monkeypatch)
    assert "sonyc-ust" in load_registry().names("dataset")
    data = build_sonyc_fixture(tmp_path / "data", counts=(16, 6, 6)).root
    options = ["l2i.epochs=1", "l2i.components=16", "l2i.nmf_iter=20"]
    argv = ["run", "--explainers", "l2i,random,oracle", "--dataset", "sonyc-ust", "--data-dir", str(data),
            "--limit", "2", "--device", "cpu", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--listen", "0", "--quiet",
            "--classifier", "epochs=1", "--classifier", "width=0.125"]  # fmt: skip
    for option in options:
        argv += ["--option", option]
    assert main(argv) == 0, capsys.readouterr().err
    board = pd.read_csv(tmp_path / "out" / "sonyc-ust" / "leaderboard.csv")
    # the oracle reference needs ground-truth stems, which SONYC-UST has not
    assert sorted(board["explainer"]) == ["l2i", "random"]
    assert "oracle: skipped, it needs ground-truth stems" in capsys.readouterr().out
