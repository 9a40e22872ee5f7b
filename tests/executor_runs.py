"""What the tests of the parallel executors (``--executor processes`` and ``ray``) share:
the grid they run, the values they compare with the sequential runner's, and the
environment their worker processes need.

The grid is the tiny synth of ``fault_plugins`` on folds 1 and 2 with one listening
example per cell; "the same numbers" is every non-timing value of every cell with the
per-row values behind it, and the listening WAVs byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from fault_plugins import registry, tiny_config

from l2i_bench.failpoints import ENV, ONCE_ENV
from l2i_bench.registry import load_registry
from l2i_bench.results import read_cells
from l2i_bench.runner import RunConfig, run_benchmark

TESTS = Path(__file__).resolve().parent


def grid_config(synth_dir, out, cache, **kw) -> RunConfig:
    """The tiny synth on folds 1 and 2, one listening example per cell."""
    return tiny_config(synth_dir, out, cache, **{"folds": ["1", "2"], "listen": 1, **kw})


def cell_values(out: Path, dataset: str) -> dict:
    """Every non-timing value of every cell, and the per-row values behind them."""
    values = {}
    for cell in read_cells(out, dataset):
        key = (cell.fold, int(cell.seed), cell.explainer)
        scores = {s.column: (s.value, s.n, s.note) for s in cell.scores if s.metric != "timing"}
        timing = {s.column for s in cell.scores if s.metric == "timing"}
        rows = {
            column: packed["values"]
            for column, packed in cell.rows.get("columns", {}).items()
            if column not in timing
        }
        values[key] = (cell.config_key, cell.classifier_sha256, scores, rows)
    return values


def listening_files(out: Path, dataset: str) -> dict[str, bytes]:
    root = out / dataset / "listen"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.wav"))}


@pytest.fixture(scope="module", name="sequential")
def sequential_reference(synth_dir, tmp_path_factory) -> Path:
    """The reference every executor's numbers are compared with, once per module: the
    same grid, sequential, one torch thread (as each worker); its output folder."""
    root = tmp_path_factory.mktemp("sequential")
    threads = torch.get_num_threads()
    try:
        run_benchmark(grid_config(synth_dir, root / "out", root / "cache"), registry())
    finally:
        torch.set_num_threads(threads)
    return root / "out"


@pytest.fixture(name="workers_import_the_test_plugins")
def workers_environment(monkeypatch):
    """Workers unpickle the test plugins' classes by module name, as they import an
    installed plugin package; no failpoint unless a test sets one."""
    paths = [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.delenv(ENV, raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# -- scenarios both executors must pass; each test module calls them with its options --


def check_a_raising_explainer_fails_only_its_cell(synth_dir, tmp_path, sequential, executor):
    """A raising plugin costs its own cell; the other cell has the sequential numbers
    and is published."""
    out = tmp_path / "out"
    summary = run_benchmark(
        grid_config(
            synth_dir, out, tmp_path / "cache", folds=["1"], explainers=["random", "raising"]
        ),
        registry(),
        executor,
    )
    [(fold, seed, name, error)] = summary.failed
    assert (fold, seed, name) == ("1", 0, "raising")
    assert "boom inside the plugin" in error
    assert summary.computed == [("1", "random")]
    board = (out / "synth-tiny" / "leaderboard.csv").read_text()
    assert "random" in board and "raising" not in board
    ours = cell_values(out, "synth-tiny")[("1", 0, "random")]
    assert ours == cell_values(sequential, "synth-tiny")[("1", 0, "random")]
    manifest = json.loads(summary.manifest.read_text())
    assert manifest["status"] == "finished, 1 cell(s) failed"


def check_a_real_explainer_and_every_metric_match(synth_dir, tmp_path, executor) -> None:
    """Saliency (gradients) and every metric on the real synth, fold 1, 3 clips: the
    executor's run reuses the sequential run's classifier (independent caches are
    each module's first test)."""
    reg = load_registry()
    base = dict(
        dataset="synth",
        folds=["1"],
        explainers=["saliency"],
        limit=3,
        classifier={"epochs": 1, "width": 0.125},
        listen=0,
    )
    threads = torch.get_num_threads()
    try:
        run_benchmark(grid_config(synth_dir, tmp_path / "seq", tmp_path / "c1", **base), reg)
    finally:
        torch.set_num_threads(threads)
    run_benchmark(grid_config(synth_dir, tmp_path / "par", tmp_path / "c1", **base), reg, executor)
    expected = cell_values(tmp_path / "seq", "synth")
    assert len(expected) == 1
    assert sum(len(scores) for _, _, scores, _ in expected.values()) > 40
    assert cell_values(tmp_path / "par", "synth") == expected


def check_a_killed_worker_is_retried(synth_dir, tmp_path, sequential, monkeypatch, executor):
    """SIGKILL of a worker after it computed a cell and before it returned it, once:
    the grid ends with the sequential numbers."""
    fired = tmp_path / "failpoint-fired"
    monkeypatch.setenv(ENV, "task=KILL")
    monkeypatch.setenv(ONCE_ENV, str(fired))
    out = tmp_path / "out"
    summary = run_benchmark(grid_config(synth_dir, out, tmp_path / "cache"), registry(), executor)
    assert fired.exists(), "no worker was killed: the failpoint did not fire"
    assert summary.failed == []
    assert len(summary.computed) == 4
    assert cell_values(out, "synth-tiny") == cell_values(sequential, "synth-tiny")


def check_ctrl_c_keeps_finished_cells(synth_dir, tmp_path, executor) -> Path:
    """`hanging` sleeps for an hour in its worker; Ctrl-C once `random` is on disk: the
    run stops soon, says it was interrupted, and publishes what finished. Returns the
    output folder for the executor's own checks (workers, Ray left running)."""
    out = tmp_path / "out"
    cell = out / "synth-tiny" / "cells" / "fold-1" / "seed-0" / "random.json"

    interrupted: list[float] = []

    def interrupt_when_random_is_written():
        deadline = time.monotonic() + 600
        while not cell.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        interrupted.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_random_is_written, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(
            grid_config(
                synth_dir, out, tmp_path / "cache", folds=["1"], explainers=["random", "hanging"]
            ),
            registry(),
            executor,
        )
    # from the interrupt, not the start: a loaded machine makes `random` slow (242 s at
    # load 5), while a hanging task not stopped would hold the run for an hour
    assert interrupted and time.monotonic() - interrupted[0] < 200, "the hanging task ran on"
    assert cell.is_file()
    [manifest] = [json.loads(p.read_text()) for p in (out / "synth-tiny" / "runs").glob("*.json")]
    assert manifest["status"].startswith("interrupted")
    assert (out / "synth-tiny" / "leaderboard.csv").is_file()  # what finished is published
    return out
