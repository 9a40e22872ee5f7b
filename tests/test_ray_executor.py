"""`--executor ray` on a local Ray instance (2 CPUs): the same cells as the sequential
executor, a killed worker retried, a failing cell reported, Ctrl-C on the driver.

The grids use the tiny synth and cheap metrics of ``fault_plugins`` (2 folds x 2
explainers, one of them learned and cached), plus one grid of real explainers and every
metric, so that "the same numbers" covers the metrics researchers read. The fault tests
start their own Ray instance (about 5 s, and the workers' torch imports) because the
workers take their environment (the failpoint) from the driver's at start, as a
cluster's nodes take theirs from how they were started; the others share one.
"""

from __future__ import annotations

import json

import pytest
from executor_runs import (
    cell_values,
    check_a_killed_worker_is_retried,
    check_a_raising_explainer_fails_only_its_cell,
    check_a_real_explainer_and_every_metric_match,
    check_ctrl_c_keeps_finished_cells,
    grid_config,
    listening_files,
    sequential_reference,  # noqa: F401 (the fixture sequential)
    workers_environment,  # noqa: F401 (the fixture workers_import_the_test_plugins)
)
from fault_plugins import Sleepy, registry

from l2i_bench.errors import BenchError
from l2i_bench.failpoints import ENV
from l2i_bench.profiling import timed_seconds
from l2i_bench.runner import run_benchmark

ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install '.[ray]')")
from l2i_bench.ray_executor import RayOptions  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    pytest.mark.xdist_group("ray"),
    pytest.mark.usefixtures("workers_import_the_test_plugins"),
]
LOCAL = RayOptions(cpus=1, local_cpus=2, retries=2)


@pytest.fixture
def shared_ray(workers_import_the_test_plugins):
    """One local Ray instance of 2 CPUs for the tests that need no special environment
    (its workers stay warm between runs); a run finds it and leaves it running."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    return ray


@pytest.fixture
def own_ray(workers_import_the_test_plugins):
    """No Ray running: the run starts its own instance with this test's environment."""
    if ray.is_initialized():
        ray.shutdown()
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def _no_ray_left_running():
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_ray_gives_the_sequential_numbers_and_files(synth_dir, tmp_path, sequential, shared_ray):
    out = tmp_path / "out"
    summary = run_benchmark(
        grid_config(synth_dir, out, tmp_path / "cache"), registry(), LOCAL
    )  # its own cache: every classifier and fit is made again on the workers
    assert sorted(summary.computed) == [(f, e) for f in ("1", "2") for e in ("profile", "random")]
    assert summary.failed == []
    expected = cell_values(sequential, "synth-tiny")
    assert len(expected) == 4
    assert cell_values(out, "synth-tiny") == expected
    assert listening_files(out, "synth-tiny") == listening_files(sequential, "synth-tiny")
    manifest = json.loads(summary.manifest.read_text())
    assert manifest["status"] == "finished"
    executor = manifest["executor"]
    assert (executor["name"], executor["task_threads"]) == ("ray", 1)
    assert executor["cluster_resources"]["CPU"] == 2.0
    assert sorted(manifest["nodes"]) == [
        f"{f}/seed-0/{e}" for f in "12" for e in ("profile", "random")
    ]

    # Finished cells are skipped on a rerun, and --force recomputes them.
    again = run_benchmark(grid_config(synth_dir, out, tmp_path / "cache"), registry(), LOCAL)
    assert (again.computed, len(again.skipped)) == ([], 4)
    forced = run_benchmark(
        grid_config(synth_dir, out, tmp_path / "cache", force=True, explainers=["random"]),
        registry(),
        LOCAL,
    )
    assert sorted(forced.computed) == [("1", "random"), ("2", "random")]
    assert cell_values(out, "synth-tiny") == expected


