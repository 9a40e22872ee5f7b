"""Scale-out on Ray: the benchmark grid as a task graph over processes, machines and GPUs.

Method. One Ray task per (fold, seed) trains or reloads that fold's classifier (into the
cache) and returns its :class:`~l2i_bench.grid.FoldFacts`. As soon as one returns, the
driver keys that fold's cells exactly as the sequential runner does, skips the finished
ones, and submits one task per remaining cell, so cells of a ready fold run while other
folds still train. A cell task builds the fold's workspace (clips from the audio cache,
the classifier from the checkpoint its fold task wrote; a worker process keeps the last
workspace it built, so consecutive cells of one fold on one worker pay that once), runs
the runner's own :func:`~l2i_bench.runner.run_cell`, and returns the cell's JSON record
and its listening files as bytes. The driver writes them through the same
:class:`~l2i_bench.grid.GridLedger` as the sequential executor: it is the only process
that writes in the output folder, each cell file whole or not at all, the published CSVs
once at the end. Ray is the engine (scheduling, placement, retries, the object store);
nothing here schedules by hand.

Same numbers as the sequential executor: a cell's randomness is seeded from (seed, fold,
explainer) alone (:func:`~l2i_bench.workspace.derived_seed`), and every task fixes
torch's thread count to its CPUs (``--threads`` when given), which on a CPU is part of
the classifier's cache key because it changes the trained weights. Compare a Ray run
with a sequential run at the same ``--threads``.

Storage. Must be the same path on every node: the data folder (``--data-dir``), the
cache (``--cache-dir``: decoded audio, classifier checkpoints, fitted explainers; on a
node that does not see it, a cell task trains its own copy of the fold's classifier,
with the same numbers on the same hardware and thread count, at the cost of the
training), and the installed packages (l2i-bench and every plugin package, the same
versions). Only the driver needs the output folder (``--out``). Through Ray's object
store travel the dataset object (paths and metadata), each fold's facts, each cell's
record (about 100 kB) and its listening audio (a few 16-bit WAVs, about 1 MB).

Faults. A task whose worker process dies (killed, out of memory, node lost) is retried
by Ray up to ``--ray-retries`` times; an exception inside a cell is caught in the task
and returned as that cell's error (a retry would fail again), and a fold whose
classifier cannot be trained fails that fold's cells, not the run. Ctrl-C or SIGTERM on
the driver cancels the tasks still queued or running; every cell already returned is
on disk and published.

Profile. Fold and cell tasks return their stages' seconds with their values (a cell
task also the seconds it spent getting its fold's workspace, and whether it was its
worker's last one), and the driver's ledger keeps them in the manifest's profile
(:mod:`l2i_bench.profiling`): task seconds, which overlap across workers.

What is ours: the split into fold and cell tasks and the per-worker workspace memo.
Cost: Ray's start (about 5 s for a local instance), and per cell the task round trip
plus, on a worker that last held another fold, rebuilding the workspace; measured by
``benchmarks/bench_ray.py``.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from l2i_bench.determinism import apply_determinism
from l2i_bench.errors import BenchError
from l2i_bench.failpoints import failpoint
from l2i_bench.grid import (
    FoldFacts,
    GridLedger,
    GridPlan,
    RunSummary,
    fold_facts,
    one_line,
    this_node,
)
from l2i_bench.results import CellResult
from l2i_bench.signals import deadline
from l2i_bench.timing import resolve_device, stopwatch
from l2i_bench.types import Classifier, Dataset, Explainer, Metric
from l2i_bench.workspace import FoldWorkspace, RunConfig, config_hash

INSTALL_HINT = 'pip install "l2i-bench[ray]"  (or: pip install "ray>=2.40")'


@dataclass(frozen=True)
class RayOptions:
    """How the grid is spread over Ray (``--executor ray`` and its ``--ray-*`` flags);
    recorded in the manifest, never part of a cell's key."""

    address: str | None = None
    """None: start a local Ray instance on this machine; ``auto`` or ``HOST:PORT``: join
    an existing cluster."""
    cpus: int = 1
    """CPUs each task requests; also its torch thread count unless ``--threads``."""
    gpus: float = 0.0
    """GPUs each task requests (fractional shares one GPU between tasks)."""
    retries: int = 2
    """Times Ray retries a task whose worker process died."""
    local_cpus: int | None = None
    """CPUs of a local instance (None: the cores Ray sees)."""


