"""Training and caching of the classifier every explainer interprets, whatever its
architecture (a classifier plugin, :class:`l2i_bench.types.Classifier`; the built-in
``kumar`` is the L2I paper's CNN).

One classifier per (dataset, fold, seed), trained or reused from a cache: Adam, early
stopping on the validation split (never the test fold, unlike the L2I code), best
weights restored, and per-class decision thresholds for multilabel data chosen on
validation F1 from the grid L2I's ``compute_multilabel_threshold`` uses. BatchNorm
statistics are recomputed under the current weights before every validation ("precise
BN", see :func:`recompute_batchnorm_statistics`): with the default running average,
small folds validate at chance although the network has learned the task. A load-only
plugin (``trainable = False``) is loaded from ``pretrained`` and only evaluated.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from torch import nn
from tqdm.auto import tqdm

from l2i_bench.audio import FRONT_END_VERSION
from l2i_bench.cache import (
    check_record,
    copy_entry,
    discard,
    entry_lock,
    file_digest,
    load_torch,
    save_torch,
    warn,
)
from l2i_bench.data import ClipSet
from l2i_bench.errors import BenchError, did_you_mean
from l2i_bench.failpoints import failpoint
from l2i_bench.types import AudioBatch, Classifier, Task

THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Candidate multilabel decision thresholds {0.05, 0.10, ..., 0.95} (L2I's grid)."""

CHECKPOINT_FORMAT = 1
PRECISE_BN_BATCHES = 8


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (what the benchmark script and manifest report)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------- configuration


DEFAULT_CLASSIFIER = "kumar"
"""The L2I paper's CNN. Its name is left out of every key, setting and hash (see
:meth:`ClassifierConfig.to_dict`), which were all made before classifiers were plugins:
the checkpoints and cells computed then stay valid."""


@dataclass
class ClassifierConfig:
    """Everything that changes the trained weights; hashed into the cache file name.

    ``pretrained`` is a local checkpoint (e.g. Kumar et al.'s AudioSet weights saved
    as a state dict) whose backbone is loaded before training. ``pos_weight`` is the
    per-class positive weight of the multilabel BCE (L2I used one for SONYC-UST).
    ``augment`` turns on seeded SpecAugment-style time/frequency masking.
    """

    name: str = DEFAULT_CLASSIFIER
    """The classifier plugin (``l2i-bench plugins`` lists them)."""
    width: float = 1.0
    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 32
    patience: int = 8
    seed: int = 0
    pretrained: Path | None = None
    pos_weight: list[float] | None = None
    augment: bool = True

    def __post_init__(self) -> None:
        """Coerce CLI-style values (``--classifier width=0.5``, ``augment=false``,
        ``pos_weight=1,3,3``) so a string never reaches training or the config hash."""
        try:
            self.width = float(self.width)
            self.lr = float(self.lr)
            for name in ("epochs", "batch_size", "patience", "seed"):
                value = getattr(self, name)
                if isinstance(value, str) or float(value) != int(value):
                    value = float(value)
                    if value != int(value):
                        raise ValueError(f"{name} must be a whole number, got {value}")
                setattr(self, name, int(value))
            if isinstance(self.augment, str):
                if self.augment.lower() not in {
                    "1",
                    "0",
                    "true",
                    "false",
                    "yes",
                    "no",
                    "on",
                    "off",
                }:
                    raise ValueError(f"augment must be true or false, got {self.augment!r}")
                self.augment = self.augment.lower() in {"1", "true", "yes", "on"}
            self.augment = bool(self.augment)
            if self.pretrained is not None and not isinstance(self.pretrained, Path):
                self.pretrained = Path(str(self.pretrained))
            if isinstance(self.pos_weight, str):
                self.pos_weight = [float(v) for v in self.pos_weight.split(",") if v.strip()]
            if self.pos_weight is not None:
                self.pos_weight = [float(v) for v in self.pos_weight]
        except (TypeError, ValueError) as err:
            raise BenchError(
                f"classifier config: {err}",
                "give numbers for width/lr/epochs/batch_size/patience/seed, true/false for "
                "augment and comma-separated numbers for pos_weight",
            ) from err

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (for the manifest and the checkpoint); the default
        classifier's name is implicit (:data:`DEFAULT_CLASSIFIER`)."""
        out = asdict(self)
        if out["name"] == DEFAULT_CLASSIFIER:
            del out["name"]
        out["pretrained"] = str(self.pretrained) if self.pretrained is not None else None
        out["pos_weight"] = list(map(float, self.pos_weight)) if self.pos_weight else None
        out["width"] = float(self.width)
        out["lr"] = float(self.lr)
        return out

    def validate(self, num_classes: int, task: Task) -> None:
        """Reject settings that would fail later, naming the option to fix."""
        checks = [
            (self.width > 0, f"width must be > 0, got {self.width}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}"),
            (self.patience >= 1, f"patience must be >= 1, got {self.patience}"),
        ]
        for ok, problem in checks:
            if not ok:
                raise BenchError(f"classifier config: {problem}", "fix the classifier settings")
        if self.pos_weight is not None:
            if task is not Task.MULTILABEL:
                raise BenchError(
                    "classifier config: pos_weight is only used by multilabel datasets",
                    "remove pos_weight for this multiclass dataset",
                )
            if len(self.pos_weight) != num_classes:
                raise BenchError(
                    f"classifier config: pos_weight has {len(self.pos_weight)} values "
                    f"but the dataset has {num_classes} classes",
                    "give one positive weight per class",
                )


