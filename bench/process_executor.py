"""Local scale-out without Ray: the grid's tasks on a pool of worker processes.

Why: one machine with many cores, or one GPU that a single process leaves mostly idle
(Kumar's CNN at 16 clips a batch keeps an H200 busy a small fraction of the time), runs
a grid of folds x seeds x explainers several times faster when cells run side by side,
and Ray, the scale-out engine for clusters, is an extra that is not everywhere (its
wheel alone is about 80 MB). ``--executor processes --workers N`` runs the same fold
and cell tasks as Ray (:mod:`l2i_bench.tasks`), through the same driver and ledger, on
the standard library's :class:`concurrent.futures.ProcessPoolExecutor`.

Method. ``N`` worker processes, started with ``spawn`` (a forked torch, and CUDA above
all, is unsafe), each fixing torch to ``--threads`` threads (default 1 per worker, and
``N`` defaults to the cores this process may use divided by that). Workers ignore
Ctrl-C, which is the driver's to handle: it cancels what is queued, terminates the
workers, and publishes every cell already returned; a driver killed outright takes its
workers with it (Linux's parent-death signal). Arguments and results travel by
pickle: plugin classes by their module path (an installed plugin package is importable
in the workers as in the driver; ``spawn`` also passes the driver's ``sys.path``).

Same numbers as the sequential executor at the same ``--threads`` (see
:mod:`l2i_bench.tasks`; tested), and the same files: workers only return values, the
driver writes.

Faults. An exception inside a cell fails that cell; one in a fold task (the classifier
cannot be trained) fails that fold's cells. A worker that dies (killed, out of memory)
breaks the whole pool, as the standard library's pool is built; the engine then starts
a new pool and resubmits every task that had not returned. The pool cannot say which
worker ran what, and it holds only as many tasks as it has workers (the rest wait in
the engine, cells of ready folds first), so every task it held counts one attempt, and
a task past its retries (2, ``ProcessOptions.retries``) fails its cell with the
reason; the rest go on.

What is ours: the queue in front of the pool (cells of ready folds first), the retry
rule above and the worker count. Cost: a worker's start (about
3 s: it imports torch) and per cell the pickling of its record and audio (about 1 MB);
on a GPU, one CUDA context per worker (about 0.5 GB of device memory each).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Hashable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

from l2i_bench.errors import BenchError
from l2i_bench.grid import GridPlan, RunSummary, one_line, this_node
from l2i_bench.tasks import Outcome, cell_task, drive_tasks
from l2i_bench.workspace import RunConfig


@dataclass(frozen=True)
class ProcessOptions:
    """``--executor processes`` and its flags; recorded in the manifest, never part of a
    cell's key."""

    workers: int | None = None
    """Worker processes (None: the usable cores divided by each worker's threads)."""
    retries: int = 2
    """Attempts a task may lose to a dying worker beyond its first."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_layout(options: ProcessOptions, config: RunConfig) -> tuple[int, int]:
    """``(workers, torch threads per worker)``: ``--threads`` or 1 thread each, and as
    many workers as the usable cores hold unless ``--workers`` says."""
    threads = int(config.threads) if config.threads else 1
    workers = options.workers or max(1, usable_cores() // threads)
    return workers, threads


def check_process_options(options: ProcessOptions) -> None:
    """Settings that cannot work, refused before any work."""
    if options.workers is not None and options.workers < 1:
        raise BenchError(
            f"--workers must be at least 1, got {options.workers}", "give 1 or more workers"
        )
    if options.retries < 0:
        raise BenchError(f"retries must be 0 or more, got {options.retries}", "give 0 or more")


def run_grid_in_processes(plan: GridPlan, options: ProcessOptions) -> RunSummary:
    """The grid on a local process pool; the same ledger, files and summary as the
    sequential executor."""
    workers, threads = worker_layout(options, plan.config)
    engine = ProcessEngine(workers, options.retries, threads)
    record = {
        "name": "processes",
        "node": this_node(),
        "workers": workers,
        "task_threads": threads,
        "start_method": "spawn",
        "retries": options.retries,
    }
    try:
        return drive_tasks(plan, engine, record, threads)
    finally:
        engine.close()


def _lost_with_the_pool(future: Future) -> bool:
    """The future's task never returned because the pool broke (or was to be cancelled
    with it); a task's own exception is not that."""
    if future.cancelled() or not future.done():
        return True
    return isinstance(future.exception(), BrokenProcessPool)