def require_ray():
    """Ray, or an error that says how to install the extra."""
    try:
        import ray
    except ImportError as err:
        raise BenchError(
            "--executor ray needs the Ray package, which is not installed",
            f"install the extra: {INSTALL_HINT}",
        ) from err
    return ray


def check_ray_options(ray_options: RayOptions, config: RunConfig) -> None:
    """Ray missing, or settings that cannot work: refused before any work."""
    require_ray()
    if ray_options.cpus < 1:
        raise BenchError(
            f"--ray-cpus must be at least 1, got {ray_options.cpus}", "give whole CPUs per task"
        )
    if ray_options.gpus < 0:
        raise BenchError(
            f"--ray-gpus must be 0 or more, got {ray_options.gpus}", "give 0, a fraction or a count"
        )
    if ray_options.retries < 0:
        raise BenchError(
            f"--ray-retries must be 0 or more, got {ray_options.retries}", "give 0 or more retries"
        )
    if config.device.startswith("cuda") and ray_options.gpus == 0:
        raise BenchError(
            f"--device {config.device} with --executor ray, but the tasks request no GPU "
            "(Ray hides the GPUs from a task that does not ask for one)",
            "add --ray-gpus 1 (or a fraction such as 0.5 to share a GPU between two tasks)",
        )


def task_threads(ray_options: RayOptions, config: RunConfig) -> int:
    """Torch threads in each task: ``--threads`` when given, else the task's CPUs."""
    return int(config.threads) if config.threads else ray_options.cpus


# -- worker side -------------------------------------------------------------------------

_WORKSPACE: tuple[str, FoldWorkspace] | None = None
"""The last workspace this worker process built, reused by its next cell of that fold."""


def _workspace(
    dataset: Dataset,
    fold: str,
    config: RunConfig,
    architecture: type[Classifier],
    threads: int,
) -> tuple[FoldWorkspace, bool]:
    """The fold's workspace, and whether it was this worker's last one (not rebuilt)."""
    global _WORKSPACE
    apply_determinism(threads)
    device = resolve_device(config.device)
    key = config_hash(
        {
            "dataset": dataset.name,
            "fold": fold,
            "config": asdict(config),
            "device": str(device),
            "classifier": architecture.name,
        }
    )
    if _WORKSPACE is not None and _WORKSPACE[0] == key:
        return _WORKSPACE[1], True
    _WORKSPACE = None  # one fold's data in memory at a time
    ws = FoldWorkspace(dataset, fold, config, device, architecture)
    _WORKSPACE = (key, ws)
    return ws, False


def fold_task(
    dataset: Dataset,
    fold: str,
    config: RunConfig,
    architecture: type[Classifier],
    explainers: Sequence[type[Explainer]],
    threads: int,
) -> FoldFacts:
    """Train or reload the classifier of one (fold, seed); its facts for the driver."""
    started = time.perf_counter()
    ws, _ = _workspace(dataset, fold, config, architecture, threads)
    return fold_facts(ws, explainers, this_node(), seconds=time.perf_counter() - started)


def cell_task(
    dataset: Dataset,
    fold: str,
    config: RunConfig,
    architecture: type[Classifier],
    explainer: type[Explainer],
    metrics: Sequence[type[Metric]],
    run_id: str,
    key: str,
    settings: dict[str, Any],
    threads: int,
) -> dict[str, Any]:
    """One cell on a worker: its record, seconds, stage profile, node and listening
    files, or its error (with the stages it finished). The error is returned, not
    raised: Ray would retry a raised error for nothing."""
    from l2i_bench.runner import run_cell

    where = f"fold {fold} seed {config.seed} {explainer.name}"
    node = this_node()
    profile: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        ws, kept = _workspace(dataset, fold, config, architecture, threads)
        profile["workspace"] = time.perf_counter() - started
        profile["workspace_reused"] = kept
        with tempfile.TemporaryDirectory(prefix="l2i-bench-listen-") as tmp:
            with stopwatch(ws.device) as seconds, deadline(config.cell_timeout, where):
                cell = run_cell(ws, explainer, metrics, run_id, key, settings, Path(tmp), profile)
            listening = {
                str(Path("listen") / path.relative_to(tmp)): path.read_bytes()
                for path in sorted(Path(tmp).rglob("*"))
                if path.is_file()
            }
    except Exception as err:
        return {"error": one_line(err), "node": node, "profile": profile}
    failpoint("task")
    return {
        "cell": cell.to_json(),
        "seconds": seconds[0],
        "node": node,
        "listening": listening,
        "profile": profile,
    }


# -- driver side -------------------------------------------------------------------------