def test_a_raising_explainer_fails_only_its_cell(synth_dir, tmp_path, sequential, shared_ray):
    check_a_raising_explainer_fails_only_its_cell(synth_dir, tmp_path, sequential, LOCAL)


def test_ray_tasks_fill_the_stage_profile(synth_dir, tmp_path, sequential, shared_ray):
    """Fold and cell tasks report their stages to the driver's manifest: known sleeps
    in their stage, the workspace a cell task rebuilt, a failed cell's finished stages."""
    summary = run_benchmark(
        grid_config(
            synth_dir,
            tmp_path / "out",
            sequential.parent / "cache",  # the classifier is the sequential run's
            folds=["1"],
            explainers=["sleepy", "raising"],
        ),
        registry(),
        LOCAL,
    )
    profile = json.loads(summary.manifest.read_text())["profile"]
    assert profile["executor"] == "ray" and profile["wall"] > 0
    fold = profile["folds"]["1/seed-0"]
    assert fold["classifier_reused"] is True
    assert fold["total"] >= fold["audio"] + fold["classifier"]
    cell = profile["cells"]["1/seed-0/sleepy"]
    assert (cell["status"], cell["fit_source"]) == ("done", "fitted")
    # Sleepy's sleeps are virtual (tests/fault_plugins.py): 60 s of real slack is far
    # below one explain call's 100 s, so a sleep counted in the wrong stage fails
    assert Sleepy.FIT_SECONDS <= cell["fit"] < Sleepy.FIT_SECONDS + 60
    assert Sleepy.EXPLAIN_SECONDS <= cell["explain_test"] < Sleepy.EXPLAIN_SECONDS + 60
    assert sum(cell["metrics"].values()) < 60 and fold["total"] < 60
    assert cell["workspace"] >= 0 and isinstance(cell["workspace_reused"], bool)
    assert timed_seconds(cell) <= cell["total"] + 0.01
    failed = profile["cells"]["1/seed-0/raising"]
    assert failed["status"] == "failed" and "total" not in failed
    assert failed["fit_source"] == "none" and "explain_test" in failed


def test_real_explainers_and_metrics_match_sequential(synth_dir, tmp_path, shared_ray):
    check_a_real_explainer_and_every_metric_match(synth_dir, tmp_path, LOCAL)


def test_a_worker_killed_in_a_cell_is_retried_to_the_same_numbers(
    synth_dir, tmp_path, sequential, monkeypatch, own_ray
):
    check_a_killed_worker_is_retried(synth_dir, tmp_path, sequential, monkeypatch, LOCAL)


def test_a_worker_that_always_dies_fails_its_cell_after_the_retries(
    synth_dir, tmp_path, monkeypatch, own_ray
):
    monkeypatch.setenv(ENV, "task=KILL")  # no ONCE marker: every attempt dies
    summary = run_benchmark(
        grid_config(
            synth_dir, tmp_path / "out", tmp_path / "cache", folds=["1"], explainers=["random"]
        ),
        registry(),
        RayOptions(cpus=1, local_cpus=2, retries=0),
    )
    assert summary.computed == []
    [(fold, seed, name, error)] = summary.failed
    assert (fold, seed, name) == ("1", 0, "random")
    assert "died 1 time(s)" in error and "--ray-retries" in error


def test_ctrl_c_on_the_driver_cancels_tasks_and_keeps_finished_cells(synth_dir, tmp_path, own_ray):
    check_ctrl_c_keeps_finished_cells(synth_dir, tmp_path, LOCAL)
    assert not ray.is_initialized(), "the local Ray instance was left running"


def test_ray_settings_that_cannot_work_are_refused_before_any_work(synth_dir, tmp_path, own_ray):
    with pytest.raises(BenchError, match="--ray-gpus"):
        run_benchmark(
            grid_config(synth_dir, tmp_path / "out", tmp_path / "cache", device="cuda"),
            registry(),
            LOCAL,
        )
    assert not (tmp_path / "out").exists()
