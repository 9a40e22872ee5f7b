"""The grid as tasks, for the executors that run it outside the driver's process.

Method. One task per (fold, seed) trains or reloads that fold's classifier (into the
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
once at the end.

The engine that runs the tasks is the executor's: Ray's task graph
(:mod:`l2i_bench.ray_executor`) or a pool of local worker processes
(:mod:`l2i_bench.process_executor`). Both give :func:`drive_tasks` the same three verbs
(:class:`TaskEngine`), so the order of events, the ledger's records and the handling of
a task that never returned are written once.

Same numbers as the sequential executor: a cell's randomness is seeded from (seed, fold,
explainer) alone (:func:`~l2i_bench.workspace.derived_seed`), and every task fixes
torch's thread count, which on a CPU is part of the classifier's cache key because it
changes the trained weights. Compare with a sequential run at the same ``--threads``.

What is ours: the split into fold and cell tasks and the per-worker workspace memo.
Cost: per cell the task round trip (a record of about 100 kB and a few WAVs, about
1 MB) plus, on a worker that last held another fold, rebuilding the workspace.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from l2i_bench.determinism import apply_determinism
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
    raised: an engine that retries lost tasks would retry it for nothing."""
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


@dataclass(frozen=True)
class Outcome:
    """What became of a submitted task: its return value, or why it never returned
    (``lost``: the worker died past its retries, or the task raised)."""

    value: Any = None
    lost: str | None = None


class TaskEngine(Protocol):
    """Where tasks run. ``share`` stands for a value every task reads (Ray puts it in its
    object store once; a process pool passes it as it is); ``submit`` takes a
    module-level task function (:func:`fold_task` or :func:`cell_task`) and its
    arguments; ``finished`` waits up to ``timeout`` seconds and returns the tasks that
    ended since the last call, each once; ``cancel`` stops every task still queued or
    running (Ctrl-C on the driver)."""

    def share(self, value: Any) -> Any: ...

    def submit(self, task: Callable[..., Any], *args: Any) -> Hashable: ...

    def finished(self, timeout: float) -> list[tuple[Hashable, Outcome]]: ...

    def cancel(self) -> None: ...


def drive_tasks(
    plan: GridPlan, engine: TaskEngine, executor: dict[str, Any], threads: int
) -> RunSummary:
    """Run the grid's fold and cell tasks on ``engine``, writing every result through
    one :class:`~l2i_bench.grid.GridLedger` (``executor``: its record in the manifest;
    ``threads``: torch threads in every task)."""
    config, explainer_classes = plan.config, plan.explainers
    ledger = GridLedger(plan, executor)
    quiet = copy.copy(plan.dataset)
    quiet.show_progress = False  # one bar, the driver's
    shipped = engine.share(quiet)
    seed_configs = {
        seed: replace(config, seed=seed, show_progress=False) for seed in config.grid_seeds
    }
    pending: dict[Hashable, tuple[str, int, str | None]] = {}
    """Task handle -> (fold, seed, explainer name; None for the fold's own task)."""

    def submit_cells(facts: FoldFacts) -> None:
        for cls in explainer_classes:
            key = ledger.pending(facts, cls)
            if key is None:
                continue
            handle = engine.submit(
                cell_task,
                shipped,
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
            pending[handle] = (facts.fold, facts.seed, cls.name)

    with ledger:
        try:
            for seed, seed_config in seed_configs.items():
                for fold in plan.folds:
                    handle = engine.submit(
                        fold_task,
                        shipped,
                        fold,
                        seed_config,
                        plan.architecture,
                        explainer_classes,
                        threads,
                    )
                    pending[handle] = (fold, seed, None)
            while pending:
                # a short wait keeps Ctrl-C responsive: it lands between two waits
                for handle, outcome in engine.finished(timeout=1.0):
                    fold, seed, name = pending.pop(handle)
                    if outcome.lost is not None:
                        if name is not None:
                            ledger.cell_failed(fold, seed, name, outcome.lost)
                            continue
                        for cls in explainer_classes:
                            ledger.cell_failed(
                                fold,
                                seed,
                                cls.name,
                                f"the classifier of this fold failed: {outcome.lost}",
                            )
                        continue
                    value = outcome.value
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
            engine.cancel()
            raise
    return ledger.summary()
