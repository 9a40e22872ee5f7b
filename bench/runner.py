"""The benchmark grid: dataset x seed x fold x explainer cells, resumable, timed, scored.

Data flow, in order: :func:`run_benchmark` checks everything that needs no work and
settles a :class:`~l2i_bench.grid.GridPlan` -> for each seed and fold,
:class:`FoldWorkspace` loads the clips and trains (or reloads) the classifier plugin of
that seed -> each explainer is fitted on the training split and explains the test clips
(:func:`run_cell`) -> every metric plugin scores the cell -> the
:class:`~l2i_bench.grid.GridLedger` writes the cell atomically and, at the end, rebuilds
the published CSVs from all cells on disk. This module is the sequential executor;
:mod:`l2i_bench.process_executor` (a local process pool) and
:mod:`l2i_bench.ray_executor` (Ray) run the same folds and cells as tasks
(:mod:`l2i_bench.tasks`) through the same ledger. A finished cell is never recomputed unless ``force`` is set or its
configuration changed, so an interrupted run resumes where it stopped. Every stage of a
fold and a cell is timed on its way (:mod:`l2i_bench.profiling`; ``run --profile``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from l2i_bench.cache import ensure_writable, folder_lock, remove_stale_temporaries
from l2i_bench.data import ClipSet
from l2i_bench.determinism import apply_determinism
from l2i_bench.errors import BenchError
from l2i_bench.grid import GridLedger, GridPlan, RunSummary, fold_facts, one_line, this_node
from l2i_bench.listening import write_listening_examples
from l2i_bench.options import check_options
from l2i_bench.process_executor import (
    ProcessOptions,
    check_process_options,
    run_grid_in_processes,
)
from l2i_bench.ray_executor import RayOptions, check_ray_options, run_grid_on_ray
from l2i_bench.registry import Registry
from l2i_bench.results import (
    SHARED_SETTINGS,
    CellResult,
    Score,
    clean_float,
    pack_rows,
    read_cells,
    recover_publish,
    write_json_atomic,
)
from l2i_bench.signals import deadline, terminate_as_interrupt
from l2i_bench.timing import PeakMemory, device_name, resolve_device, stage, stopwatch
from l2i_bench.types import (
    ConditionSet,
    Evaluation,
    Explainer,
    ExplanationSet,
    MaskDomain,
    Metric,
    RowValues,
    Timing,
)
from l2i_bench.workspace import (
    FoldWorkspace,
    RunConfig,
    run_settings,
    seed_everything,
)

__all__ = ["FoldWorkspace", "RunConfig", "RunSummary", "prepared_grid", "run_benchmark"]


def explain_set(
    explainer: Explainer,
    clips: ClipSet,
    rows: torch.Tensor,
    classes: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    desc: str,
    show_progress: bool,
) -> tuple[ExplanationSet, list[float]]:
    """Explain the given (row, class) pairs in batches; returns the CPU explanation set
    and the milliseconds per explained row of each batch (synchronised on CUDA)."""
    masks, relevances, waves, ms_per_row = [], [], [], []
    domains: set[MaskDomain] = set()
    extras: dict[str, list[torch.Tensor]] = {}
    for start in tqdm(
        range(0, len(rows), batch_size),
        desc=desc,
        unit="batch",
        disable=not show_progress,
        leave=False,
    ):
        batch_rows = rows[start : start + batch_size]
        batch_classes = classes[start : start + batch_size].to(device)
        batch = clips.batch(batch_rows.numpy())
        with stopwatch(device) as elapsed:
            explanation = explainer.explain(batch, batch_classes)
            _check_explanation(explainer.name, explanation, batch.spec.shape, relevances)
            wave = explanation.waveform
            if wave is None:
                wave = clips.front_end.apply_mask(
                    batch.spec, explanation.mask, clips.num_samples, explanation.mask_domain
                )
        if tuple(wave.shape) != (len(batch_rows), clips.num_samples) or not bool(
            torch.isfinite(wave).all()
        ):
            raise BenchError(
                f"explainer {explainer.name!r} returned an interpretation waveform of shape "
                f"{tuple(wave.shape)} or with NaN/inf samples, expected "
                f"{(len(batch_rows), clips.num_samples)} finite samples",
                "fix the explainer plugin's Explanation.waveform (or leave it None)",
            )
        domains.add(MaskDomain(explanation.mask_domain))
        ms_per_row.extend([1000.0 * elapsed[0] / len(batch_rows)] * len(batch_rows))
        masks.append(explanation.mask.detach().float().cpu())
        waves.append(wave.detach().float().cpu())
        if explanation.relevance is not None:
            relevances.append(explanation.relevance.detach().float().cpu())
        for key, value in explanation.extra.items():
            extras.setdefault(key, []).append(value.detach().cpu())
    if len(domains) > 1:
        raise BenchError(
            f"explainer {explainer.name!r} returned masks in several domains "
            f"({', '.join(sorted(domains))}) within one set",
            "fix the explainer plugin: one cell's masks share one MaskDomain",
        )
    freqs, frames = clips.batch([0]).spec.shape[1:] if len(clips) else (0, 0)
    result = ExplanationSet(
        rows=rows.clone(),
        classes=classes.clone(),
        mask=torch.cat(masks) if masks else torch.zeros(0, freqs, frames),
        relevance=torch.cat(relevances) if len(relevances) == len(masks) and relevances else None,
        waveform=torch.cat(waves) if waves else torch.zeros(0, clips.num_samples),
        extra={k: torch.cat(v) for k, v in extras.items()},
        mask_domain=domains.pop() if domains else MaskDomain.LINEAR,
    )
    return result, ms_per_row


def _check_explanation(
    name: str, explanation: Any, spec_shape: torch.Size, earlier: list[torch.Tensor]
) -> None:
    """An explainer's output checked before anything uses it: a wrong shape or value
    fails the cell with a message naming the plugin, not a traceback from deep inside
    the resynthesis or a metric."""
    mask = explanation.mask
    if not isinstance(mask, torch.Tensor) or mask.shape != spec_shape:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise BenchError(
            f"explainer {name!r} returned a mask of shape {shape}, "
            f"expected {tuple(spec_shape)} (batch, frequency, frame)",
            "fix the explainer plugin: masks live on the input's linear STFT grid",
        )
    if not torch.isfinite(mask).all() or mask.min() < -1e-6 or mask.max() > 1 + 1e-6:
        raise BenchError(
            f"explainer {name!r} returned a mask outside [0, 1] or with NaN/inf values",
            "fix the explainer plugin: masks are linear-magnitude gains in [0, 1]",
        )
    relevance = explanation.relevance
    if relevance is None:
        return
    units = earlier[0].shape[1] if earlier else None
    if (
        not isinstance(relevance, torch.Tensor)
        or relevance.ndim != 2
        or relevance.shape[0] != spec_shape[0]
        or (units is not None and relevance.shape[1] != units)
    ):
        shape = tuple(relevance.shape) if isinstance(relevance, torch.Tensor) else relevance
        expected = f"({spec_shape[0]}, {units if units is not None else 'units'})"
        raise BenchError(
            f"explainer {name!r} returned a relevance of shape {shape}, expected {expected} "
            "(batch, the explainer's units, the same units for every batch)",
            "fix the explainer plugin's Explanation.relevance",
        )
    if not torch.isfinite(relevance).all():
        raise BenchError(
            f"explainer {name!r} returned a relevance with NaN or infinite values",
            "fix the explainer plugin's Explanation.relevance",
        )


def score_cell(
    metrics: Sequence[type[Metric]],
    evaluation: Evaluation,
    seconds: dict[str, float] | None = None,
) -> tuple[list[Score], dict[str, RowValues]]:
    """Every metric's columns, and the per-row values behind those that have them; a
    metric that does not apply publishes empty values with its reason, never a silent
    zero. A column's ``n`` is the number of rows its value rests on. ``seconds``, when
    given, receives each metric's wall time (its cost, published in the cell)."""
    scores: list[Score] = []
    row_values: dict[str, RowValues] = {}
    for metric_cls in metrics:
        metric = metric_cls()
        reason = metric.not_applicable(evaluation)
        values: Mapping[str, float | RowValues] = {}
        if reason is None:
            try:
                started = time.perf_counter()
                values = metric.compute(evaluation)
                if seconds is not None:
                    seconds[metric.name] = round(time.perf_counter() - started, 3)
            except BenchError:
                raise
            except Exception as err:
                raise BenchError(
                    f"metric {metric.name!r} failed on explainer {evaluation.explainer_name!r} "
                    f"(fold {evaluation.fold}): {type(err).__name__}: {err}",
                    "this is a bug in the metric plugin; report it with the command you ran",
                ) from err
        declared = {c.name for c in metric.columns}
        for key, raw in values.items():
            # Row values on other sets (``column@set``), kept for the validity check.
            if key not in declared and "@" in key and isinstance(raw, RowValues):
                row_values[key] = raw
        for column in metric.columns:
            raw = values.get(column.name) if reason is None else None
            n = len(evaluation.explanations.rows)
            if isinstance(raw, RowValues):
                row_values[column.name] = raw
                n = len(raw)
            value = clean_float(None if raw is None else float(raw))
            note = reason or ""
            if reason is None and value is None:
                note = "not finite or not computed"
            scores.append(
                Score(
                    metric=metric.name,
                    column=column.name,
                    value=value,
                    direction=str(column.direction),
                    unit=column.unit,
                    variant=column.variant,
                    note=note,
                    n=n,
                    meta_evaluated=column.meta_evaluated,
                )
            )
    return scores, row_values