def run_grid_on_ray(plan: GridPlan, ray_options: RayOptions) -> RunSummary:
    """The grid on Ray; the same ledger, files and summary as the sequential executor."""
    ray = require_ray()
    threads = task_threads(ray_options, plan.config)
    started_here = not ray.is_initialized()  # else: the caller's Ray, left running
    if started_here:
        local = ray_options.address is None
        ray.init(
            address=ray_options.address,
            num_cpus=ray_options.local_cpus if local else None,
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=True,
        )
    try:
        return _drive(ray, plan, ray_options, threads)
    finally:
        if started_here:
            ray.shutdown()


def _drive(ray, plan: GridPlan, ray_options: RayOptions, threads: int) -> RunSummary:
    config, explainer_classes = plan.config, plan.explainers
    resources = {
        "num_cpus": ray_options.cpus,
        "num_gpus": ray_options.gpus,
        "max_retries": ray_options.retries,
    }
    remote_fold = ray.remote(fold_task).options(**resources)
    remote_cell = ray.remote(cell_task).options(**resources)
    executor = {
        "name": "ray",
        "ray_version": ray.__version__,
        "address": ray_options.address or "local",
        "task_resources": {"CPU": ray_options.cpus, "GPU": ray_options.gpus},
        "task_threads": threads,
        "retries": ray_options.retries,
        "cluster_resources": _plain_resources(ray.cluster_resources()),
        "cluster_nodes": [
            {
                "node_id": n.get("NodeID"),
                "host": n.get("NodeManagerHostname"),
                "address": n.get("NodeManagerAddress"),
                "resources": _plain_resources(n.get("Resources", {})),
            }
            for n in ray.nodes()
            if n.get("Alive")
        ],
    }
    ledger = GridLedger(plan, executor)
    shipped = copy.copy(plan.dataset)
    shipped.show_progress = False  # one bar, the driver's
    dataset_ref = ray.put(shipped)
    seed_configs = {
        seed: replace(config, seed=seed, show_progress=False) for seed in config.grid_seeds
    }
    pending: dict[Any, tuple[str, int, str | None]] = {}
    """Ray object ref -> (fold, seed, explainer name; None for the fold's own task)."""

    def submit_cells(facts: FoldFacts) -> None:
        for cls in explainer_classes:
            key = ledger.pending(facts, cls)
            if key is None:
                continue
            ref = remote_cell.remote(
                dataset_ref,
                facts.fold,
                seed_configs[facts.seed],
                plan.architecture,
                cls,
                plan.metrics,
                ledger.run_id,
                key,
                plan.settings,
                threads,
            )
            pending[ref] = (facts.fold, facts.seed, cls.name)

    for seed, seed_config in seed_configs.items():
        for fold in plan.folds:
            ref = remote_fold.remote(
                dataset_ref, fold, seed_config, plan.architecture, explainer_classes, threads
            )
            pending[ref] = (fold, seed, None)
    with ledger:
        try:
            while pending:
                # a short wait keeps Ctrl-C responsive: it lands between two waits
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in done:
                    fold, seed, name = pending.pop(ref)
                    try:
                        value = ray.get(ref)
                    except ray.exceptions.RayError as err:
                        error = _task_error(err, ray_options.retries)
                        if name is not None:
                            ledger.cell_failed(fold, seed, name, error)
                            continue
                        for cls in explainer_classes:
                            ledger.cell_failed(
                                fold, seed, cls.name, f"the classifier of this fold failed: {error}"
                            )
                        continue
                    if name is None:
                        ledger.fold_ready(value)
                        submit_cells(value)
                    elif "error" in value:
                        ledger.cell_failed(fold, seed, name, value["error"], value.get("profile"))
                    else:
                        ledger.cell_done(
                            CellResult.from_json(value["cell"]),
                            value["seconds"],
                            value["node"],
                            value["listening"],
                            value.get("profile"),
                        )
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    return ledger.summary()


def _task_error(err: Exception, retries: int) -> str:
    """A failed task as one line: the task's own exception, or how its worker died."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(err)):
        return one_line(cause)
    import ray.exceptions

    if isinstance(err, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        return (
            f"the worker running it died {retries + 1} time(s) ({type(err).__name__}); "
            "out of memory or killed? (fix: check `ray status` and the worker logs, "
            "or raise --ray-retries)"
        )
    return one_line(err)


def _plain_resources(resources: dict[str, Any]) -> dict[str, float]:
    """Ray's resource table without its per-node marker entries."""
    return {k: float(v) for k, v in resources.items() if not k.startswith("node:")}
