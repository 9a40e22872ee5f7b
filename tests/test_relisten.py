"""``run --listen-only``: the listening examples of a scored grid, written again without
scoring, are the same clips and, for a deterministic explainer, the same audio."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from l2i_bench.cli import main
from l2i_bench.errors import BenchError
from l2i_bench.registry import load_registry
from l2i_bench.relisten import write_listening_only
from l2i_bench.runner import RunConfig, run_benchmark


def _config(synth_dir, cache_dir, out) -> RunConfig:
    return RunConfig(
        dataset="synth",
        explainers=["loudest", "saliency"],
        folds=["1"],
        data_dir=synth_dir,
        device="cpu",
        limit=8,
        out=out,
        cache_dir=cache_dir,
        classifier={"epochs": 2},
        listen=2,
        show_progress=False,
    )


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*.wav"))}


def test_listen_only_writes_the_scored_cells_clips_and_nothing_else(synth_dir, cache_dir, tmp_path):
    registry = load_registry()
    out = tmp_path / "results"
    config = _config(synth_dir, cache_dir, out)
    run_benchmark(config, registry)
    board = out / "synth"
    scored = board / "listen"
    kept = tmp_path / "scored-listen"
    shutil.move(scored, kept)
    before = {p: p.read_bytes() for p in board.rglob("*") if p.is_file()}

    written = write_listening_only(config, registry)

    expected = _files(kept)
    assert sorted(_files(scored)) == sorted(expected)
    # two test clips and one mixture per condition set, for each explainer
    per_explainer = {name: [k for k in expected if f"/{name}/" in k] for name in config.explainers}
    assert {n: len(v) for n, v in per_explainer.items()} == {"loudest": 4, "saliency": 4}
    assert any("overlap" in k for k in per_explainer["loudest"])
    assert any("noise" in k for k in per_explainer["loudest"])
    assert sorted(str(p.relative_to(scored)) for p in written) == sorted(
        per_explainer["loudest"] + per_explainer["saliency"]
    )
    for key, path in expected.items():
        again, _ = sf.read(scored / key, dtype="float32")
        first, _ = sf.read(path, dtype="float32")
        if "/loudest/" in key or "/_inputs/" in key:
            assert np.array_equal(again, first), key  # deterministic: the same audio
        else:
            np.testing.assert_allclose(again, first, atol=1e-4, err_msg=key)
    # nothing scored, published or recorded
    after = {p: p.read_bytes() for p in board.rglob("*") if p.is_file() and scored not in p.parents}
    assert after == before

    # another --limit draws another test set: other clips than the cells'
    with pytest.raises(BenchError, match="made under another configuration"):
        write_listening_only(replace(config, limit=6), registry)

    # a cell that explains another classifier: its examples cannot come from this one
    cell = board / "cells" / "fold-1" / "seed-0" / "saliency.json"
    record = json.loads(cell.read_text())
    record["classifier_sha256"] = "0" * 64
    cell.write_text(json.dumps(record))
    shutil.rmtree(scored)
    with pytest.raises(BenchError, match="not the one the cells of saliency explain"):
        write_listening_only(config, registry)
    assert not scored.exists()


def test_listen_only_refuses_what_it_cannot_do(synth_dir, cache_dir, tmp_path, capsys):
    base = [
        "run",
        "--dataset",
        "synth",
        "--explainers",
        "loudest",
        "--data-dir",
        str(synth_dir),
        "--out",
        str(tmp_path / "r"),
        "--cache-dir",
        str(cache_dir),
        "--listen-only",
    ]
    assert main([*base, "--listen", "0"]) == 2
    assert "--listen 0 has nothing to write" in capsys.readouterr().err
    assert main([*base, "--force"]) == 2
    assert "computes no cells" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any work