def run_cell(
    ws: FoldWorkspace,
    explainer_cls: type[Explainer],
    metrics: Sequence[type[Metric]],
    run_id: str,
    config_key: str,
    settings: dict[str, Any] | None = None,
    listen_root: Path | None = None,
    profile: dict[str, Any] | None = None,
) -> CellResult:
    """One cell computed: fit (or reload) the explainer, explain, score. Listening
    examples go under ``listen_root`` (``<out>/<dataset>/listen``; None: none).
    ``profile``, when given, receives the seconds of each stage as it ends (a failed
    cell's profile holds the stages it finished): ``fit`` with ``fit_source``,
    ``explain_test``, ``surrogate``, ``explain_conditions``, ``evaluation``,
    ``metrics`` (per metric) and ``listening``; the cell file's keys stay as they were."""
    config = ws.config
    device = ws.device
    profile = {} if profile is None else profile
    with PeakMemory(device) as memory:
        explainer, fit_info, fit_seconds, explained, ms, surrogate, conditions = _explain_cell(
            ws, explainer_cls, profile
        )
    timing = Timing(
        fit_seconds=fit_seconds,
        explain_ms_per_clip=ms,
        peak_memory_mb=memory.peak_mb,
        device_name=device_name(device),
    )
    evaluated = time.perf_counter()
    evaluation = Evaluation(
        dataset=ws.dataset.name,
        fold=ws.fold,
        task=ws.dataset.task,
        class_names=ws.dataset.class_names,
        explainer_name=explainer_cls.name,
        explainer_has_surrogate=explainer_cls.has_surrogate,
        explainer_is_reference=explainer_cls.reference,
        classifier=ws.model,
        front_end=ws.front_end,
        device=device,
        seed=explainer.context.seed,
        test=ws.test.batch(np.arange(len(ws.test))).to("cpu"),
        classifier_logits=ws.test_logits,
        decision_thresholds=ws.thresholds,
        surrogate_logits=surrogate,
        explanations=explained,
        conditions=conditions,
        timing=timing,
        show_progress=config.show_progress,
        refit_explainer=lambda classifier, tag: ws.fitted_explainer(
            explainer_cls, classifier=classifier, tag=tag
        )[0],
    )
    profile["evaluation"] = time.perf_counter() - evaluated  # the test set's STFTs
    metric_seconds: dict[str, float] = {}
    profile["metrics"] = metric_seconds  # filled as each metric ends
    scores, row_values = score_cell(metrics, evaluation, metric_seconds)
    # one seed is enough to hear
    if listen_root is not None and config.listen and config.seed == config.grid_seeds[0]:
        with stage(profile, "listening", device):
            write_listening_examples(
                Path(listen_root) / f"fold-{ws.fold}",
                explainer_cls.name,
                ws.test.clips,
                ws.dataset.class_names,
                explained,
                ws.test.waveform,
                config.listen,
                conditions,
            )
    return CellResult(
        dataset=ws.dataset.name,
        fold=ws.fold,
        explainer=explainer_cls.name,
        explainer_version=str(explainer_cls.version),
        seed=config.seed,
        config_key=config_key,
        run_id=run_id,
        device=timing.device_name,
        classifier_sha256=ws.classifier.checkpoint_sha256,
        scores=scores,
        fit={
            **_jsonable(fit_info),
            "fit_seconds": fit_seconds,
            "metric_seconds": dict(metric_seconds),
        },
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        reference=explainer_cls.reference,
        settings=dict(settings or {}),
        rows=pack_rows(row_values),
    )


