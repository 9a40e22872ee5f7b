"""What ``l2i-bench explain`` will train, said before it trains it, with its cost.

Method. (1) Before any clip is loaded, the classifier's checkpoint path is computed with
the key and settings the workspace itself uses
(:func:`~l2i_bench.workspace.classifier_identity`,
:func:`~l2i_bench.classifier.checkpoint_path`), so ``explain`` says whether it loads a
checkpoint or trains one. When it trains one, the cache is searched for checkpoints of
the same dataset, data, fold and classifier plugin made with other settings (width,
epochs, seed, CPU thread count); each is named by the flags that would reuse it, and
only if those flags, put back through the same key functions, give exactly its file: a
different classifier is never used in place of the one asked for. (2) Once the training
clips are decoded and before training, a few optimiser steps of the asked classifier on
real training batches are timed on this device after one warm-up step (batch building,
SpecAugment, forward, backward, Adam), and one no-grad forward. An epoch is then its
training batches' steps plus its precise-BN and validation forwards, and the whole is
that times the epochs asked: an upper bound, since early stopping may end sooner. The
same is timed for the ``fast`` preset when it differs, so the user can stop and choose.
(3) An explainer's fit is a plugin's own loop, not stepped here: its estimate is a
recorded fit of the same explainer on the same dataset (a cell's ``fit_seconds`` under
``results/`` or ``local-results/``, preferring this device, fold and classifier),
scaled by the ratio of epochs when ``--option NAME.epochs`` differs from the recorded
fit's.

What is ours: all of it. Cost: three optimiser steps and one forward of the asked
classifier (and of the fast preset's), about 1 % of the training it precedes: on
ESC-50 fold 4 on one CPU thread, 14 s to estimate the default classifier's 25 min and
22 s for the paper preset's 54 min (the fast preset's 7 min estimate was then trained
in 7.1 min); reading the candidate checkpoints, integrity-checked like every entry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from l2i_bench.cache import load_torch
from l2i_bench.classifier import (
    CLASSIFIER_PRESETS,
    DEFAULT_CLASSIFIER,
    PRECISE_BN_BATCHES,
    ClassifierConfig,
    checkpoint_path,
    loss_function,
    safe_cache_key,
    setting_text,
    training_step,
)
from l2i_bench.data import AudioBatch, ClipSet
from l2i_bench.results import read_cell
from l2i_bench.timing import device_name, stopwatch
from l2i_bench.types import Classifier, Dataset, Explainer, Task
from l2i_bench.workspace import FoldWorkspace, RunConfig, classifier_identity, results_folder

RECORDED_FITS = (Path("results"), Path("local-results"))
"""Where recorded fits are looked for (relative to the working folder): the published
results and a user's own runs."""


@dataclass(frozen=True)
class TrainingEstimate:
    """A classifier's training time on this device, from timed steps."""

    setup_seconds: float
    """Once per training: the warm-up step's time beyond a step (the split's features,
    built on its first batch, and the first kernels)."""
    step_seconds: float
    """One optimiser step on a full batch (batch building included)."""
    forward_seconds: float
    """One no-grad forward of a full batch (precise BN, validation)."""
    steps_per_epoch: int
    forwards_per_epoch: int
    epochs: int
    clips: int
    device: str

    @property
    def epoch_seconds(self) -> float:
        return self.steps_per_epoch * self.step_seconds + self.forwards_per_epoch * (
            self.forward_seconds
        )

    @property
    def total_seconds(self) -> float:
        """All epochs asked; early stopping may end sooner."""
        return self.setup_seconds + self.epochs * self.epoch_seconds


def device_words(device: torch.device) -> str:
    """``cpu, 2 threads`` or the GPU's name: the device an estimate holds for."""
    if device.type == "cpu":
        return f"cpu, {torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}"
    return device_name(device)


