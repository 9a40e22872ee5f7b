"""``l2i-bench verify``: rerun a results folder's published configuration and say,
column by column, whether the new numbers fall inside the published intervals.

A published number is worth what a second run of the same configuration confirms. The
configuration comes from the folder's newest finished run manifest (dataset,
explainers, folds, seeds, limit, explainer options, classifier settings, batch size,
threads; not the data folder, which is this machine's: ``--data-dir``, else the
dataset's default); ``--folds``, ``--seeds`` and ``--limit`` shrink it to what a reader can
afford. The rerun writes into its own folder (default ``verify/``) with its own cache
(default: fresh, so the classifier and every explainer are trained again; pass
``--cache-dir .cache`` to reuse the local fits and check only explanation and scoring),
so the published files are never touched. ``--rerun DIR`` compares a finished rerun
folder again (after a republish, say) without recomputing it.

Comparison, per (fold, seed, explainer) cell and column: the published interval is the
95 % bootstrap interval (:func:`l2i_bench.stats.bootstrap_interval`) of the published
rows *of the same clips* the rerun scored (all of them unless ``--limit`` cut the set),
so a verify on fewer clips is held to the interval those clips give. Status:
``identical`` (equal to 1e-9 relative), ``inside``, ``outside``, ``no interval`` (a
set-level column, AUPRC or fit time, that differs: nothing to test against),
``missing`` (one side has no value). Timing columns (metric ``timing``) are skipped:
they measure the machine. Each comparison also says whether the rerun's cell explains the
same classifier (``classifier``: ``same`` weights by sha256, or ``retrained``): a
retrain is bit-identical only on the same arithmetic (CPU instruction set and vendor,
MKL/oneDNN, numpy's SIMD targets: the manifest's ``environment.arithmetic``), and on
another machine the classifier itself differs (measured: ESC-50 fold 4, accuracy 0.18
published, 0.28 retrained on an AMD EPYC with AVX2). Then ``outside`` measures the
retrain as much as the explainer, and the summary says so with both machines' records.
``verify.csv`` holds every comparison; the exit status is 0 when nothing is ``outside``
or ``no interval``. ``--published-weights`` explains the folder's published checkpoints
(``classifiers/``) instead of retraining them.

Ours. Cost: a full rerun of what is verified, plus one bootstrap per compared value.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from l2i_bench.cache import copy_entry
from l2i_bench.errors import BenchError
from l2i_bench.results import PUBLISHED_CLASSIFIERS, CellResult, read_cells, write_csv_atomic
from l2i_bench.stats import bootstrap_interval, stable_seed, summarise

SKIPPED_METRICS = frozenset({"timing"})
COLUMNS = [
    "fold",
    "seed",
    "explainer",
    "column",
    "published",
    "new",
    "ci_low",
    "ci_high",
    "rows",
    "status",
    "classifier",
]
FAILING = ("outside", "no interval")


@dataclass
class VerifyRequest:
    results: Path  # results/<dataset>
    out: Path = Path("verify")
    cache_dir: Path | None = None  # None: a fresh cache inside the verify folder
    data_dir: Path | None = None
    folds: list[str] | None = None
    seeds: list[int] | None = None
    limit: int | None = None
    device: str = "auto"
    show_progress: bool = True
    rerun: Path | None = None
    """A finished rerun folder (``verify/<dataset>-<stamp>``) to compare again, e.g.
    after a republish, instead of rerunning."""
    published_weights: bool = False
    """Explain the folder's published classifier checkpoints instead of retraining."""


def published_config(results: Path) -> dict[str, Any]:
    """The ``config`` of the newest finished run manifest under ``results/runs``."""
    runs = sorted(Path(results).glob("runs/*.json"))
    for path in reversed(runs):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if manifest.get("status") == "finished":
            return {**manifest["config"], "seeds": manifest.get("seeds")}
    raise BenchError(
        f"no finished run manifest under {Path(results) / 'runs'}",
        "point verify at a published results folder such as results/synth",
    )