def _explain_cell(ws: FoldWorkspace, explainer_cls: type[Explainer], profile: dict[str, Any]):
    """Fit (or reload) the explainer and explain the test set and every condition set;
    this is the part of a cell whose time and memory are the explainer's cost. Each
    stage's seconds go into ``profile`` (a fit from the cache: the seconds spent loading
    it, with the original fit's in ``fit_original_seconds``)."""
    config = ws.config
    device = ws.device
    with stage(profile, "fit", device):
        explainer, fit_info, fit_seconds = ws.fitted_explainer(explainer_cls)
    profile["fit_source"] = fit_source(explainer_cls, fit_info)
    if profile["fit_source"] == "cache":
        profile["fit_original_seconds"] = fit_seconds
    seed_everything(explainer.context.seed)
    rows, classes = ws.explained_rows(ws.test_logits)
    with stage(profile, "explain_test", device):
        explained, ms = explain_set(
            explainer,
            ws.test,
            rows,
            classes,
            batch_size=config.batch_size,
            device=device,
            desc=f"{explainer_cls.name} fold {ws.fold}",
            show_progress=config.show_progress,
        )
    surrogate = None
    if explainer_cls.has_surrogate:
        with torch.no_grad(), stage(profile, "surrogate", device):
            surrogate = torch.cat(
                [explainer.predict(b).float().cpu() for b in ws.test.batches(config.batch_size)]
            )
    conditions = {}
    with stage(profile, "explain_conditions", device):
        for name, clips in ws.conditions.items():
            targets = torch.tensor([c.labels[0] for c in clips.clips])
            conditions[name] = explain_condition(
                ws, explainer, name, torch.arange(len(clips)), targets, config.show_progress
            )
    # A reused fit never read its fit-time options, so only a fresh fit can tell.
    unused = explainer.context.unused_options()
    if unused and "reused_cache" not in fit_info:
        tqdm.write(
            f"warning: {explainer_cls.name} never read option(s) {', '.join(unused)}: "
            "check their spelling in the explainer's docstring"
        )
    return explainer, fit_info, fit_seconds, explained, ms, surrogate, conditions