def estimate_training(
    train: ClipSet,
    valid: ClipSet,
    *,
    config: ClassifierConfig,
    architecture: type[Classifier],
    task: Task,
    num_classes: int,
    device: torch.device,
    steps: int = 2,
) -> TrainingEstimate:
    """Time one warm-up step, ``steps`` optimiser steps and one forward of the asked
    classifier on real training batches. The global random state is left as it was, so
    the training that follows is the one it would have been without the estimate."""
    task = Task(task)
    size = config.batch_size
    forks = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forks):
        torch.manual_seed(config.seed)
        model = architecture(num_classes, task, width=config.width).to(device)
        model.train()
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
        loss_fn = loss_function(task, config, device)
        generator = torch.Generator().manual_seed(config.seed) if config.augment else None
        batches = _training_batches(train, size, config.seed)
        timed = []
        for _ in range(steps + 1):
            with stopwatch(device) as elapsed:
                training_step(model, next(batches), optimiser, loss_fn, task, generator)
            timed.append(elapsed[0])  # the first builds features, warms up kernels
        model.eval()
        with torch.no_grad(), stopwatch(device) as forward:
            model(next(batches).logmel.to(device))
    train_batches = math.ceil(len(train) / size)
    step = sum(timed[1:]) / steps
    return TrainingEstimate(
        setup_seconds=max(0.0, timed[0] - step),
        step_seconds=step,
        forward_seconds=forward[0],
        steps_per_epoch=len(train) // size + (1 if len(train) % size >= 2 else 0),
        forwards_per_epoch=min(PRECISE_BN_BATCHES, train_batches) + math.ceil(len(valid) / size),
        epochs=config.epochs,
        clips=len(train),
        device=device_words(device),
    )


def _training_batches(train: ClipSet, size: int, seed: int) -> Iterator[AudioBatch]:
    """Shuffled training batches of at least two clips, over and over."""
    epoch = 0
    while True:
        epoch += 1
        found = False
        for batch in train.batches(size, shuffle=True, seed=seed + epoch):
            if len(batch) >= 2:
                found = True
                yield batch
        if not found:
            raise ValueError("no training batch of two clips or more")