def verify(request: VerifyRequest, registry) -> tuple[pd.DataFrame, Path]:
    """Rerun and compare; returns the comparison table and the path of ``verify.csv``."""
    from l2i_bench.classifier import classifier_name
    from l2i_bench.runner import RunConfig, run_benchmark
    from l2i_bench.workspace import results_folder

    results = Path(request.results)
    config = published_config(results)
    dataset = config["dataset"]
    # the folder a run of this dataset and classifier writes (<dataset>--<classifier>)
    folder = results_folder(dataset, classifier_name(config.get("classifier") or {}))
    if results.name != folder:
        raise BenchError(
            f"{results} holds dataset {dataset!r} by its manifest, but the folder is named "
            f"{results.name!r}",
            f"pass the dataset's own folder, e.g. {results.parent / folder}",
        )
    if request.rerun is not None:
        out = Path(request.rerun)
        if not (out / folder / "cells").is_dir():
            raise BenchError(
                f"{out} holds no cells of {folder!r}",
                "pass the folder a previous verify wrote, e.g. verify/synth-20261203T072632",
            )
        return _compare_and_write(results, folder, out)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    out = Path(request.out) / f"{dataset}-{stamp}"
    if request.published_weights:
        _take_published_weights(results, out / folder / PUBLISHED_CLASSIFIERS)
    seeds = request.seeds or config.get("seeds") or [int(config.get("seed", 0))]
    rerun = RunConfig(
        dataset=dataset,
        explainers=list(config["explainers"]),
        folds=request.folds or config.get("folds"),
        data_dir=request.data_dir,  # the publisher's path need not exist here
        device=request.device,
        seed=seeds[0],
        seeds=list(seeds),
        threads=config.get("threads"),
        limit=request.limit if request.limit is not None else config.get("limit"),
        out=out,
        cache_dir=request.cache_dir or out / "cache",
        options=config.get("options") or {},
        classifier=config.get("classifier") or {},
        batch_size=int(config.get("batch_size", 16)),
        listen=0,
        show_progress=request.show_progress,
    )
    run_benchmark(rerun, registry)
    return _compare_and_write(results, folder, out)


def _take_published_weights(results: Path, target: Path) -> None:
    """Copy the folder's published checkpoints where the rerun looks for them first."""
    source = Path(results) / PUBLISHED_CLASSIFIERS
    checkpoints = sorted(source.glob("*.pt"))
    if not checkpoints:
        raise BenchError(
            f"{results} publishes no classifier checkpoints ({source} is empty or absent; "
            "folders published before 2026-12-05 have none)",
            "verify without --published-weights (the classifier is retrained), or "
            "republish the folder, which now publishes them",
        )
    for checkpoint in checkpoints:
        problem = copy_entry(checkpoint, target / checkpoint.name, checkpoint.stem)
        if problem is not None:
            raise BenchError(
                f"the published checkpoint {checkpoint} cannot be used: {problem}",
                "restore it from git (git checkout -- PATH), or verify without --published-weights",
            )


def _compare_and_write(results: Path, folder: str, out: Path) -> tuple[pd.DataFrame, Path]:
    table = compare(read_cells(results.parent, folder), read_cells(out, folder))
    path = out / folder / "verify.csv"
    write_csv_atomic(table, path)
    return table, path


def compare(published: Sequence[CellResult], new: Sequence[CellResult]) -> pd.DataFrame:
    """Every new cell's columns against the published cell of the same fold, seed and
    explainer (see the module docstring for the statuses)."""
    index = {(c.fold, int(c.seed), c.explainer): c for c in published}
    records = []
    for cell in new:
        old = index.get((cell.fold, int(cell.seed), cell.explainer))
        for score in cell.scores:
            if score.metric in SKIPPED_METRICS:
                continue
            before = None
            if old is not None:
                before = next((s for s in old.scores if s.column == score.column), None)
            records.append(_compare_one(cell, old, score, before))
    return pd.DataFrame(records, columns=COLUMNS)


