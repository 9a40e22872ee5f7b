"""The driver's side of a grid run, shared by every executor: the manifest (with the
stage profile the executors report), the tallies, the progress bar, the cell files and
the publication at the end.

An executor decides *where* a fold's classifier is trained and a cell is computed: in
this process, one after the other (:mod:`l2i_bench.runner`), or as tasks
(:mod:`l2i_bench.tasks`) on local worker processes (:mod:`l2i_bench.process_executor`)
or Ray workers (:mod:`l2i_bench.ray_executor`). Everything a reader of the output folder sees is written
here, by the one driver process: a cell file whole or not at all as soon as its cell
returns, the manifest after every event (so a killed driver leaves its record), and the
published CSVs once, at the end, whatever ended the run. Workers only return values.

What a fold contributes (its classifier's record, the options and quality) travels as a
:class:`FoldFacts`, a plain value, so that a fold computed on another machine is
recorded exactly like one computed here; a cell travels as its JSON record.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from l2i_bench.classifier import publish_checkpoint
from l2i_bench.errors import BenchError
from l2i_bench.failpoints import failpoint
from l2i_bench.profiling import cell_profile, fold_profile, new_profile, rounded
from l2i_bench.provenance import environment
from l2i_bench.registry import Registry
from l2i_bench.results import (
    PUBLISHED_CLASSIFIERS,
    CellResult,
    cell_path,
    legacy_cell_path,
    publish,
    read_cell,
    write_bytes_atomic,
    write_json_atomic,
)
from l2i_bench.types import Classifier, Dataset, Explainer, Metric
from l2i_bench.workspace import FoldWorkspace, RunConfig, config_hash


@dataclass
class RunSummary:
    run_id: str
    computed: list[tuple[str, str]]
    skipped: list[tuple[str, str]]
    leaderboard: Path
    results: Path
    manifest: Path
    classifier_quality: dict[str, dict[str, float]]
    """Test quality of each (fold, seed)'s classifier, keyed ``"FOLD/seed-SEED"``."""
    failed: list[tuple[str, int, str, str]] = field(default_factory=list)
    """Cells that failed (fold, seed, explainer, error); the others were published."""


@dataclass
class GridPlan:
    """What one run computes and with what, settled before any work; what every
    executor is handed."""

    config: RunConfig
    registry: Registry
    dataset: Dataset
    explainers: list[type[Explainer]]
    metrics: list[type[Metric]]
    folds: list[str]
    settings: dict[str, Any]
    """What every cell of the leaderboard shares (``SHARED_SETTINGS``)."""
    device: torch.device
    determinism: dict[str, Any]
    started: float
    """``time.perf_counter()`` when the run began (its wall time in the manifest)."""
    architecture: type[Classifier]
    """The classifier plugin (``--classifier name=...``)."""


@dataclass(frozen=True)
class FoldFacts:
    """What one (fold, seed) tells the driver once its classifier is ready: enough to
    key, skip and record its cells without the workspace itself."""

    fold: str
    seed: int
    split: dict[str, Any]
    """The manifest's ``dataset.folds[fold]`` entry: split sizes and explainer options."""
    classifier: dict[str, Any]
    """The manifest's ``classifier["FOLD/seed-SEED"]`` entry."""
    classifier_sha256: str
    quality: dict[str, float]
    has_stems: bool
    options: dict[str, dict[str, str]]
    node: str
    profile: dict[str, Any] = field(default_factory=dict)
    """Seconds of the fold's stages (:attr:`FoldWorkspace.profile`) and ``total``: the
    workspace's making, for the manifest's profile."""


def this_node() -> str:
    """The machine a fold or cell ran on, as the manifest records it."""
    return socket.gethostname()


def fold_facts(
    ws: FoldWorkspace,
    explainers: Sequence[type[Explainer]],
    node: str | None = None,
    seconds: float | None = None,
) -> FoldFacts:
    """What the driver records of a ready fold; ``seconds``: the workspace's making."""
    options = {cls.name: ws.options_for(cls.name) for cls in explainers}
    return FoldFacts(
        fold=ws.fold,
        seed=ws.config.seed,
        split={
            "protocol": ws.split.protocol,
            "train": len(ws.train),
            "valid": len(ws.valid),
            "test": len(ws.test),
            "conditions": {k: len(v) for k, v in ws.conditions.items()},
            "explainer_options": options,
        },
        classifier={
            "fold": ws.fold,
            "seed": ws.config.seed,
            "config": ws.classifier_config.to_dict(),
            "checkpoint": str(ws.classifier.checkpoint),
            "sha256": ws.classifier.checkpoint_sha256,
            "reused": ws.classifier.reused,
            "train_seconds": ws.classifier.train_seconds,
            "best_epoch": ws.classifier.best_epoch,
            "thresholds": None if ws.thresholds is None else ws.thresholds.tolist(),
            "test_quality": ws.quality,
        },
        classifier_sha256=ws.classifier.checkpoint_sha256,
        quality=dict(ws.quality),
        has_stems=ws.has_stems,
        options=options,
        node=node or this_node(),
        profile=fold_profile(ws.profile, seconds),
    )


