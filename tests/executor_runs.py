"""What the tests of the parallel executors (``--executor processes`` and ``ray``) share:
the grid they run, the values they compare with the sequential runner's, and the
environment their worker processes need.

The grid is the tiny synth of ``fault_plugins`` on folds 1 and 2 with one listening
example per cell; "the same numbers" is every non-timing value of every cell with the
per-row values behind it, and the listening WAVs byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from fault_plugins import registry, tiny_config

from l2i_bench.failpoints import ENV
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


def run_sequential(synth_dir, root: Path) -> Path:
    """The reference: the same grid, sequential, one torch thread (as each worker);
    its output folder."""
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
