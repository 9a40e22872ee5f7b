"""One (dataset, fold) made ready for explainers: data, classifier, contexts.

Everything here is shared by the explainer cells of a fold and built once: the clips
loaded through the audio cache, the classifier trained or reloaded under a key of
data and configuration, the condition sets with their ground-truth stems, and the
context and fitted (cached) state each explainer gets. ``l2i-bench run`` and
``l2i-bench explain`` both start from a :class:`FoldWorkspace`, which times each stage
of its making (``profile``: audio, classifier, its logits) for the run's stage profile.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2i_bench.audio import FrontEnd
from l2i_bench.cache import all_finite, discard, entry_lock, load_torch, save_torch
from l2i_bench.classifier import (
    DEFAULT_CLASSIFIER,
    ClassifierConfig,
    TrainedClassifier,
    checkpoint_path,
    classifier_name,
    classifier_plugin,
    evaluate_logits,
    expand_preset,
    safe_cache_key,
    train_or_load_classifier,
)
from l2i_bench.data import ClipSet
from l2i_bench.errors import BenchError
from l2i_bench.results import PUBLISHED_CLASSIFIERS
from l2i_bench.scores import classifier_decisions, classifier_quality
from l2i_bench.timing import stage, stopwatch
from l2i_bench.types import Classifier, Dataset, Explainer, ExplainerContext


@dataclass
class RunConfig:
    """Everything that decides what a run computes (recorded in its manifest)."""

    dataset: str
    explainers: list[str]
    folds: list[str] | None = None
    data_dir: Path | None = None
    device: str = "auto"
    seed: int = 0
    """The seed of the cells being computed (set per seed by the runner from ``seeds``)."""
    seeds: list[int] | None = None
    """The grid's seeds (``--seeds 0,1,2``); None: just ``seed``."""
    threads: int | None = None
    """Torch CPU threads (None: torch's default, the cores it sees); recorded."""
    limit: int | None = None
    out: Path = Path("results")
    cache_dir: Path = Path(".cache")
    force: bool = False
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    classifier: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    listen: int = 2
    show_progress: bool = True
    cell_timeout: float | None = None
    """Seconds one cell may take before it fails (``--cell-timeout``); None: no limit."""

    @property
    def grid_seeds(self) -> list[int]:
        return list(self.seeds) if self.seeds else [self.seed]

    @property
    def classifier_name(self) -> str:
        """The classifier plugin of this run (``--classifier name=...``)."""
        return classifier_name(self.classifier)

    @property
    def folder(self) -> str:
        """The results folder under ``out`` (:func:`results_folder`)."""
        return results_folder(self.dataset, self.classifier_name)


def results_folder(dataset: str, classifier: str) -> str:
    """The dataset's name, and ``--<classifier>`` for a classifier other than the
    default, so that the leaderboards of different classifiers on one dataset live side
    by side (``results/esc50``, ``results/esc50--cnn14``), each with its cells,
    manifests and report."""
    return dataset if classifier == DEFAULT_CLASSIFIER else f"{dataset}--{classifier}"


def split_results_folder(folder: str) -> tuple[str, str]:
    """``(dataset, classifier)`` of a results folder's name (:func:`results_folder`'s
    inverse): ``esc50`` is the default classifier's, ``esc50--cnn14`` CNN14's."""
    dataset, _, classifier = folder.partition("--")
    return dataset, classifier or DEFAULT_CLASSIFIER


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(seed: int, *parts: str) -> int:
    """A seed per (run seed, fold, explainer): a cell's randomness does not depend on
    which other cells ran before it, so a resumed run equals an uninterrupted one."""
    return (seed * 1_000_003 + zlib.crc32("|".join(parts).encode())) % 2**31


def config_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def classifier_settings(dataset: Dataset, config: RunConfig) -> dict[str, Any]:
    """The classifier's settings for this run: the dataset's defaults overridden by
    ``--classifier`` (the seed, derived per fold and seed, is added by the workspace).
    Known before anything is trained, so a run can check them against stored cells."""
    given = expand_preset(config.classifier)  # a preset is its settings written out
    unknown = sorted(set(given) - set(ClassifierConfig.__dataclass_fields__))
    if unknown:
        raise BenchError(
            f"unknown classifier setting(s): {', '.join(unknown)}",
            "use --classifier KEY=VALUE with KEY one of "
            f"{', '.join(ClassifierConfig.__dataclass_fields__)}, or preset=NAME",
        )
    defaults = asdict(dataset.classifier_defaults)
    defaults.update(given)
    return {k: v for k, v in defaults.items() if k in ClassifierConfig.__dataclass_fields__}