def fold_seed_key(fold: str, seed: int) -> str:
    """The key of a (fold, seed) in the manifest and the run summary: ``"1/seed-0"``."""
    return f"{fold}/seed-{seed}"


def cell_config_key(
    config: RunConfig,
    dataset: Dataset,
    facts: FoldFacts,
    cls: type[Explainer],
    metrics: Sequence[type[Metric]],
) -> str:
    """What a cell's numbers depend on; a stored cell with another key is recomputed.
    Where the cell runs (which executor, which machine) is not part of it."""
    return config_hash(
        {
            "dataset": dataset.name,
            "dataset_fingerprint": dataset.fingerprint(),
            "fold": facts.fold,
            "explainer": cls.name,
            "explainer_version": cls.version,
            "options": facts.options[cls.name],
            "seed": facts.seed,
            "limit": config.limit,
            "classifier": facts.classifier_sha256,
            "metrics": sorted(f"{m.name}:{m.version}" for m in metrics),
        }
    )


def one_line(err: BaseException) -> str:
    """An error as one line for the manifest and the summary (BenchError with its fix)."""
    if isinstance(err, BenchError):
        text = err.problem + (f" (fix: {err.fix})" if err.fix else "")
    else:
        text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())


class GridLedger:
    """The record of one run as it happens, and its publication when it ends.

    Used as a context manager around the executor's loop: on the way out it sets the
    manifest's status (finished, interrupted, failed) and publishes every cell on disk,
    whatever ended the run."""

    def __init__(self, plan: GridPlan, executor: dict[str, Any]) -> None:
        config, dataset = plan.config, plan.dataset
        self.config = config
        self.dataset = dataset
        self.folder = config.folder
        self.metrics = list(plan.metrics)
        self.started = plan.started
        self.out = Path(config.out)
        seeds = config.grid_seeds
        run_id = (
            dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
            + "-s"
            + "-".join(str(s) for s in seeds)
        )
        self.manifest_path = _new_manifest_path(self.out / self.folder / "runs", run_id)
        self.run_id = self.manifest_path.stem
        self.manifest: dict[str, Any] = {
            "run_id": self.run_id,
            "status": "running",
            "pid": os.getpid(),
            "config": {
                **asdict(config),
                "out": str(config.out),
                "cache_dir": str(config.cache_dir),
                "data_dir": str(dataset.data_dir),
            },
            "settings": plan.settings,
            "environment": environment(plan.device),
            "determinism": plan.determinism,
            "executor": executor,
            "seeds": seeds,
            "dataset": {
                "name": dataset.name,
                "version": dataset.version,
                "task": str(dataset.task),
                "fingerprint": dataset.fingerprint(),
                "classes": dataset.class_names,
                "folds": {},
            },
            "plugins": [r.to_dict() for r in plan.registry.all_registered()],
            "classifier": {},
            "cells": {"computed": [], "skipped": [], "failed": []},
            "nodes": {},
            "profile": new_profile(executor["name"]),
        }
        self.explainer_names = {cls.name for cls in plan.explainers}
        self.computed: list[tuple[str, str]] = []
        self.skipped: list[tuple[str, str]] = []
        self.failed: list[tuple[str, int, str, str]] = []
        self.quality: dict[str, dict[str, float]] = {}
        self.results_path = self.out / self.folder / "results.csv"
        self.board_path = self.out / self.folder / "leaderboard.csv"
        self.manifest["profile"]["run"]["setup"] = round(time.perf_counter() - plan.started, 3)
        self._save()  # a killed run still leaves its record
        self.bar = tqdm(
            total=len(seeds) * len(plan.folds) * len(plan.explainers),
            desc=f"{self.folder} grid",
            unit="cell",
            disable=not config.show_progress,
            bar_format="{desc}: {n}/{total} cells |{bar:20}| {elapsed} elapsed, ETA {remaining}"
            "{postfix}",
        )

    # -- events -----------------------------------------------------------------------

    def fold_ready(self, facts: FoldFacts) -> None:
        """A (fold, seed)'s classifier is trained or reloaded: record it and say how good
        it is (what was explained matters)."""
        key = fold_seed_key(facts.fold, facts.seed)
        self._refuse_another_classifier(facts)
        published, note = publish_checkpoint(
            Path(facts.classifier["checkpoint"]), self.out / self.folder / PUBLISHED_CLASSIFIERS
        )
        self.quality[key] = facts.quality
        self.manifest["dataset"]["folds"][facts.fold] = facts.split
        self.manifest["classifier"][key] = {
            **facts.classifier,
            "node": facts.node,
            "published": None if published is None else published.name,
            "published_note": note,
        }
        self.manifest["profile"]["folds"][key] = rounded({**facts.profile, "node": facts.node})
        self._save()
        parts = ", ".join(f"{k} {v:.3f}" for k, v in facts.quality.items())
        tqdm.write(
            f"classifier on {self.dataset.name} fold {facts.fold} seed {facts.seed} test "
            f"(vs ground truth): {parts}"
        )

    def _refuse_another_classifier(self, facts: FoldFacts) -> None:
        """Cells this run keeps (explainers it does not run) must explain the classifier
        it now has, or the folder's leaderboard cannot be published: said now, after the
        classifier, not after hours of explainer work. The usual cause is a retrain on
        another machine (its arithmetic differs) of a folder that has no published
        checkpoint."""
        fold, seed, sha = facts.fold, facts.seed, facts.classifier_sha256
        # the explainers with a cell of this fold and seed (current and legacy layouts)
        places = (
            cell_path(self.out, self.folder, fold, "any", seed).parent,
            legacy_cell_path(self.out, self.folder, fold, "any").parent,
        )
        names = {path.stem for place in places for path in place.glob("*.json")}
        stored = (_stored_cell(self.out, self.folder, fold, name, seed) for name in names)
        kept = [
            cell
            for cell in stored
            if cell is not None
            and cell.explainer not in self.explainer_names
            and cell.classifier_sha256 != sha
        ]
        if not kept:
            return
        how = "loaded from the cache" if facts.classifier["reused"] else "trained here"
        names = ", ".join(sorted(c.explainer for c in kept))
        raise BenchError(
            f"fold {fold} seed {seed}: the classifier {how} (sha256 {sha[:10]}) is not the "
            f"one the {len(kept)} cells kept in {self.out / self.folder} explain "
            f"({kept[0].classifier_sha256[:10]}: {names}), so cells made now could not "
            "share a leaderboard with them. A retrain is bit-identical only on the same "
            "arithmetic (CPU, MKL/oneDNN, thread count: the manifests' "
            "environment.arithmetic), and this folder publishes no checkpoint of that "
            f"classifier in {PUBLISHED_CLASSIFIERS}/",
            f"run these explainers into another --out, or recompute the kept ones too "
            f"(--explainers with {names} added, on this classifier), or put the published "
            f"checkpoint in {self.out / self.folder / PUBLISHED_CLASSIFIERS}",
        )

    def pending(self, facts: FoldFacts, cls: type[Explainer]) -> str | None:
        """The configuration key of a cell this run must compute, or None when it is
        recorded as not applicable or as done already (skipped)."""
        fold, seed = facts.fold, facts.seed
        if cls.needs_stems and not facts.has_stems:
            tqdm.write(
                f"fold {fold} {cls.name}: skipped, it needs ground-truth stems "
                f"and {self.dataset.name!r} has none"
            )
            self.manifest["cells"].setdefault("not_applicable", []).append([fold, seed, cls.name])
            self.bar.update()
            return None
        key = cell_config_key(self.config, self.dataset, facts, cls, self.metrics)
        existing = _stored_cell(self.out, self.folder, fold, cls.name, seed)
        if existing is not None and existing.config_key == key and not self.config.force:
            self.skipped.append((fold, cls.name))
            self.manifest["cells"]["skipped"].append([fold, seed, cls.name])
            tqdm.write(f"fold {fold} seed {seed} {cls.name}: done already, skipped")
            self.bar.update()
            return None
        return key

    def cell_done(
        self,
        cell: CellResult,
        seconds: float,
        node: str,
        listening: Mapping[str, bytes] | None = None,
        profile: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a finished cell (and the listening files a remote worker returned);
        ``profile``: its stages' seconds (:func:`~l2i_bench.runner.run_cell`), kept in
        the manifest's profile with ``seconds`` as the cell's total."""
        fold, seed, name = cell.fold, int(cell.seed), cell.explainer
        for relative, data in (listening or {}).items():
            write_bytes_atomic(self.out / self.folder / relative, data)
        failpoint("cell")
        path = cell_path(self.out, self.folder, fold, name, seed)
        write_json_atomic(path, cell.to_json())
        legacy_cell_path(self.out, self.folder, fold, name).unlink(missing_ok=True)
        self.computed.append((fold, name))
        self.manifest["cells"]["computed"].append([fold, seed, name, round(seconds, 1)])
        self.manifest["nodes"][f"{fold}/seed-{seed}/{name}"] = node
        self._profile_cell(fold, seed, name, profile, seconds, "done")
        self._save()
        tqdm.write(f"fold {fold} seed {seed} {name}: written {path} ({seconds:.0f} s)")
        self.bar.update()

    def cell_failed(
        self,
        fold: str,
        seed: int,
        name: str,
        error: str,
        profile: Mapping[str, Any] | None = None,
    ) -> None:
        """A cell's own failure; the grid goes on and the others are published. The
        stages it finished, when known, go into the profile."""
        self.failed.append((fold, seed, name, error))
        self.manifest["cells"]["failed"].append([fold, seed, name, error])
        if profile:
            self._profile_cell(fold, seed, name, profile, None, "failed")
        self._save()
        tqdm.write(f"fold {fold} seed {seed} {name}: FAILED: {error}", file=sys.stderr)
        self.bar.set_postfix_str(f"{len(self.failed)} failed")
        self.bar.update()

    def _profile_cell(
        self,
        fold: str,
        seed: int,
        name: str,
        profile: Mapping[str, Any] | None,
        seconds: float | None,
        status: str,
    ) -> None:
        record = cell_profile(profile or {}, seconds)
        self.manifest["profile"]["cells"][f"{fold}/seed-{seed}/{name}"] = {
            **rounded(record),
            "status": status,
        }

    # -- the end ----------------------------------------------------------------------

    def __enter__(self) -> GridLedger:
        return self

    def __exit__(self, kind, err, traceback) -> None:
        if err is None:
            self.manifest["status"] = (
                "finished" if not self.failed else f"finished, {len(self.failed)} cell(s) failed"
            )
        elif isinstance(err, KeyboardInterrupt):
            self.manifest["status"] = "interrupted" + (f" ({err})" if str(err) else "")
        else:
            self.manifest["status"] = f"failed: {type(err).__name__}: {err}"
        self.bar.close()
        self.manifest["wall_seconds"] = time.perf_counter() - self.started
        self.manifest["profile"]["wall"] = round(self.manifest["wall_seconds"], 3)
        self._save()
        if not (self.computed or self.skipped):
            return
        publish_started = time.perf_counter()
        try:
            self.results_path, self.board_path = publish(self.out, self.folder)
        except KeyboardInterrupt as interrupt:
            self.manifest["status"] = (
                "interrupted while publishing"
                + (f" ({interrupt})" if str(interrupt) else "")
                + ": the published files are all from this run (renamed together)"
            )
            self._save()
            raise
        # The statistics' cost beside the run's (the README's budget: under 5 %).
        now = time.perf_counter()
        self.manifest["publish_seconds"] = round(now - publish_started, 2)
        self.manifest["profile"]["run"]["publish"] = round(now - publish_started, 3)
        self.manifest["profile"]["wall"] = round(now - self.started, 3)
        self._save()

    def summary(self) -> RunSummary:
        return RunSummary(
            self.run_id,
            self.computed,
            self.skipped,
            self.board_path,
            self.results_path,
            self.manifest_path,
            self.quality,
            self.failed,
        )

    def _save(self) -> None:
        write_json_atomic(self.manifest_path, self.manifest)


def _new_manifest_path(runs: Path, run_id: str) -> Path:
    """A manifest path no other run has: created exclusively, suffixed on a clash."""
    runs.mkdir(parents=True, exist_ok=True)
    for attempt in range(100):
        path = runs / (f"{run_id}.json" if attempt == 0 else f"{run_id}-{attempt}.json")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return path
    raise BenchError(f"cannot create a run manifest under {runs}", "clean up that folder")


def _stored_cell(out: Path, dataset: str, fold: str, explainer: str, seed: int):
    """The stored cell of this (fold, seed, explainer), in the current layout or the
    legacy one (before seeds were an axis), or None."""
    current = cell_path(out, dataset, fold, explainer, seed)
    for path in (current, legacy_cell_path(out, dataset, fold, explainer)):
        cell = read_cell(path) if path.exists() else None
        if cell is not None and int(cell.seed) == seed:
            return cell
    return None