def duration(seconds: float) -> str:
    """``40 s``, ``12 min`` or ``1.5 h``: how long, in the unit a user plans in."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def training_lines(ws: FoldWorkspace, *, steps: int = 2) -> list[str]:
    """What the workspace is about to train and how long that should take here, and
    the same for the ``fast`` preset when the asked settings are not its."""
    config = ws.classifier_config
    common = dict(
        architecture=ws.architecture,
        task=ws.dataset.task,
        num_classes=ws.dataset.num_classes,
        device=ws.device,
        steps=steps,
    )
    estimate = estimate_training(ws.train, ws.valid, config=config, **common)
    lines = [
        f"will train classifier {ws.architecture.name} width {config.width:g} for up to "
        f"{config.epochs} epochs on {estimate.clips} clips: about "
        f"{duration(estimate.total_seconds)} on this device ({estimate.device}); "
        f"{estimate.epoch_seconds:.1f} s per epoch from {steps} timed steps, early stopping "
        f"(patience {config.patience}) may end it sooner"
    ]
    fast = CLASSIFIER_PRESETS["fast"]
    fast_config = replace(config, **fast.settings)
    if fast_config != config:
        quick = estimate_training(ws.train, ws.valid, config=fast_config, **common)
        if quick.total_seconds < estimate.total_seconds:
            lines.append(
                f"  Ctrl-C now to choose --classifier preset=fast (width "
                f"{fast_config.width:g}, up to {fast_config.epochs} epochs): about "
                f"{duration(quick.total_seconds)} here"
            )
    return lines


# -- reuse ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedClassifier:
    """A cached checkpoint of the same data, fold and plugin under other settings, and
    the flags that would make a run or ``explain`` load it."""

    path: Path
    flags: list[str]
    """The flags that name it, e.g. ``--classifier width=0.25 --classifier epochs=30``."""
    preset_flags: list[str] | None
    """The same with a preset, where one gives exactly its settings."""
    config: dict[str, Any]
    train_seconds: float
    best_epoch: int


def compatible_classifiers(
    dataset: Dataset, fold: str, config: RunConfig, device: torch.device
) -> list[CachedClassifier]:
    """Cached classifiers for this dataset (same fingerprint), fold and classifier plugin
    that the asked settings do not name, each with the flags that do. Checkpoints whose
    settings no flags can name (e.g. made by an older l2i-bench) are left out."""
    asked_key, asked_config = classifier_identity(dataset, fold, config, device)
    asked = checkpoint_path(
        config.cache_dir, asked_key, asked_config, dataset.task, dataset.num_classes
    )
    name = config.classifier_name
    named = "" if name == DEFAULT_CLASSIFIER else "-" + safe_cache_key(name)
    prefix = safe_cache_key(f"{dataset.name}-fold{fold}-{dataset.fingerprint()}-seed")
    pattern = re.compile(
        re.escape(prefix)
        + r"(?P<seed>\d+)(?:-cpu(?P<threads>\d+)t)?"
        + re.escape(named)
        + r"-[0-9a-f]{12}\.pt"
    )
    base = ClassifierConfig(
        **classifier_settings_for(dataset, config, {"name": name} if named else {})
    ).to_dict()
    found = []
    for path in sorted((Path(config.cache_dir) / "classifiers").glob(f"{prefix}*.pt")):
        match = pattern.fullmatch(path.name)
        if match is None or path == asked:
            continue
        threads = int(match["threads"]) if match["threads"] else None
        if (threads is None) != (device.type != "cpu"):
            continue  # keyed for another kind of device
        payload = load_torch(path, path.stem)
        if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
            continue
        settings = {
            k: v
            for k, v in payload["config"].items()
            if k not in ("seed", "name") and base.get(k) != v
        }
        if named:
            settings["name"] = name
        extra = []
        seed = int(match["seed"])
        if seed != config.seed:
            extra.append(f"--seed {seed}")
        if threads is not None and threads != torch.get_num_threads():
            extra.append(f"--threads {threads}")
        if not _names(path, dataset, fold, config, device, settings, seed, threads):
            continue
        flags = [f"--classifier {k}={setting_text(v)}" for k, v in settings.items()] + extra
        preset_flags = None
        for preset in CLASSIFIER_PRESETS.values():
            given = {"preset": preset.name, **({"name": name} if named else {})}
            if preset.settings and _names(
                path, dataset, fold, config, device, given, seed, threads
            ):
                preset_flags = [f"--classifier preset={preset.name}"] + extra
                break
        found.append(
            CachedClassifier(
                path=path,
                flags=flags,
                preset_flags=preset_flags,
                config=dict(payload["config"]),
                train_seconds=float(payload.get("train_seconds", 0.0)),
                best_epoch=int(payload.get("best_epoch", 0)),
            )
        )
    return found


def classifier_settings_for(
    dataset: Dataset, config: RunConfig, given: dict[str, Any]
) -> dict[str, Any]:
    """The settings a run would train with if ``--classifier`` said ``given``."""
    from l2i_bench.workspace import classifier_settings

    return classifier_settings(dataset, replace(config, classifier=given))


def _names(
    path: Path,
    dataset: Dataset,
    fold: str,
    config: RunConfig,
    device: torch.device,
    given: dict[str, Any],
    seed: int,
    threads: int | None,
) -> bool:
    """Whether ``given`` classifier settings, seed and threads key exactly ``path``."""
    trial = replace(config, classifier=given, seed=seed)
    try:
        key, settings = classifier_identity(dataset, fold, trial, device, threads=threads)
    except Exception:  # settings a run would refuse
        return False
    return checkpoint_path(config.cache_dir, key, settings, dataset.task, dataset.num_classes) == (
        path
    )


def classifier_lines(
    dataset: Dataset, fold: str, config: RunConfig, device: torch.device, trainable: bool
) -> list[str]:
    """What ``explain`` says about the classifier before loading anything: loaded from
    the cache, or trained (and then which cached ones the user could reuse instead)."""
    key, settings = classifier_identity(dataset, fold, config, device)
    path = checkpoint_path(config.cache_dir, key, settings, dataset.task, dataset.num_classes)
    name = config.classifier_name
    described = f"{name} width {settings.width:g}, up to {settings.epochs} epochs"
    if path.is_file():
        return [f"classifier: {described}, loaded from the cache ({path})"]
    if not trainable:
        return [f"classifier: {name} loaded from {settings.pretrained}, not trained"]
    lines = [
        f"classifier: none cached for {described}, seed {config.seed} ({device_words(device)}) "
        f"in {config.cache_dir}: it is trained on fold {fold}'s training split once its "
        "clips are decoded"
    ]
    others = compatible_classifiers(dataset, fold, config, device)
    if others:
        lines.append(
            f"  cached for {dataset.name} fold {fold} ({name}) with other settings; to reuse "
            "one instead of training, add its flags:"
        )
        for other in others:
            shortest = other.flags
            if other.preset_flags and len(other.preset_flags) < len(other.flags):
                shortest = other.preset_flags
            flags = " ".join(shortest) or "no flags (the dataset's default settings)"
            lines.append(
                f"    {flags}   (width {other.config.get('width', 1.0):g}, "
                f"{other.config.get('epochs')} epochs max, best epoch {other.best_epoch}, "
                f"trained in {duration(other.train_seconds)})"
            )
    return lines


# -- the explainer's fit ----------------------------------------------------------------


@dataclass(frozen=True)
class RecordedFit:
    """A finished cell's record of one explainer's fit."""

    path: Path
    seconds: float
    device: str
    fold: str
    epochs: float | None
    classifier: dict[str, Any] | None


def recorded_fits(
    explainer: str, folder: str, roots: Sequence[Path] = RECORDED_FITS
) -> list[RecordedFit]:
    """Every recorded fit of ``explainer`` in cells of the results ``folder`` (the
    dataset's, e.g. ``esc50``) under ``roots`` and their subfolders (``results/5-folds``)."""
    found = []
    for root in roots:
        for folder_path in [Path(root) / folder, *sorted(Path(root).glob(f"*/{folder}"))]:
            for path in sorted(folder_path.glob(f"cells/fold-*/seed-*/{explainer}.json")):
                cell = read_cell(path)
                seconds = None if cell is None else cell.fit.get("fit_seconds")
                if not isinstance(seconds, int | float) or seconds <= 0:
                    continue
                epochs = cell.fit.get("epochs")
                found.append(
                    RecordedFit(
                        path=path,
                        seconds=float(seconds),
                        device=str(cell.device),
                        fold=str(cell.fold),
                        epochs=float(epochs) if isinstance(epochs, int | float) else None,
                        classifier=(cell.settings or {}).get("classifier_config"),
                    )
                )
    return found


def explainer_line(ws: FoldWorkspace, cls: type[Explainer]) -> str | None:
    """What ``explain`` says about the explainer before fitting it: loaded from the
    cache, or fitted, with the recorded fit its time is estimated from."""
    if not cls.needs_training:
        return None
    path = ws.explainer_cache_path(cls)
    if path.is_file():
        return f"explainer: {cls.name}'s fit on this classifier is cached ({path}): loaded"
    head = f"explainer: will fit {cls.name} on {len(ws.train)} training clips"
    folder = results_folder(ws.dataset.name, ws.config.classifier_name)
    fits = recorded_fits(cls.name, folder)
    if not fits:
        return f"{head} (no recorded fit of it on {folder} to estimate the time from)"
    here = device_name(ws.device)
    mine = {
        k: v
        for k, v in ws.classifier_config.to_dict().items()
        if k not in ("seed", "name", "augment", "pretrained")
    }

    def rank(fit: RecordedFit) -> tuple[bool, bool, bool]:
        same = fit.classifier is not None and all(
            fit.classifier.get(k) == v for k, v in mine.items() if k in fit.classifier
        )
        return (fit.device == here, same, fit.fold == ws.fold)

    best = max(fits, key=rank)
    seconds, scaled = best.seconds, ""
    asked = ws.options_for(cls.name).get("epochs")
    if asked is not None and best.epochs:
        try:
            ratio = float(asked) / best.epochs
        except ValueError:
            ratio = 1.0
        if ratio != 1.0:
            seconds *= ratio
            scaled = f", scaled to {float(asked):g} epochs from its {best.epochs:g}"
    width = "" if not best.classifier else f", classifier width {best.classifier.get('width')}"
    # a fit recorded on another device says little about this one (measured: a CPU
    # record said 2 min for L2I's synth fit, which took under 10 s on an H200)
    elsewhere = "" if best.device == here else " (the record is from another device)"
    return (
        f"{head}: about {duration(seconds)}, from its recorded fit in {best.path} "
        f"(fold {best.fold}, {best.device}{width}{scaled}); this device: {here}{elsewhere}"
    )