def _worker_start(driver: int, threads: int) -> None:
    """Worker initialiser. Ctrl-C reaches the whole process group, but stopping the
    grid is the driver's job (it terminates the workers itself), so workers ignore it.
    The BLAS and OpenMP pools of numpy and scikit-learn get the worker's thread count,
    as torch does in each task, so that N workers do not start N pools of every core.
    A driver killed outright (kill -9, out of memory) cannot terminate them, and they
    would hold a core or a CUDA context for good: on Linux the kernel kills a worker
    when its driver dies (``PR_SET_PDEATHSIG``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threadpool_limits(limits=threads)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            return
    if os.getppid() != driver:  # the driver died before the request took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1


@dataclass
class _Task:
    function: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future | None = None
    """None while the task waits in the engine's own queue."""
    attempts: int = 0


@dataclass
class ProcessEngine:
    """The :class:`~l2i_bench.tasks.TaskEngine` on a local process pool.

    The pool holds at most ``workers`` tasks, so each one it holds is running (its
    own queue would hand tasks to workers first come, first served); the rest wait
    here, and cells go before fold tasks: a worker keeps the last fold's workspace,
    so the cells of the fold it just made run on it without rebuilding it, and a
    ready fold's cells do not wait behind the training of every other fold."""

    workers: int
    retries: int
    threads: int = 1
    tasks: dict[int, _Task] = field(default_factory=dict)
    waiting: list[int] = field(default_factory=list)
    _next_id: int = 0
    _pool: ProcessPoolExecutor | None = None

    @property
    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(os.getpid(), self.threads),
            )
        return self._pool

    def share(self, value: Any) -> Any:
        return value

    def submit(self, task: Callable[..., Any], *args: Any) -> Hashable:
        handle = self._next_id
        self._next_id += 1
        self.tasks[handle] = _Task(task, args)
        self.waiting.append(handle)
        self._fill()
        return handle

    def _fill(self) -> None:
        """Hand waiting tasks to free workers, cells first, each kind in order."""
        running = sum(1 for t in self.tasks.values() if t.future is not None)
        while running < self.workers and self.waiting:
            cells = [h for h in self.waiting if self.tasks[h].function is cell_task]
            handle = cells[0] if cells else self.waiting[0]
            self.waiting.remove(handle)
            task = self.tasks[handle]
            task.attempts += 1
            try:
                task.future = self.pool.submit(task.function, *task.args)
            except BrokenProcessPool as err:  # a worker died since the last wait
                task.future = Future()
                task.future.set_exception(err)
            running += 1

    def finished(self, timeout: float) -> list[tuple[Hashable, Outcome]]:
        # Filled here rather than when a task ends: the driver answers a finished
        # fold with its cells, which must not find the freed worker taken by a fold.
        self._fill()
        futures = {t.future: h for h, t in self.tasks.items() if t.future is not None}
        if not futures:
            return []
        done, _ = wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
        if any(_lost_with_the_pool(f) for f in done):
            return self._after_a_worker_died()
        return [(futures[f], self._outcome(futures[f])) for f in done]

    def _outcome(self, handle: int) -> Outcome:
        future = self.tasks.pop(handle).future
        assert future is not None
        error = future.exception()
        if error is not None:
            return Outcome(lost=one_line(error))
        return Outcome(value=future.result())

    def _after_a_worker_died(self) -> list[tuple[Hashable, Outcome]]:
        """The pool is broken: report what returned before it broke; every task it was
        running has used an attempt, and goes back to the front of the queue unless it
        has used them all."""
        assert self._pool is not None
        # a broken pool fails every pending future itself; waiting settles them all
        self._pool.shutdown(wait=True)
        self._pool = None
        outcomes = []
        again = []
        for handle, task in list(self.tasks.items()):
            if task.future is None:
                continue
            if not _lost_with_the_pool(task.future):
                outcomes.append((handle, self._outcome(handle)))
            elif task.attempts > self.retries:
                del self.tasks[handle]
                outcomes.append(
                    (
                        handle,
                        Outcome(
                            lost=f"a worker process died while it ran, {task.attempts} "
                            "time(s); out of memory or killed? (fix: check the memory "
                            "each worker needs, or use fewer --workers; a script that "
                            "runs the grid itself needs `if __name__ == '__main__':`, "
                            "since spawned workers import it)"
                        ),
                    )
                )
            else:
                task.future = None
                again.append(handle)
        self.waiting[:0] = again
        return outcomes

    def cancel(self) -> None:
        """Drop what waits and terminate the workers (they ignore Ctrl-C)."""
        self.waiting.clear()
        if self._pool is None:
            return
        # The standard library's pool has no public way to stop a running task. Shut
        # it down first (its manager thread then fails the pending futures itself;
        # cancelling them here first would make it fail on a cancelled one), then end
        # the workers it had.
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)

    def close(self) -> None:
        """End of the grid: wait for an idle pool to stop; a pool still holding tasks
        (the driver gave up on them) is terminated instead of waited for."""
        if any(task.future is not None for task in self.tasks.values()):
            self.cancel()
        elif self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