def explain_condition(
    ws: FoldWorkspace,
    explainer: Explainer,
    name: str,
    rows: torch.Tensor,
    targets: torch.Tensor,
    show_progress: bool,
) -> ConditionSet:
    """Mixtures ``rows`` of condition set ``name`` explained for their ``targets``, with
    the whole set's clips, stems and logits that the metrics and the listening examples
    read beside them."""
    clips = ws.conditions[name]
    explained, _ = explain_set(
        explainer,
        clips,
        rows,
        targets,
        batch_size=ws.config.batch_size,
        device=ws.device,
        desc=f"{explainer.name} {name}",
        show_progress=show_progress,
    )
    return ConditionSet(
        name=name,
        batch=clips.batch(np.arange(len(clips))).to("cpu"),
        stems=ws.condition_stems[name],
        explanations=explained,
        classifier_logits=ws.condition_logits[name],
    )


def fit_source(cls: type[Explainer], fit_info: Mapping[str, Any]) -> str:
    """Where a cell's fitted explainer came from: ``fitted`` now, loaded from the
    ``cache``, or ``none`` (nothing to fit)."""
    if not cls.needs_training:
        return "none"
    return "cache" if "reused_cache" in fit_info else "fitted"


def _jsonable(info: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in info.items():
        if isinstance(value, (torch.Tensor, np.generic | np.ndarray)):
            value = value.tolist()
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            value = repr(value)
        out[str(key)] = value
    return out


def run_benchmark(
    config: RunConfig,
    registry: Registry,
    executor: RayOptions | ProcessOptions | None = None,
) -> RunSummary:
    """Run the grid and publish; safe to interrupt (Ctrl-C, SIGTERM, kill -9) and rerun.

    Everything that can be checked without work is checked first (plugins, folds,
    writable folders, settings of the cells already on disk); the output folder is then
    locked for the run (a second run on it waits), and a failing, invalid or hanging
    explainer fails only its own cell. ``executor``: None runs every cell in this process;
    :class:`~l2i_bench.process_executor.ProcessOptions` on a local process pool,
    :class:`~l2i_bench.ray_executor.RayOptions` as Ray tasks; the same files and
    numbers."""
    with prepared_grid(config, registry, executor) as plan, terminate_as_interrupt():
        if isinstance(executor, RayOptions):
            return run_grid_on_ray(plan, executor)
        if isinstance(executor, ProcessOptions):
            return run_grid_in_processes(plan, executor)
        return _run_grid(plan)


@contextlib.contextmanager
def prepared_grid(
    config: RunConfig,
    registry: Registry,
    executor: RayOptions | ProcessOptions | None = None,
    *,
    keep_cells: bool = True,
) -> Iterator[GridPlan]:
    """The grid's plan, checked and prepared, inside the output folder's lock: what every
    pass over the grid starts from (a scored run, ``run --listen-only``). ``keep_cells``
    False: the pass writes no cells, so stored cells of other settings do not matter."""
    started = time.perf_counter()
    seeds = config.grid_seeds
    out = Path(config.out)
    root = out / config.folder
    dataset_cls = registry.dataset(config.dataset)
    explainer_classes = [registry.explainer(name) for name in config.explainers]
    architecture = registry.classifier(config.classifier_name)
    metrics = registry.metrics()
    check_options(
        config.options, explainer_classes, dataset_cls, known_explainers=registry.names("explainer")
    )
    if isinstance(executor, RayOptions):
        check_ray_options(executor, config)  # Ray installed, settings that can work
    elif isinstance(executor, ProcessOptions):
        check_process_options(executor)
    ensure_writable(root, "--out")
    ensure_writable(Path(config.cache_dir), "--cache-dir")
    with folder_lock(root, message=f"waiting for the run that holds {root} ({{holder}}) to finish"):
        recover_publish(root)  # before the sweep: its staged files are a dead pid's
        remove_stale_temporaries([root, Path(config.cache_dir)])
        mark_abandoned_runs(root / "runs")
        determinism = apply_determinism(config.threads)
        device = resolve_device(config.device)
        dataset = dataset_cls(config.data_dir, seed=config.seed)
        dataset.show_progress = config.show_progress
        dataset.prepare()
        for cls in explainer_classes:
            if dataset.task not in cls.tasks:
                raise BenchError(
                    f"explainer {cls.name!r} does not support {dataset.task} datasets like "
                    f"{dataset.name!r}",
                    "leave it out of --explainers for this dataset",
                )
        available = dataset.folds()
        folds = config.folds or dataset.default_folds()
        missing = [f for f in folds if f not in available]
        if missing:
            raise BenchError(
                f"fold(s) {', '.join(missing)} not in dataset {dataset.name!r} at "
                f"{dataset.data_dir} (available: {', '.join(available)})",
                "pick folds from the available list with --folds",
            )
        settings = run_settings(config, dataset, metrics)
        if keep_cells:
            _refuse_stale_cells(out, config.folder, settings, folds, seeds, config.explainers)
        yield GridPlan(
            config=config,
            registry=registry,
            dataset=dataset,
            explainers=explainer_classes,
            metrics=list(metrics),
            folds=list(folds),
            settings=settings,
            device=device,
            determinism=determinism,
            started=started,
            architecture=architecture,
        )


def _run_grid(plan: GridPlan) -> RunSummary:
    """The sequential executor: every fold and cell in this process, in grid order."""
    config, dataset = plan.config, plan.dataset
    ledger = GridLedger(plan, {"name": "sequential", "node": this_node()})
    listen_root = Path(config.out) / config.folder / "listen"
    with ledger:
        for seed in config.grid_seeds:
            seed_config = replace(config, seed=seed)
            for fold in plan.folds:
                with stopwatch(plan.device) as built:
                    ws = FoldWorkspace(dataset, fold, seed_config, plan.device, plan.architecture)
                facts = fold_facts(ws, plan.explainers, seconds=built[0])
                ledger.fold_ready(facts)
                for cls in plan.explainers:
                    key = ledger.pending(facts, cls)
                    if key is None:
                        continue
                    where = f"fold {fold} seed {seed} {cls.name}"
                    profile: dict[str, Any] = {}
                    try:
                        with (
                            stopwatch(plan.device) as cell_seconds,
                            deadline(config.cell_timeout, where),
                        ):
                            cell = run_cell(
                                ws,
                                cls,
                                plan.metrics,
                                ledger.run_id,
                                key,
                                plan.settings,
                                listen_root,
                                profile,
                            )
                    except Exception as err:  # the cell's own failure; the grid goes on
                        ledger.cell_failed(fold, seed, cls.name, one_line(err), profile)
                        continue
                    ledger.cell_done(cell, cell_seconds[0], facts.node, profile=profile)
    return ledger.summary()


def mark_abandoned_runs(runs: Path) -> list[Path]:
    """Manifests still saying ``running`` when the output folder's lock is free belong
    to processes that died without finishing (kill -9, power loss): mark them ``killed``
    so that no record claims a run is in progress."""
    marked = []
    for path in sorted(Path(runs).glob("*.json")):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(manifest, dict) or manifest.get("status") != "running":
            continue
        manifest["status"] = (
            "killed: the process ended without finishing (found by a later run; "
            "its finished cells are kept)"
        )
        write_json_atomic(path, manifest)
        marked.append(path)
    return marked


def _refuse_stale_cells(
    out: Path,
    dataset: str,
    settings: dict[str, Any],
    folds: Sequence[str],
    seeds: Sequence[int],
    explainers: Sequence[str],
) -> None:
    """Before any work: stored cells this run will not rewrite must share its settings,
    or the leaderboard would average across configurations (see
    :func:`l2i_bench.results.check_one_configuration`)."""
    stale = []
    for cell in read_cells(out, dataset):
        rewritten = cell.fold in folds and int(cell.seed) in seeds and cell.explainer in explainers
        if rewritten or not cell.settings:
            continue
        differ = [k for k in SHARED_SETTINGS if cell.settings.get(k) != settings.get(k)]
        if differ:
            stale.append((cell, differ))
    if stale:
        names = sorted({c.explainer for c, _ in stale})
        lines = [
            f"fold {c.fold} seed {c.seed} {c.explainer}: "
            + ", ".join(f"{k} {c.settings.get(k)} (this run: {settings.get(k)})" for k in d)
            for c, d in stale[:5]
        ]
        more = f"\n  ... and {len(stale) - 5} more" if len(stale) > 5 else ""
        raise BenchError(
            f"{Path(out) / dataset} holds cells made under other settings, which this run "
            "would not rewrite:\n  " + "\n  ".join(lines) + more,
            f"add them to this run (--explainers {','.join(names)} and their folds/seeds) "
            "so they are recomputed, or write this run to another --out",
        )
