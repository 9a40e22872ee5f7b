"""Published classifiers: a results folder keeps the checkpoints its cells explain, and a
run that extends the folder explains those weights instead of a retrain.

Why it matters: a retrain is bit-identical only on the same arithmetic (measured: the
ESC-50 fold-4 classifier trained to accuracy 0.18 on one machine and 0.28 on another at
the same commit, data, seed and threads), so a board extended on another machine
without the published weights would mix two classifiers. Here "another machine" is a
fresh cache, and a different retrain is a kept cell whose recorded sha256 is changed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fault_plugins import registry, tiny_config

from l2i_bench.cache import check_record, file_digest
from l2i_bench.errors import BenchError
from l2i_bench.results import PUBLISHED_CLASSIFIERS, read_cells
from l2i_bench.runner import run_benchmark
from l2i_bench.verify import VerifyRequest, verify

FOLDER = "synth-tiny"


def _manifest(summary) -> dict:
    return json.loads(Path(summary.manifest).read_text())


@pytest.fixture
def board(synth_dir, tmp_path):
    """A published board of random and profile on fold 1: (out, its checkpoint)."""
    out = tmp_path / "out"
    summary = run_benchmark(tiny_config(synth_dir, out, tmp_path / "cache-a"), registry())
    record = _manifest(summary)["classifier"]["1/seed-0"]
    assert record["reused"] is False and record["published_note"] == "published"
    published = out / FOLDER / PUBLISHED_CLASSIFIERS / record["published"]
    # the cache entry's bytes, under the cache's own key and integrity record
    assert file_digest(published) == file_digest(Path(record["checkpoint"]))
    assert check_record(published, published.stem) is None
    return out, published


def test_a_board_extended_from_an_empty_cache_explains_the_published_weights(
    board, synth_dir, tmp_path
):
    out, published = board
    (sha,) = {c.classifier_sha256 for c in read_cells(out, FOLDER)}
    # another machine: nothing in its cache; a new explainer joins the board
    config = tiny_config(synth_dir, out, tmp_path / "cache-b", explainers=["sleepy"])
    record = _manifest(run_benchmark(config, registry()))["classifier"]["1/seed-0"]
    assert record["reused"] is True and record["train_seconds"] > 0  # loaded, not trained
    assert record["sha256"] == sha and record["published_note"] == "published earlier"
    assert file_digest(Path(record["checkpoint"])) == file_digest(published)  # in cache-b
    assert Path(record["checkpoint"]).is_relative_to(tmp_path / "cache-b")
    cells = {c.explainer: c.classifier_sha256 for c in read_cells(out, FOLDER)}
    assert cells == {"random": sha, "profile": sha, "sleepy": sha}


def test_a_damaged_published_checkpoint_is_not_used_and_is_replaced(
    board, synth_dir, tmp_path, capsys
):
    out, published = board
    data = bytearray(published.read_bytes())
    data[len(data) // 2] ^= 0xFF
    published.write_bytes(bytes(data))
    summary = run_benchmark(
        tiny_config(synth_dir, out, tmp_path / "cache-b", force=True), registry()
    )
    assert f"published classifier {published} not used" in capsys.readouterr().err
    record = _manifest(summary)["classifier"]["1/seed-0"]
    assert record["reused"] is False and record["published_note"] == "published"
    assert check_record(published, published.stem) is None  # the retrain, recorded


def test_a_damaged_cache_entry_is_restored_from_the_published_checkpoint(
    board, synth_dir, tmp_path, capsys
):
    out, published = board
    config = tiny_config(synth_dir, out, tmp_path / "cache-a", force=True)
    record = _manifest(run_benchmark(config, registry()))["classifier"]["1/seed-0"]
    cached = Path(record["checkpoint"])
    cached.write_bytes(cached.read_bytes()[:-100])  # truncated
    again = _manifest(run_benchmark(config, registry()))["classifier"]["1/seed-0"]
    err = capsys.readouterr().err
    assert f"discarding cache entry {cached}: its size is" in err
    assert f"replaced by the published {published}" in err
    assert again["reused"] is True and again["sha256"] == record["sha256"]
    assert file_digest(cached) == file_digest(published)


def test_kept_cells_on_another_classifier_stop_the_run_before_any_cell(board, synth_dir, tmp_path):
    out, published = board
    published.unlink()  # a folder published before checkpoints were
    kept = out / FOLDER / "cells" / "fold-1" / "seed-0" / "random.json"
    cell = json.loads(kept.read_text())
    # what a retrain elsewhere explained (its key depends on that classifier too)
    cell["classifier_sha256"], cell["config_key"] = "f" * 64, "made-elsewhere"
    kept.write_text(json.dumps(cell))
    config = tiny_config(synth_dir, out, tmp_path / "cache-b", explainers=["profile", "sleepy"])
    with pytest.raises(BenchError) as caught:
        run_benchmark(config, registry())
    message = str(caught.value.problem)
    assert "fold 1 seed 0: the classifier trained here" in message
    assert "is not the one the 1 cells kept" in message and "ffffffffff: random" in message
    assert "random added" in caught.value.fix
    sleepy = out / FOLDER / "cells" / "fold-1" / "seed-0" / "sleepy.json"
    assert not sleepy.exists()
    # recomputing the kept explainer too is the fix the error names: the run goes through
    config = tiny_config(synth_dir, out, tmp_path / "cache-b", explainers=["random", "sleepy"])
    run_benchmark(config, registry())
    assert len({c.classifier_sha256 for c in read_cells(out, FOLDER)}) == 1


def test_verify_with_published_weights_explains_the_same_classifier(board, synth_dir, tmp_path):
    out, published = board
    request = VerifyRequest(
        results=out / FOLDER,
        out=tmp_path / "verify",
        data_dir=synth_dir,
        show_progress=False,
        published_weights=True,
    )
    table, path = verify(request, registry())
    assert set(table["classifier"]) == {"same"}
    assert set(table["status"]) == {"identical"}, table[table["status"] != "identical"]
    [manifest] = (path.parent / "runs").glob("*.json")
    record = json.loads(manifest.read_text())["classifier"]["1/seed-0"]
    assert record["reused"] is True  # loaded from the published copy, in a fresh cache
    assert file_digest(Path(record["checkpoint"])) == file_digest(published)
    # a folder without checkpoints says so and how to go on
    published.unlink()
    with pytest.raises(BenchError, match="publishes no classifier checkpoints") as caught:
        verify(request, registry())
    assert "without --published-weights" in caught.value.fix


def test_a_board_extended_at_another_thread_count_explains_the_published_weights(
    board, synth_dir, tmp_path
):
    """A GPU, or another ``--threads``, keys a checkpoint of its own; extending a board,
    it must still explain the board's published weights (here: trained at one thread,
    extended at two), not train its own and be refused."""
    out, published = board
    assert "-cpu1t" in published.name
    (sha,) = {c.classifier_sha256 for c in read_cells(out, FOLDER)}
    config = tiny_config(synth_dir, out, tmp_path / "cache-b", explainers=["sleepy"], threads=2)
    record = _manifest(run_benchmark(config, registry()))["classifier"]["1/seed-0"]
    assert record["reused"] is True and record["sha256"] == sha
    assert Path(record["checkpoint"]).name == published.name  # the published key, not cpu2t
    cells = {c.explainer: c.classifier_sha256 for c in read_cells(out, FOLDER)}
    assert cells == {"random": sha, "profile": sha, "sleepy": sha}
    # outside the folder the thread count keys its own classifier, as before
    elsewhere = tiny_config(synth_dir, tmp_path / "other", tmp_path / "cache-b", threads=2)
    record = _manifest(run_benchmark(elsewhere, registry()))["classifier"]["1/seed-0"]
    assert record["reused"] is False and "-cpu2t" in Path(record["checkpoint"]).name
    # two published trainings, neither at this run's count: it cannot tell which one
    # the cells explain, and says how to keep one
    twin = published.with_name(published.name.replace("-cpu1t", "-cpu2t"))
    twin.write_bytes(published.read_bytes())
    with pytest.raises(BenchError, match="holds 2 checkpoints of this classifier") as caught:
        run_benchmark(replace(config, threads=3), registry())
    assert twin.name in str(caught.value.problem)
    assert "classifier.csv" in caught.value.fix