def classifier_identity(
    dataset: Dataset,
    fold: str,
    config: RunConfig,
    device: torch.device,
    threads: int | None = None,
    published: Path | None = None,
) -> tuple[str, ClassifierConfig]:
    """The cache key of a (dataset, fold, seed)'s data and the classifier config its
    checkpoint is trained with; together they name the checkpoint
    (:func:`~l2i_bench.classifier.checkpoint_path`). ``threads``: the CPU thread count
    to key for (default: torch's current one). ``published``: a results folder's
    ``classifiers/``; when it holds this classifier trained on another device or thread
    count, its key is returned instead (:func:`published_key`)."""
    # On a CPU the thread count changes the trained weights (measured: 1 vs 2 threads
    # moved 2.5 % of the synth test decisions), so a checkpoint trained at another
    # count is another classifier, never reused in its place.
    if threads is None:
        threads = torch.get_num_threads()
    cpu = f"-cpu{threads}t" if device.type == "cpu" else ""
    name = config.classifier_name
    named = "" if name == DEFAULT_CLASSIFIER else f"-{name}"
    data = f"{dataset.name}-fold{fold}-{dataset.fingerprint()}-seed{config.seed}"
    settings = classifier_settings(dataset, config)
    settings["seed"] = derived_seed(config.seed, dataset.name, fold, "classifier")
    if settings.get("pretrained") is not None:
        settings["pretrained"] = Path(settings["pretrained"])
    classifier = ClassifierConfig(**settings)
    key = f"{data}{cpu}{named}"
    if published is not None:
        key = published_key(published, key, data, named, classifier, dataset)
    return key, classifier


def published_key(
    published: Path,
    key: str,
    data: str,
    named: str,
    classifier: ClassifierConfig,
    dataset: Dataset,
) -> str:
    """The key of the checkpoint that ``published`` (a results folder's ``classifiers/``)
    holds for this data and classifier config, whatever device or thread count trained
    it; ``key`` when it holds none, or holds the one ``key`` names.

    Why the device gives way here and nowhere else: the thread count and the device only
    change how the weights were *trained*; a board's cells explain the weights it
    publishes, and a cell added on a GPU, or at another ``--threads``, must explain those
    same weights rather than train its own (which the early check would then refuse).
    A cache entry is still keyed by what trained it, so the cache never serves a
    checkpoint trained elsewhere in place of a fresh training outside this folder."""
    if not Path(published).is_dir():
        return key
    named_here = checkpoint_path(published, key, classifier, dataset.task, dataset.num_classes)
    suffix = named_here.name[len(safe_cache_key(key)) :]  # -{config hash}.pt
    pattern = re.compile(
        re.escape(safe_cache_key(data))
        + r"(?:-cpu\d+t)?"
        + re.escape(safe_cache_key(named))
        + re.escape(suffix)
    )
    found = sorted(p.name for p in Path(published).iterdir() if pattern.fullmatch(p.name))
    if not found or safe_cache_key(key) + suffix in found:
        return key
    if len(found) > 1:
        raise BenchError(
            f"{published} holds {len(found)} checkpoints of this classifier (trained on "
            f"different devices or thread counts): {', '.join(found)}",
            "keep the one the folder's cells explain (classifier.csv gives its sha256) "
            "and remove the others",
        )
    return found[0][: -len(suffix)]


def run_settings(config: RunConfig, dataset: Dataset, metrics: Sequence[type]) -> dict[str, Any]:
    """What every cell of one leaderboard must share (:data:`l2i_bench.results.SHARED_SETTINGS`),
    as plain JSON values."""
    classifier = {
        k: v
        for k, v in classifier_settings(dataset, config).items()
        if k != "seed" and not (k == "name" and v == DEFAULT_CLASSIFIER)
    }
    payload = {
        "limit": config.limit,
        "dataset_fingerprint": dataset.fingerprint(),
        "classifier_config": classifier,
        "metrics": sorted(f"{m.name}:{m.version}" for m in metrics),
    }
    return json.loads(json.dumps(payload, sort_keys=True, default=str))