def _compare_one(cell: CellResult, old: CellResult | None, score, before) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "classifier": None
        if old is None
        else ("same" if cell.classifier_sha256 == old.classifier_sha256 else "retrained"),
        "fold": cell.fold,
        "seed": int(cell.seed),
        "explainer": cell.explainer,
        "column": score.column,
        "published": None if before is None else before.value,
        "new": score.value,
        "ci_low": None,
        "ci_high": None,
        "rows": None,
    }
    if score.value is None or before is None or before.value is None:
        both_empty = score.value is None and (before is None or before.value is None)
        rec["status"] = "identical" if both_empty and before is not None else "missing"
        return rec
    new_rows = cell.row_values(score.column)
    old_rows = None if old is None else old.row_values(score.column)
    published = before.value
    low = high = float("nan")
    if new_rows is not None and old_rows is not None:
        wanted = set(new_rows.keys)
        kept = [v for k, v in zip(old_rows.keys, old_rows.values, strict=True) if k in wanted]
        if kept:
            if len(kept) < len(old_rows):  # a --limit rerun: the same clips' number
                published = summarise(kept, old_rows.summary)
            low, high = bootstrap_interval(
                [np.asarray(kept)],
                old_rows.summary,
                seed=stable_seed(cell.seed, cell.fold, cell.explainer, score.column),
            )
            rec["rows"] = len(kept)
    rec.update(published=published, ci_low=_nan_none(low), ci_high=_nan_none(high))
    if math.isclose(score.value, published, rel_tol=1e-9, abs_tol=1e-12):
        rec["status"] = "identical"
    elif math.isnan(low):
        rec["status"] = "no interval"
    else:
        rec["status"] = "inside" if low <= score.value <= high else "outside"
    return rec


def _arithmetic(folder: Path | None) -> dict[str, Any] | None:
    """``environment.arithmetic`` of the newest run manifest under ``folder/runs`` that
    records it."""
    if folder is None:
        return None
    for path in sorted(Path(folder).glob("runs/*.json"), reverse=True):
        try:
            found = json.loads(path.read_text()).get("environment", {}).get("arithmetic")
        except (OSError, ValueError):
            continue
        if found:
            return found
    return None


def describe_arithmetic(record: dict[str, Any] | None) -> str:
    """One line of a manifest's ``environment.arithmetic``."""
    if not record:
        return "not recorded (manifests before 2026-12-05 lack environment.arithmetic)"
    simd = ",".join(record.get("numpy_simd") or []) or "?"
    return (
        f"{record.get('cpu') or '?'} ({record.get('cpu_vendor') or '?'}), torch "
        f"{record.get('torch_cpu_capability')}, {record.get('torch_blas')} "
        f"{record.get('mkl') or ''}, oneDNN {record.get('onednn')}, numpy {simd}"
    ).replace("  ", " ")


def _nan_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def summary_lines(
    table: pd.DataFrame, published: Path | None = None, rerun: Path | None = None
) -> list[str]:
    """What ``l2i-bench verify`` prints: counts per status, whether the classifiers were
    retrained to other weights (with the arithmetic of both machines, read from the run
    manifests under ``published`` and ``rerun``, the two ``results/<dataset>``
    folders), then each failing value."""
    counts = table["status"].value_counts()
    lines = [
        f"{len(table)} values compared: " + ", ".join(f"{counts[s]} {s}" for s in counts.index)
    ]
    retrained = table[table["classifier"] == "retrained"]
    if len(retrained):
        cells = retrained.groupby(["fold", "seed", "explainer"]).ngroups
        total = table.dropna(subset=["classifier"]).groupby(["fold", "seed", "explainer"]).ngroups
        lines += [
            f"{cells} of {total} cells explain a classifier retrained to other weights "
            "(sha256 differs from the published cell's): their values measure the retrain "
            "as much as the explainer; a retrain is bit-identical only on the same arithmetic",
            f"  published on: {describe_arithmetic(_arithmetic(published))}",
            f"  rerun on:     {describe_arithmetic(_arithmetic(rerun))}",
        ]
    bad = table[table["status"].isin(FAILING)]
    for rec in bad.itertuples():
        interval = (
            f"[{rec.ci_low:.4g}, {rec.ci_high:.4g}]" if pd.notna(rec.ci_low) else "no interval"
        )
        lines.append(
            f"  {rec.status}: fold {rec.fold} seed {rec.seed} {rec.explainer} {rec.column}: "
            f"published {rec.published:.4g} {interval}, new {rec.new:.4g}"
        )
    return lines
