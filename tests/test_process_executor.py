"""`--executor processes`: the grid on a local pool of worker processes gives the
sequential executor's numbers and files, fails only a raising cell, survives a killed
worker, stops on Ctrl-C, and refuses settings that cannot work.

The grids use the tiny synth and cheap plugins of ``fault_plugins`` (2 folds x 2
explainers, one of them learned and cached), plus one grid of a real explainer and every
metric. Every run starts its own pool: workers are spawned (about 3 s each: torch's
import) and take the test's environment, the failpoints included, when they start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
from fault_plugins import registry

from l2i_bench.errors import BenchError
from l2i_bench.failpoints import ENV
from l2i_bench.process_executor import ProcessEngine, ProcessOptions, worker_layout
from l2i_bench.runner import RunConfig, run_benchmark

pytestmark = [
    pytest.mark.xdist_group("processes"),
    pytest.mark.usefixtures("workers_import_the_test_plugins"),
]
TWO = ProcessOptions(workers=2)


def _children(parent: int | None = None) -> set[int]:
    """Live worker processes of ``parent`` (default: this process; Linux /proc), to see
    that none is left; the multiprocessing resource tracker, which lives as long as
    its parent, is not one."""
    parent = os.getpid() if parent is None else parent
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        alive = int(fields[1]) == parent and fields[0] != "Z"
        if alive and b"resource_tracker" not in command:
            found.add(int(entry.name))
    return found


def test_processes_give_the_sequential_numbers_and_files(synth_dir, tmp_path, sequential):
    out = tmp_path / "out"
    # its own cache: every classifier and fit is made again in the workers
    summary = run_benchmark(grid_config(synth_dir, out, tmp_path / "cache"), registry(), TWO)
    assert sorted(summary.computed) == [(f, e) for f in ("1", "2") for e in ("profile", "random")]
    assert summary.failed == []
    expected = cell_values(sequential, "synth-tiny")
    assert len(expected) == 4
    assert cell_values(out, "synth-tiny") == expected
    assert len(listening_files(sequential, "synth-tiny")) >= 4
    assert listening_files(out, "synth-tiny") == listening_files(sequential, "synth-tiny")
    manifest = json.loads(summary.manifest.read_text())
    assert manifest["status"] == "finished"
    executor = manifest["executor"]
    assert (executor["name"], executor["workers"], executor["task_threads"]) == (
        "processes",
        2,
        1,
    )
    assert manifest["profile"]["executor"] == "processes"
    cell = manifest["profile"]["cells"]["1/seed-0/profile"]
    assert cell["status"] == "done" and isinstance(cell["workspace_reused"], bool)
    assert not _children(), "a worker process was left running"

    # Finished cells are skipped on a rerun, and --force recomputes them.
    again = run_benchmark(grid_config(synth_dir, out, tmp_path / "cache"), registry(), TWO)
    assert (again.computed, len(again.skipped)) == ([], 4)
    forced = run_benchmark(
        grid_config(synth_dir, out, tmp_path / "cache", force=True, explainers=["random"]),
        registry(),
        TWO,
    )
    assert sorted(forced.computed) == [("1", "random"), ("2", "random")]
    assert cell_values(out, "synth-tiny") == expected


def test_a_ready_folds_cells_run_before_the_next_folds_training(synth_dir, tmp_path, sequential):
    """One worker: fold 1's classifier, then fold 1's cells on the workspace the worker
    kept, then fold 2 (a first-come queue would train fold 2 first and rebuild fold 1's
    workspace for its cells)."""
    summary = run_benchmark(
        grid_config(synth_dir, tmp_path / "out", sequential.parent / "cache"),
        registry(),
        ProcessOptions(workers=1),
    )
    manifest = json.loads(summary.manifest.read_text())
    cells = manifest["profile"]["cells"]
    assert len(cells) == 4
    assert {key: cell["workspace_reused"] for key, cell in cells.items()} == {
        f"{f}/seed-0/{e}": True for f in "12" for e in ("profile", "random")
    }
    order = [(fold, name) for fold, _, name, _ in manifest["cells"]["computed"]]
    assert [fold for fold, _ in order] == ["1", "1", "2", "2"]


def test_a_raising_explainer_fails_only_its_cell(synth_dir, tmp_path, sequential):
    check_a_raising_explainer_fails_only_its_cell(synth_dir, tmp_path, sequential, TWO)


def test_real_explainers_and_metrics_match_sequential(synth_dir, tmp_path):
    check_a_real_explainer_and_every_metric_match(synth_dir, tmp_path, ProcessOptions(workers=1))


def test_a_worker_killed_in_a_cell_is_retried_to_the_same_numbers(
    synth_dir, tmp_path, sequential, monkeypatch
):
    check_a_killed_worker_is_retried(synth_dir, tmp_path, sequential, monkeypatch, TWO)


def test_a_worker_that_always_dies_fails_its_cell_after_the_retries(
    synth_dir, tmp_path, sequential, monkeypatch
):
    monkeypatch.setenv(ENV, "task=KILL")  # no ONCE marker: every attempt dies
    summary = run_benchmark(
        grid_config(
            synth_dir,
            tmp_path / "out",
            sequential.parent / "cache",
            folds=["1"],
            explainers=["random"],
        ),
        registry(),
        ProcessOptions(workers=1, retries=1),
    )
    assert summary.computed == []
    [(fold, seed, name, error)] = summary.failed
    assert (fold, seed, name) == ("1", 0, "random")
    assert "died while it ran, 2 time(s)" in error and "--workers" in error
    assert not _children()


def test_ctrl_c_on_the_driver_stops_the_workers_and_keeps_finished_cells(synth_dir, tmp_path):
    check_ctrl_c_keeps_finished_cells(synth_dir, tmp_path, TWO)
    deadline = time.monotonic() + 10
    while _children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _children(), "a worker process was left running"


def test_workers_die_with_a_driver_killed_outright(synth_dir, tmp_path):
    """kill -9 of the driver while a worker runs an hour-long cell: the worker does not
    live on (holding a core, or a GPU's memory) once its driver is gone."""
    script = tmp_path / "driver.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from fault_plugins import registry, tiny_config\n"
        "from l2i_bench.process_executor import ProcessOptions\n"
        "from l2i_bench.runner import run_benchmark\n"
        "if __name__ == '__main__':  # spawn imports the main module in each worker\n"
        "    out = Path(sys.argv[1])\n"
        "    config = tiny_config(Path(sys.argv[2]), out / 'out', out / 'cache',"
        " explainers=['hanging'])\n"
        "    run_benchmark(config, registry(), ProcessOptions(workers=1))\n"
    )
    log = tmp_path / "driver.log"
    driver = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), str(synth_dir)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while not workers and time.monotonic() < deadline:
            time.sleep(0.5)
            workers = {pid for pid in _children(driver.pid) if b"spawn_main" in _command(pid)}
        assert workers, f"the driver started no worker: {log.read_text()[-2000:]}"
        # the worker trained the fold's classifier and went on to the hanging cell
        classifiers = tmp_path / "cache" / "classifiers"
        while not list(classifiers.glob("*.pt")) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)
        assert all(_alive(pid) for pid in workers)
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "a worker outlived its driver"
    finally:
        driver.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)  # an orphan of a failing run: not left behind