class FoldWorkspace:
    """Data, classifier and explainer contexts for one (dataset, fold); built once and
    shared by every explainer cell of that fold."""

    def __init__(
        self,
        dataset: Dataset,
        fold: str,
        config: RunConfig,
        device: torch.device,
        architecture: type[Classifier] | None = None,
        before_training: Callable[[FoldWorkspace], None] | None = None,
    ):
        """``architecture`` is the classifier plugin the settings name (``--classifier
        name=...``); None looks it up among the installed plugins. ``before_training``
        is called with the workspace, its clips loaded, when the classifier is about to
        be trained rather than loaded (``explain`` times a few steps and says how long
        training will take, while the user can still stop it)."""
        self.dataset = dataset
        self.fold = fold
        self.config = config
        self.device = device
        name = config.classifier_name
        if architecture is None:
            architecture = classifier_plugin(name)
        self.architecture = architecture
        self.front_end = FrontEnd(device, architecture.features)  # the classifier's log-mel
        self.split = dataset.split(fold)
        progress = config.show_progress

        def load(clips: Sequence, what: str) -> ClipSet:
            if not clips:
                raise BenchError(
                    f"dataset {dataset.name!r} fold {fold}: the {what} split is empty",
                    f"check the data under {dataset.data_dir}",
                )
            return ClipSet.load(
                clips,
                dataset.clip_seconds,
                dataset.num_classes,
                self.front_end,
                cache_dir=config.cache_dir,
                desc=f"{dataset.name} fold {fold} {what}",
                show_progress=progress,
            )

        self.profile: dict[str, Any] = {}
        """Seconds of each stage of this workspace's making (the manifest's profile):
        ``audio`` (load and decode, stems included), ``classifier`` (train or load) with
        ``classifier_reused``, ``classifier_eval`` (test and condition logits)."""
        with stage(self.profile, "audio", device):
            self.train = load(self.split.train, "train")
            self.valid = load(self.split.valid, "valid")
            self.test = load(self._limited(self.split.test), "test")
            self.conditions = {
                name: load(self._limited(clips), f"{name} condition")
                for name, clips in self.split.conditions.items()
                if clips
            }
            # Ground-truth stems (synth's target and interference) of the test and
            # condition sets, loaded once per fold: batches carry them for the oracle
            # references, and the condition sets' stems are shared by every cell's
            # ground-truth metrics.
            for clips in (self.test, *self.conditions.values()):
                clips.stem_waves = self._stem_waves(clips, config)
            self.condition_stems = {
                name: {
                    stem: torch.from_numpy(np.asarray(waves) * clips.gains[:, None])
                    for stem, waves in clips.stem_waves.items()
                }
                for name, clips in self.conditions.items()
            }
        published = Path(config.out) / config.folder / PUBLISHED_CLASSIFIERS
        self.classifier_key, self.classifier_config = classifier_identity(
            dataset, fold, config, device, published=published
        )
        if before_training is not None and architecture.trainable:
            path = checkpoint_path(
                config.cache_dir,
                self.classifier_key,
                self.classifier_config,
                dataset.task,
                dataset.num_classes,
            )
            if not path.is_file():
                before_training(self)
        with stage(self.profile, "classifier", device):
            self.classifier: TrainedClassifier = train_or_load_classifier(
                self.train,
                self.valid,
                task=dataset.task,
                num_classes=dataset.num_classes,
                config=self.classifier_config,
                architecture=architecture,
                cache_dir=config.cache_dir,
                cache_key=self.classifier_key,
                device=device,
                show_progress=progress,
                published=published,
            )
        self.profile["classifier_reused"] = self.classifier.reused
        self.profile["classifier_original_seconds"] = self.classifier.train_seconds
        self.model = self.classifier.model
        with stage(self.profile, "classifier_eval", device):
            self.test_logits = evaluate_logits(self.model, self.test, config.batch_size, device)
            # What the classifier decides on each condition set, shared by every cell of
            # the fold (ground-truth metrics score only the rows it decides for the target).
            self.condition_logits = {
                name: evaluate_logits(self.model, clips, config.batch_size, device)
                for name, clips in self.conditions.items()
            }
        self.quality = classifier_quality(
            self.test_logits, torch.from_numpy(self.test.targets), dataset.task
        )
        self.cache_key = f"{self.classifier_key}-clf{self.classifier.checkpoint_sha256[:10]}"

    @property
    def has_stems(self) -> bool:
        """Whether the test clips come with target and interference stems."""
        return all(s in self.test.stem_waves for s in ("target", "interference"))

    def _stem_waves(self, clips: ClipSet, config: RunConfig) -> dict[str, np.ndarray]:
        """Decoded waveforms of each stem every clip of the set has, aligned with the set
        (as decoded: :class:`ClipSet` scales them by the mixture's gain)."""
        stems = {}
        for stem in ("target", "interference"):
            if not all(stem in c.stems for c in clips.clips):
                continue
            stem_clips = [
                replace(c, path=Path(c.stems[stem]), clip_id=f"{c.clip_id}:{stem}")
                for c in clips.clips
            ]
            waves = ClipSet.load(
                stem_clips,
                self.dataset.clip_seconds,
                self.dataset.num_classes,
                self.front_end,
                cache_dir=config.cache_dir,
                show_progress=False,
            ).waveforms
            stems[stem] = waves
        return stems

    def _limited(self, clips: Sequence) -> list:
        """The first ``limit`` clips of a seeded shuffle (all when no limit)."""
        clips = list(clips)
        if self.config.limit is None or self.config.limit >= len(clips):
            return clips
        order = np.random.default_rng(self.config.seed).permutation(len(clips))
        return [clips[i] for i in sorted(order[: self.config.limit])]

    @property
    def thresholds(self) -> torch.Tensor | None:
        t = self.classifier.thresholds
        return None if t is None else torch.as_tensor(t, dtype=torch.float32).cpu()

    def options_for(self, explainer_name: str) -> dict[str, str]:
        """The dataset's option defaults for an explainer, overridden by ``--option``."""
        return {
            **self.dataset.explainer_options.get(explainer_name, {}),
            **self.config.options.get(explainer_name, {}),
        }

    def context(self, explainer_name: str, classifier=None) -> ExplainerContext:
        """An explainer's context; ``classifier`` replaces the fold's trained one (the
        sanity check's randomised copies), with everything else unchanged."""
        return ExplainerContext(
            dataset_name=self.dataset.name,
            task=self.dataset.task,
            class_names=self.dataset.class_names,
            classifier=self.model if classifier is None else classifier,
            front_end=self.front_end,
            device=self.device,
            seed=derived_seed(self.config.seed, self.dataset.name, self.fold, explainer_name),
            defaults=self.dataset.explainer_defaults,
            cache_dir=Path(self.config.cache_dir),
            cache_key=self.cache_key,
            options=self.options_for(explainer_name),
            show_progress=self.config.show_progress,
        )

    def explained_rows(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Which (clip, class) rows to explain: the predicted class for multiclass, every
        class the classifier predicts positive for multilabel."""
        decided = classifier_decisions(logits, self.dataset.task, self.thresholds)
        rows, classes = torch.nonzero(decided, as_tuple=True)
        return rows, classes

    def explainer_cache_path(self, cls: type[Explainer], *, tag: str = "") -> Path:
        """Where the fitted state of ``cls`` on this fold's classifier (or the one
        ``tag`` names) is cached, whether or not it exists yet."""
        context_seed = derived_seed(self.config.seed, self.dataset.name, self.fold, cls.name)
        key = config_hash(
            {
                "explainer": cls.name,
                "version": cls.version,
                "options": dict(self.options_for(cls.name)),
                "seed": context_seed,
                "cache_key": self.cache_key,
                **({"classifier_tag": tag} if tag else {}),
            }
        )
        return Path(self.config.cache_dir) / "explainers" / f"{cls.name}-{key}.pt"

    def fitted_explainer(
        self, cls: type[Explainer], *, classifier=None, tag: str = ""
    ) -> tuple[Explainer, dict[str, Any], float]:
        """An explainer fitted on the training split; learned state is cached so that
        a rerun (or ``l2i-bench explain``) reuses it. Returns (explainer, fit facts,
        fit seconds of the original fit). ``classifier`` (with a ``tag`` naming it in
        the cache key) fits the explainer to another classifier with the same options,
        budget and seed: the sanity check's randomised models."""
        context = self.context(cls.name, classifier)
        explainer = cls(context)
        if not cls.needs_training:
            return explainer, {}, 0.0
        path = self.explainer_cache_path(cls, tag=tag)
        key = path.stem.removeprefix(f"{cls.name}-")
        with entry_lock(path, message=f"waiting for another run fitting {cls.name} ({path})"):
            saved = load_torch(path, key, map_location=self.device)
            if saved is not None:
                try:
                    explainer.load_state_dict(saved["state"])
                    fit, seconds = dict(saved["fit"]), float(saved["seconds"])
                except Exception as err:  # another layout: an older version's fit
                    discard(
                        path, f"its state does not fit {cls.name} ({type(err).__name__}: {err})"
                    )
                else:
                    return explainer, {**fit, "reused_cache": str(path)}, seconds
            seed_everything(context.seed)
            with stopwatch(self.device) as elapsed:
                fit_info = explainer.fit(self.train, self.valid) or {}
            state = explainer.state_dict()
            if not all_finite(state):
                raise BenchError(
                    f"explainer {cls.name!r} finished fitting with NaN or infinite values in its state",
                    "lower its learning rate or check its inputs; nothing was cached",
                )
            save_torch(path, {"state": state, "fit": _plain(fit_info), "seconds": elapsed[0]}, key)
        return explainer, fit_info, elapsed[0]


def _plain(value: Any) -> Any:
    """Fit facts as tensors and plain containers only, so the entry loads with
    ``weights_only=True`` (numpy values become lists or floats, anything else its repr)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    return repr(value)