@dataclass(frozen=True)
class ClassifierPreset:
    """A named set of ``--classifier`` settings (``--classifier preset=NAME``)."""

    name: str
    settings: Mapping[str, Any]
    """What the preset writes out; the dataset's defaults fill the rest."""
    description: str


CLASSIFIER_PRESETS: dict[str, ClassifierPreset] = {
    p.name: p
    for p in (
        ClassifierPreset(
            "default",
            {},
            "the dataset's own settings, what a run uses without --classifier "
            "(ESC-50: width 0.5, up to 60 epochs; synth: width 0.25, up to 30)",
        ),
        ClassifierPreset(
            "fast",
            {"width": 0.25, "epochs": 30},
            "narrow and short-trained: the published ESC-50 board's classifier "
            "(about 6.5 min on ESC-50 fold 4 on one CPU thread)",
        ),
        ClassifierPreset(
            "paper",
            {"width": 1.0},
            "the L2I paper's full-width network (4.7 M parameters), the dataset's epochs",
        ),
    )
}
"""Presets a user can name instead of writing the settings out. A preset only expands
into settings (:func:`expand_preset`), so its classifier and cache key are those of the
same settings written out, and a checkpoint made either way serves both."""


def expand_preset(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``{"preset": "fast", "epochs": 10}`` -> ``{"width": 0.25, "epochs": 10}``: the
    preset's settings under the explicit ones, which win whatever their order on the
    command line. Settings without a preset are returned as they are."""
    out = dict(settings)
    name = out.pop("preset", None)
    if name is None:
        return out
    preset = CLASSIFIER_PRESETS.get(str(name))
    if preset is None:
        raise BenchError(
            f"unknown classifier preset {name!r}{did_you_mean(str(name), list(CLASSIFIER_PRESETS))}",
            f"use --classifier preset=NAME with NAME one of {', '.join(CLASSIFIER_PRESETS)} "
            "(`l2i-bench plugins` lists what each sets)",
        )
    return {**preset.settings, **out}


def preset_text(preset: ClassifierPreset) -> str:
    """``width=0.25 epochs=30`` (or ``(none)``): a preset's settings as typed."""
    return " ".join(f"{k}={setting_text(v)}" for k, v in preset.settings.items()) or "(none)"


def setting_text(value: Any) -> str:
    """A setting's value as ``--classifier KEY=VALUE`` takes it back (``0.25``, ``1``,
    ``true``, ``1,3,3``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(setting_text(v) for v in value)
    return str(value)


@dataclass
class TrainedClassifier:
    """A ready classifier (eval mode, on the run's device) and how it was obtained.

    ``thresholds`` are per-class decision thresholds on probabilities (multilabel
    only). ``train_seconds`` is the time the cached checkpoint took to train, also
    when it was reused.
    """

    model: Classifier
    config: ClassifierConfig
    thresholds: torch.Tensor | None
    history: list[dict[str, float]]
    best_epoch: int
    checkpoint: Path
    checkpoint_sha256: str
    reused: bool
    train_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_validation_score(self) -> float:
        """Validation score of the restored epoch (accuracy or micro AP)."""
        for row in self.history:
            if int(row["epoch"]) == self.best_epoch:
                return float(row["val_score"])
        return float("nan")


# ------------------------------------------------------------------- small helpers


def config_hash(config: ClassifierConfig, task: Task, num_classes: int) -> str:
    """Short hash of what determines the weights. The pretrained file enters by its
    content, so replacing the file at the same path never reuses a stale model."""
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "front_end": FRONT_END_VERSION,
        "config": config.to_dict(),
        "task": str(task),
        "num_classes": int(num_classes),
    }
    if config.pretrained is not None and Path(config.pretrained).is_file():
        payload["pretrained_sha256"] = file_digest(Path(config.pretrained))[1]
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def evaluate_logits(
    model: nn.Module, clipset: ClipSet, batch_size: int, device: torch.device | str
) -> torch.Tensor:
    """Logits ``(N, C)`` on CPU for every clip, in order (no grad, eval mode; the
    model's previous train/eval mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    outs: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for batch in clipset.batches(batch_size):
                outs.append(model(batch.logmel.to(device)).float().cpu())
    finally:
        model.train(was_training)
    if not outs:
        num_classes = getattr(model, "num_classes", 0)
        return torch.empty(0, num_classes)
    return torch.cat(outs)


def validation_score(task: Task, logits: torch.Tensor, targets: np.ndarray) -> float:
    """Accuracy (multiclass) or sklearn micro average precision (multilabel)."""
    if task is Task.MULTICLASS:
        predicted = logits.argmax(dim=1).numpy()
        return float(np.mean(predicted == targets.argmax(axis=1)))
    if targets.sum() == 0:
        return float("nan")  # AP undefined without positives
    probs = torch.sigmoid(logits).numpy()
    return float(average_precision_score(targets, probs, average="micro"))


def choose_thresholds(
    probs: torch.Tensor, targets: torch.Tensor, grid: tuple[float, ...] = THRESHOLD_GRID
) -> torch.Tensor:
    """Per-class threshold from ``grid`` maximising F1 of ``probs >= t`` on ``targets``.

    Ties go to the lowest threshold; a class whose F1 is 0 everywhere (e.g. no
    positives in the validation split) keeps 0.5, the sigmoid's neutral point.
    """
    probs = probs.detach().float().cpu()
    targets = targets.detach().float().cpu()
    grid_t = torch.tensor(grid, dtype=torch.float32)
    predicted = (probs.unsqueeze(0) >= grid_t.view(-1, 1, 1)).float()  # (G, N, C)
    tp = (predicted * targets).sum(dim=1)
    fp = (predicted * (1 - targets)).sum(dim=1)
    fn = ((1 - predicted) * targets).sum(dim=1)
    f1 = 2 * tp / torch.clamp(2 * tp + fp + fn, min=1e-12)  # (G, C)
    best = f1.argmax(dim=0)  # first maximum = lowest threshold
    chosen = grid_t[best]
    return torch.where(f1.max(dim=0).values > 0, chosen, torch.full_like(chosen, 0.5))


def recompute_batchnorm_statistics(
    model: nn.Module,
    clipset: ClipSet,
    batch_size: int,
    device: torch.device | str,
    *,
    seed: int = 0,
    max_batches: int = PRECISE_BN_BATCHES,
) -> None:
    """Replace BatchNorm running statistics by exact averages under the current weights
    ("precise BN"), over at most ``max_batches`` seeded training batches.

    The default exponential average (momentum 0.1) trails weights that move every
    step; on small folds (a few steps per epoch) eval-mode outputs then sit at chance
    while training-mode outputs are perfect (measured: 0.33 vs 1.0 validation accuracy
    on three tones). Validation and the saved model both use eval mode, so the
    statistics must match the weights they are saved with. No BN layer follows the
    head's dropout, so dropout does not bias the statistics.
    """
    was_training = model.training

    def inputs():
        for index, batch in enumerate(clipset.batches(batch_size, shuffle=True, seed=seed)):
            if index >= max_batches:
                break
            if len(batch) >= 2 or index == 0:
                yield batch.logmel.to(device)

    estimate_batchnorm_statistics(model, inputs())
    model.train(was_training)


def estimate_batchnorm_statistics(
    model: nn.Module, inputs: Iterable[torch.Tensor], layers: Sequence[nn.Module] | None = None
) -> None:
    """Set the running statistics of ``layers`` (default: every BatchNorm layer of the
    model) to the exact average over ``inputs`` under the current weights; the other
    layers run in eval mode and keep theirs. Leaves the model in eval mode. The one
    mechanism behind the classifier's precise BN and the randomised copies' statistics
    (:mod:`l2i_bench.randomise`)."""
    pool = model.modules() if layers is None else layers
    batchnorms = [m for m in pool if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    if not batchnorms:
        return
    momenta = [bn.momentum for bn in batchnorms]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
        bn.train()
    try:
        with torch.no_grad():
            for logmel in inputs:
                model(logmel)
    finally:
        for bn, momentum in zip(batchnorms, momenta, strict=True):
            bn.momentum = momentum
        model.eval()


def spec_augment(logmel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One time mask (<= 1/8 of the frames) and one mel mask (<= 12 bands) per clip,
    filled with the clip's mean. Draws come from ``generator`` on the CPU, so the same
    seed gives the same masks on any device."""
    batch, _, frames, mels = logmel.shape
    out = logmel.clone()
    fill = logmel.mean(dim=(1, 2, 3))
    t_width = torch.randint(0, max(1, frames // 8) + 1, (batch,), generator=generator)
    f_width = torch.randint(0, 13, (batch,), generator=generator)
    t_start = (torch.rand(batch, generator=generator) * (frames - t_width + 1)).long()
    f_start = (torch.rand(batch, generator=generator) * (mels - f_width + 1)).long()
    for row in range(batch):
        t0, t1 = int(t_start[row]), int(t_start[row] + t_width[row])
        f0, f1 = int(f_start[row]), int(f_start[row] + f_width[row])
        out[row, :, t0:t1, :] = fill[row]
        out[row, :, :, f0:f1] = fill[row]
    return out


# ------------------------------------------------------------------- pretrained


def classifier_name(settings: Mapping[str, Any]) -> str:
    """The classifier plugin that ``--classifier`` settings name (the default when none)."""
    return str(settings.get("name", DEFAULT_CLASSIFIER))


def classifier_plugin(name: str) -> type[Classifier]:
    """The installed classifier plugin called ``name`` (an error lists the others)."""
    from l2i_bench.registry import load_registry

    return load_registry().classifier(name)


def read_state_dict(path: Path, fix: str) -> Mapping[str, torch.Tensor]:
    """The tensors of a local checkpoint, loaded with ``weights_only=True``: a raw state
    dict, or one under ``state_dict`` (Lightning and most trainers) or ``model`` (the
    PANNs checkpoints). Anything else is an error naming the file, with ``fix``."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"pretrained classifier checkpoint not found: {path}", fix)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated or a pickled module object
        raise BenchError(
            f"cannot load pretrained classifier checkpoint {path}: {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}",
            fix,
        ) from err
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
            break
    if (
        not isinstance(loaded, Mapping)
        or not loaded
        or not all(isinstance(v, torch.Tensor) for v in loaded.values())
    ):
        raise BenchError(f"pretrained checkpoint {path} does not hold a state dict", fix)
    return loaded


# ------------------------------------------------------------------- checkpoints


def weights_sha256(state_dict: Mapping[str, torch.Tensor], thresholds: Any = None) -> str:
    """The classifier's identity: SHA-256 over each tensor's name, dtype, shape and bytes
    (sorted by name) and the decision thresholds. Training time and history stored beside
    the weights do not enter, so identical retrained weights keep their identity and the
    cells computed on them stay valid."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes() if tensor.numel() else b"")
    if thresholds is not None:
        digest.update(b"thresholds|")
        digest.update(torch.as_tensor(thresholds).float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _check_cached(
    payload: Any,
    config: ClassifierConfig,
    task: Task,
    num_classes: int,
    architecture: type[Classifier],
) -> tuple[Classifier, dict[str, Any]]:
    """Validate a cached checkpoint's payload against what was asked; raises on anything
    unexpected (the caller discards the entry)."""
    required = {"state_dict", "config", "task", "num_classes", "thresholds", "history"}
    if not isinstance(payload, dict) or not required <= set(payload):
        raise ValueError("missing keys")
    if payload["task"] != str(task) or int(payload["num_classes"]) != num_classes:
        raise ValueError("task or class count differs")
    if payload["config"] != config.to_dict():
        raise ValueError("config differs")
    model = architecture(num_classes, task, width=config.width)
    model.load_state_dict(payload["state_dict"], strict=True)
    thresholds = payload["thresholds"]
    if task is Task.MULTILABEL and (
        not isinstance(thresholds, torch.Tensor) or thresholds.shape != (num_classes,)
    ):
        raise ValueError("multilabel thresholds missing")
    return model, payload


# ------------------------------------------------------------------- training


def loss_function(task: Task, config: ClassifierConfig, device: torch.device) -> nn.Module:
    if task is Task.MULTICLASS:
        return nn.CrossEntropyLoss()
    pos_weight = None
    if config.pos_weight is not None:
        pos_weight = torch.tensor(config.pos_weight, dtype=torch.float32, device=device)
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight)


def training_step(
    model: nn.Module,
    batch: AudioBatch,
    optimiser: torch.optim.Optimizer,
    loss_fn: nn.Module,
    task: Task,
    augment_rng: torch.Generator | None,
) -> torch.Tensor:
    """One optimiser step on a batch (SpecAugment drawn from ``augment_rng`` when
    given): what training repeats and what ``explain``'s estimate times. Returns the
    batch's loss."""
    device = next(model.parameters()).device
    logmel = batch.logmel.to(device)
    if augment_rng is not None:
        logmel = spec_augment(logmel, augment_rng)
    logits = model(logmel)
    targets = batch.targets.to(device)
    if task is Task.MULTICLASS:
        targets = targets.argmax(dim=1)
    loss = loss_fn(logits, targets)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss


def _train(
    train: ClipSet,
    valid: ClipSet,
    *,
    task: Task,
    num_classes: int,
    config: ClassifierConfig,
    architecture: type[Classifier],
    device: torch.device,
    show_progress: bool,
) -> tuple[Classifier, list[dict[str, float]], int, dict[str, Any]]:
    """Train with early stopping; returns the best-epoch model (eval mode). A load-only
    classifier is loaded and validated once (epoch 0), never trained."""
    torch.manual_seed(config.seed)
    model = architecture(num_classes, task, width=config.width)
    extra: dict[str, Any] = {}
    if config.pretrained is not None:
        extra["pretrained"] = model.load_pretrained(Path(config.pretrained))
    model.to(device)
    if not architecture.trainable:
        model.eval()
        score = validation_score(
            task, evaluate_logits(model, valid, config.batch_size, device), valid.targets
        )
        return model, [{"epoch": 0.0, "val_score": score}], 0, extra
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = loss_function(task, config, device)
    augment_rng = torch.Generator().manual_seed(config.seed)
    valid_targets = valid.targets

    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state = -math.inf, 0, None
    stale = 0
    bar = tqdm(
        range(1, config.epochs + 1),
        desc="training classifier",
        unit="epoch",
        disable=not show_progress,
    )
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        total, seen = 0.0, 0
        for batch in train.batches(config.batch_size, shuffle=True, seed=config.seed + epoch):
            if len(batch) < 2:
                continue  # BatchNorm cannot train on a single clip
            loss = training_step(
                model, batch, optimiser, loss_fn, task, augment_rng if config.augment else None
            )
            total += float(loss.detach()) * len(batch)
            seen += len(batch)
        step_seconds = time.perf_counter() - start
        recompute_batchnorm_statistics(
            model, train, config.batch_size, device, seed=config.seed + epoch
        )
        val_logits = evaluate_logits(model, valid, config.batch_size, device)
        score = validation_score(task, val_logits, valid_targets)
        row = {
            "epoch": float(epoch),
            "train_loss": total / max(seen, 1),
            "val_score": score,
            "step_seconds": step_seconds,  # optimiser steps only
            "seconds": time.perf_counter() - start,  # + precise BN + validation
        }
        history.append(row)
        if epoch == 1:
            failpoint("classifier")
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{score:.3f}")
        if not math.isfinite(row["train_loss"]):
            raise BenchError(
                f"classifier training diverged at epoch {epoch} (loss {row['train_loss']})",
                "lower the classifier learning rate (lr)",
            )
        if score > best_score or best_state is None:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
            if stale >= config.patience:
                break
    bar.close()
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return model, history, best_epoch, extra


def checkpoint_path(
    cache_dir: Path, cache_key: str, config: ClassifierConfig, task: Task, num_classes: int
) -> Path:
    """Where the checkpoint of this data (``cache_key``) and config lives, whether or not
    it exists yet: ``cache_dir/classifiers/{cache_key}-{hash}.pt``. Computed without
    training, so ``explain`` can say beforehand whether it will train."""
    safe_key = safe_cache_key(cache_key)
    return (
        Path(cache_dir) / "classifiers" / f"{safe_key}-{config_hash(config, task, num_classes)}.pt"
    )


def safe_cache_key(cache_key: str) -> str:
    """``cache_key`` as it appears in a checkpoint's file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", cache_key)


def train_or_load_classifier(
    train: ClipSet,
    valid: ClipSet,
    *,
    task: Task,
    num_classes: int,
    config: ClassifierConfig,
    cache_dir: Path,
    cache_key: str,
    device: torch.device | str,
    show_progress: bool = True,
    architecture: type[Classifier] | None = None,
    published: Path | None = None,
) -> TrainedClassifier:
    """The classifier of one (dataset, fold): from the cache if a valid checkpoint for
    this data and config exists, else from the folder of ``published`` checkpoints (a
    results folder's ``classifiers/``, copied into the cache), else trained and cached.

    Why a published checkpoint comes before training: a retrain is bit-identical only on
    the same arithmetic (:func:`l2i_bench.provenance.arithmetic`), so a board extended
    on another machine must explain the weights its cells explain, not a retrain of them.

    ``cache_key`` must identify the data (dataset fingerprint and fold); the config
    hash is appended, so ``cache_dir/classifiers/{cache_key}-{hash}.pt`` changes with
    anything that changes the weights. The entry goes through :mod:`l2i_bench.cache`:
    a checkpoint that fails its integrity record, holds a pickled object or a non-finite
    weight, or does not fit this config is discarded with a warning naming it and the
    classifier is retrained; a second run that wants the same checkpoint waits for the
    first to finish training it.
    """
    task = Task(task)
    device = torch.device(device)
    config.validate(num_classes, task)
    if architecture is None:
        architecture = classifier_plugin(config.name)
    if architecture.name != config.name:
        raise BenchError(
            f"classifier config names {config.name!r} but the plugin given is "
            f"{architecture.name!r}",
            "pass the plugin registered under the config's name",
        )
    if not architecture.trainable and config.pretrained is None:
        raise BenchError(
            f"classifier {config.name!r} is load-only: it needs its weights",
            f"add --classifier pretrained=PATH (a state dict of {config.name})",
        )
    if len(valid) == 0:
        raise BenchError(
            "the classifier needs a non-empty validation split for early stopping",
            "give the dataset's split() a validation part (carved from training, "
            "never the test fold)",
        )
    if len(train) < 2:
        raise BenchError(
            f"the classifier needs at least 2 training clips, got {len(train)}",
            "check the dataset's split() and the data folder",
        )
    path = checkpoint_path(cache_dir, cache_key, config, task, num_classes)

    with entry_lock(path, message=f"waiting for another run training the classifier {path}"):
        _take_published(published, path)
        return _load_or_train(
            path,
            train,
            valid,
            task=task,
            num_classes=num_classes,
            config=config,
            architecture=architecture,
            device=device,
            show_progress=show_progress,
        )


PUBLISHED_CHECKPOINT_MB = 32
"""Largest checkpoint a results folder publishes (Kumar's CNN at width 1: 19 MB; a
full-width CNN14, 320 MB, is recorded by its sha256 only)."""


def publish_checkpoint(checkpoint: Path, published: Path) -> tuple[Path | None, str]:
    """Copy a cache entry (``checkpoint`` and its integrity record) into the results
    folder's ``published`` checkpoints, so that cells added later on any machine explain
    these weights (see :func:`train_or_load_classifier`). Returns the published path, or
    None, with a note for the manifest."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        return None, f"not published: {checkpoint} is not on the driver's disk"
    size_mb = checkpoint.stat().st_size / 2**20
    if size_mb > PUBLISHED_CHECKPOINT_MB:
        return None, (
            f"not published: {size_mb:.0f} MB is over the {PUBLISHED_CHECKPOINT_MB} MB "
            "a results folder takes"
        )
    target = Path(published) / checkpoint.name
    if target.is_file() and file_digest(target) == file_digest(checkpoint):
        return target, "published earlier"
    problem = copy_entry(checkpoint, target, checkpoint.stem)
    if problem is not None:
        return None, f"not published: the cache entry {checkpoint} fails its record ({problem})"
    return target, "published"


def _take_published(published: Path | None, path: Path) -> None:
    """Put the published checkpoint named like the cache entry ``path`` in its place
    (also over a different local one: the published weights are the ones its results
    explain); a published file that fails its record is reported and left out."""
    if published is None:
        return
    source = Path(published) / path.name
    if not source.is_file():
        return
    if path.is_file():
        if file_digest(path) == file_digest(source):
            return
        why = check_record(path, path.stem) or "its weights are not the published ones"
        warn(f"discarding cache entry {path}: {why}; replaced by the published {source}")
    problem = copy_entry(source, path, path.stem)
    if problem is not None:
        warn(f"published classifier {source} not used: {problem}")


def _load_or_train(
    path: Path,
    train: ClipSet,
    valid: ClipSet,
    *,
    task: Task,
    num_classes: int,
    config: ClassifierConfig,
    architecture: type[Classifier],
    device: torch.device,
    show_progress: bool,
) -> TrainedClassifier:
    entry_key = path.stem
    payload = load_torch(path, entry_key)
    if payload is not None:
        try:
            model, payload = _check_cached(payload, config, task, num_classes, architecture)
        except Exception as err:
            discard(path, f"it does not fit this classifier ({type(err).__name__}: {err})")
        else:
            model.to(device).eval()
            thresholds = payload["thresholds"]
            return TrainedClassifier(
                model=model,
                config=config,
                thresholds=thresholds.float() if thresholds is not None else None,
                history=list(payload["history"]),
                best_epoch=int(payload.get("best_epoch", 0)),
                checkpoint=path,
                checkpoint_sha256=weights_sha256(payload["state_dict"], thresholds),
                reused=True,
                train_seconds=float(payload.get("train_seconds", 0.0)),
                extra=dict(payload.get("extra", {})),
            )

    start = time.perf_counter()
    model, history, best_epoch, extra = _train(
        train,
        valid,
        task=task,
        num_classes=num_classes,
        config=config,
        architecture=architecture,
        device=device,
        show_progress=show_progress,
    )
    thresholds = None
    if task is Task.MULTILABEL:
        probs = torch.sigmoid(evaluate_logits(model, valid, config.batch_size, device))
        thresholds = choose_thresholds(probs, torch.from_numpy(valid.targets))
    train_seconds = time.perf_counter() - start
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "state_dict": state_dict,
            "config": config.to_dict(),
            "task": str(task),
            "num_classes": int(num_classes),
            "thresholds": thresholds,
            "history": history,
            "best_epoch": int(best_epoch),
            "train_seconds": float(train_seconds),
            "extra": extra,
        },
        entry_key,
    )
    return TrainedClassifier(
        model=model,
        config=config,
        thresholds=thresholds,
        history=history,
        best_epoch=best_epoch,
        checkpoint=path,
        checkpoint_sha256=weights_sha256(state_dict, thresholds),
        reused=False,
        train_seconds=train_seconds,
        extra=extra,
    )