def _command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_workers_blas_and_openmp_pools_get_its_thread_count(monkeypatch):
    """Without the limit, every worker's numpy and scikit-learn pools would start a
    thread per core (2 here), N workers oversubscribing the machine N times; the
    environment the suite runs in (OMP_NUM_THREADS=1) is taken away to show it."""
    from threadpoolctl import threadpool_info

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)

    engine = ProcessEngine(workers=1, retries=0, threads=1)
    try:
        handle = engine.submit(threadpool_info)
        outcomes = []
        deadline = time.monotonic() + 120
        while not outcomes and time.monotonic() < deadline:
            outcomes = engine.finished(timeout=1.0)
    finally:
        engine.close()
    [(returned, outcome)] = outcomes
    assert returned == handle and outcome.lost is None
    pools = outcome.value
    assert pools, "no BLAS or OpenMP pool is loaded in a worker"
    assert {pool["num_threads"] for pool in pools} == {1}


def test_worker_layout_follows_threads_and_cores(monkeypatch):
    monkeypatch.setattr("l2i_bench.process_executor.usable_cores", lambda: 16)

    def layout(workers, threads):
        config = RunConfig(dataset="synth", explainers=["random"], threads=threads)
        return worker_layout(ProcessOptions(workers=workers), config)

    assert layout(None, None) == (16, 1)  # one thread a worker, one worker a core
    assert layout(None, 4) == (4, 4)
    assert layout(None, 32) == (1, 32)
    assert layout(3, 2) == (3, 2)


def test_settings_that_cannot_work_are_refused_before_any_work(synth_dir, tmp_path):
    with pytest.raises(BenchError, match="--workers must be at least 1"):
        run_benchmark(
            grid_config(synth_dir, tmp_path / "out", tmp_path / "cache"),
            registry(),
            ProcessOptions(workers=0),
        )
    assert not (tmp_path / "out").exists()
    cli = [sys.executable, "-m", "l2i_bench.cli", "run", "--dataset", "synth"]
    result = subprocess.run([*cli, "--workers", "2"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "--workers given without --executor processes" in result.stderr
    assert "add --executor processes" in result.stderr
