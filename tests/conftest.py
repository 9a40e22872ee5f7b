"""Shared fixtures: one small generated `synth` dataset and one cache per test session
(per worker under pytest-xdist), so the classifier is trained once and reused by every
end-to-end test; and the order in which tests are handed to workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_ESC50_FOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "esc50-fold4"


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    from l2i_bench.plugins.datasets.synth import Synth

    data_dir = tmp_path_factory.mktemp("synth")
    Synth(data_dir, seed=0).prepare()
    return data_dir


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def real_esc50_fold() -> Path:
    path = Path(os.environ.get("L2I_BENCH_ESC50_FOLD", REAL_ESC50_FOLD))
    if not (path / "meta" / "esc50.csv").is_file():
        pytest.skip(f"real ESC-50 fold not found at {path}")
    return path


def pytest_collection_modifyitems(config, items) -> None:
    """The long tests first: the README's command runs the suite on two workers
    (``-n 2``, one thread each), and a five-minute test handed out last would leave one
    core idle while it runs alone. Order within each group is kept."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("integration") else 1)
