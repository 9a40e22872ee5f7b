"""Scale-out on Ray: the benchmark grid as a task graph over processes, machines and GPUs.

Method. The grid's fold and cell tasks (:mod:`l2i_bench.tasks`, shared with the local
process pool of :mod:`l2i_bench.process_executor`) run as Ray tasks; this module is the
engine that submits them with the resources asked for, waits for them and cancels them.
Ray is the engine (scheduling, placement, retries, the object store); nothing here
schedules by hand.

Same numbers as the sequential executor: every task fixes torch's thread count to its
CPUs (``--threads`` when given), which on a CPU is part of the classifier's cache key
because it changes the trained weights. Compare a Ray run with a sequential run at the
same ``--threads``.

Storage. Must be the same path on every node: the data folder (``--data-dir``), the
cache (``--cache-dir``: decoded audio, classifier checkpoints, fitted explainers; on a
node that does not see it, a cell task trains its own copy of the fold's classifier,
with the same numbers on the same hardware and thread count, at the cost of the
training), and the installed packages (l2i-bench and every plugin package, the same
versions). Only the driver needs the output folder (``--out``). Through Ray's object
store travel the dataset object (paths and metadata, put once), each fold's facts, each
cell's record (about 100 kB) and its listening audio (a few 16-bit WAVs, about 1 MB).

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

What is ours: the mapping of the grid's tasks onto Ray's resources and errors. Cost: Ray's start (about 5 s for a local instance), and per cell the task round trip
plus, on a worker that last held another fold, rebuilding the workspace; measured by
``benchmarks/bench_executors.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from l2i_bench.errors import BenchError
from l2i_bench.grid import GridPlan, RunSummary, one_line
from l2i_bench.tasks import Outcome, cell_task, drive_tasks, fold_task
from l2i_bench.workspace import RunConfig

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
        engine = RayEngine(ray, ray_options)
        return drive_tasks(plan, engine, engine.record(threads), threads)
    finally:
        if started_here:
            ray.shutdown()


class RayEngine:
    """The :class:`~l2i_bench.tasks.TaskEngine` on Ray: every task with the resources
    and retries of ``--ray-*``."""

    def __init__(self, ray, ray_options: RayOptions) -> None:
        self.ray = ray
        self.options = ray_options
        resources = {
            "num_cpus": ray_options.cpus,
            "num_gpus": ray_options.gpus,
            "max_retries": ray_options.retries,
        }
        self.remote = {
            fold_task: ray.remote(fold_task).options(**resources),
            cell_task: ray.remote(cell_task).options(**resources),
        }
        self.refs: list[Any] = []

    def record(self, threads: int) -> dict[str, Any]:
        """The executor's entry in the manifest: Ray, the task resources, the cluster."""
        ray, options = self.ray, self.options
        return {
            "name": "ray",
            "ray_version": ray.__version__,
            "address": options.address or "local",
            "task_resources": {"CPU": options.cpus, "GPU": options.gpus},
            "task_threads": threads,
            "retries": options.retries,
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

    def share(self, value: Any) -> Any:
        return self.ray.put(value)

    def submit(self, task: Callable[..., Any], *args: Any) -> Hashable:
        ref = self.remote[task].remote(*args)
        self.refs.append(ref)
        return ref

    def finished(self, timeout: float) -> list[tuple[Hashable, Outcome]]:
        if not self.refs:
            return []
        done, self.refs = self.ray.wait(self.refs, num_returns=1, timeout=timeout)
        outcomes = []
        for ref in done:
            try:
                outcomes.append((ref, Outcome(value=self.ray.get(ref))))
            except self.ray.exceptions.RayError as err:
                outcomes.append((ref, Outcome(lost=_task_error(err, self.options.retries))))
        return outcomes

    def cancel(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)


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
