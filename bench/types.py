"""The contracts between the host and its plugins.

Everything a plugin sees or returns is defined here, so a plugin author reads one
module. Tensors follow one layout everywhere:

* waveform ``(B, L)`` float32 at :data:`l2i_bench.audio.SAMPLE_RATE`;
* complex STFT ``(B, F, T)`` with ``F = N_FFT // 2 + 1 = 513``;
* log-mel classifier input ``(B, 1, T, N_MELS)`` in dB (time on the height axis, as
  Kumar et al.'s CNN expects);
* an explanation mask ``(B, F, T)`` in ``[0, 1]`` on the input's STFT grid, in the
  domain the method defines it (:class:`MaskDomain`: a gain on ``|X|``, or a ratio on
  ``log(1 + |X|)`` as L2I and FLINT define theirs).

Metrics never apply a mask themselves: :mod:`l2i_bench.perturb` owns "keep" and
"remove" for each domain, so every metric perturbs an input exactly as the method's
reference does, and the ``variant`` column says which operator was used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from l2i_bench.magnitude import complex_magnitude

if TYPE_CHECKING:
    from l2i_bench.audio import FrontEnd


class Task(StrEnum):
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"


BOTH_TASKS: frozenset[Task] = frozenset({Task.MULTICLASS, Task.MULTILABEL})


class MaskDomain(StrEnum):
    """Where an explanation mask acts (see :mod:`l2i_bench.perturb` for the operators).

    ``LINEAR``: keep ``M |X|``, remove ``(1 - M) |X|``. ``LOG1P``: the L2I code's
    domain, keep ``expm1(M log1p|X|)``, remove ``expm1((1 - M) log1p|X|)``. A binary
    mask means the same in both.
    """

    LINEAR = "linear"
    LOG1P = "log1p"


class Direction(StrEnum):
    """Which way a metric column is better; the leaderboard prints it per column."""

    HIGHER = "higher"
    LOWER = "lower"
    NEUTRAL = "neutral"  # descriptive columns (e.g. number of components kept)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Clip:
    """One labelled audio file.

    ``labels`` holds the positive class indices (exactly one for multiclass).
    ``stems`` maps stem names to audio files when ground truth is known: ``target``
    (the labelled event alone) and ``interference`` (everything else in the mix).
    """

    clip_id: str
    path: Path
    labels: tuple[int, ...]
    stems: Mapping[str, Path] = field(default_factory=dict)
    condition: str = "clean"


@dataclass(frozen=True)
class Split:
    """The clips of one fold. ``protocol`` says in words how the split was made and is
    recorded in the run manifest (e.g. a within-data split when folds are missing).

    ``conditions`` holds extra test sets with stems (``synth``'s *overlap* and *noise*),
    scored by the ground-truth metrics only.
    """

    fold: str
    train: Sequence[Clip]
    valid: Sequence[Clip]
    test: Sequence[Clip]
    protocol: str
    conditions: Mapping[str, Sequence[Clip]] = field(default_factory=dict)


@dataclass(frozen=True)
class ExplainerDefaults:
    """Per-dataset settings explainers start from (overridable with ``--option``)."""

    nmf_components: int = 100
    relevance_threshold: float = 0.2
    dictionary_strategy: str = "global"  # or "noise_then_class" (SONYC-UST, appendix A.1)
    interpreter_epochs: int = 35
    interpreter_lr: float = 2e-4


NO_DEFAULT: Any = object()


def cast_option(value: Any, default: Any) -> Any:
    """``--option`` text as the default's type (``true``/``1``/``yes``/``on`` for a
    bool); as given when the default is ``None``. Raises ``ValueError`` when it does not
    parse."""
    if isinstance(default, bool):
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                raise ValueError(f"{value!r} is not a yes/no value")
            return lowered in {"1", "true", "yes", "on"}
        return bool(value)
    return type(default)(value) if default is not None else value


@dataclass(frozen=True)
class Option:
    """One setting an explainer reads with ``context.option(name)``, settable with
    ``--option EXPLAINER.NAME=VALUE``.

    Declaring it lets the host refuse a misspelt option before any work, list the
    options (``l2i-bench plugins --options NAME``) and show each default per dataset.
    ``default`` is a value, ``None`` (the method derives it, said in ``help``), or a
    function of the dataset's :class:`ExplainerDefaults` (e.g. ``lambda d:
    d.interpreter_epochs``); a given value is cast to the default's type.
    """

    default: Any
    help: str

    def resolve(self, defaults: ExplainerDefaults) -> Any:
        return self.default(defaults) if callable(self.default) else self.default


@dataclass(frozen=True)
class ClassifierDefaults:
    """How the host trains the classifier for a dataset."""

    width: float = 1.0  # channel multiplier of the Kumar et al. CNN (1.0 = the paper's)
    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 32
    patience: int = 8
    pos_weight: tuple[float, ...] | None = None  # per-class BCE positive weight (multilabel)


class Dataset(ABC):
    """A dataset plugin: lists clips and folds; the host loads audio and features.

    Subclasses set the class attributes and implement :meth:`class_names`,
    :meth:`folds` and :meth:`split`. ``prepare`` must either make the data usable
    (e.g. generate it) or raise :class:`l2i_bench.errors.BenchError` naming the missing
    file and the fix.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    task: ClassVar[Task]
    clip_seconds: ClassVar[float]
    explainer_defaults: ClassVar[ExplainerDefaults] = ExplainerDefaults()
    classifier_defaults: ClassVar[ClassifierDefaults] = ClassifierDefaults()
    explainer_options: ClassVar[Mapping[str, Mapping[str, str]]] = {}
    """Per-explainer option defaults for this dataset (e.g. fewer SLIME samples on a
    small generated set); ``--option`` overrides them and the manifest records both."""

    show_progress: bool = True
    """Set by the host from ``--quiet``: long preparation (generating, indexing) may
    draw a progress bar only when it is true."""

    def __init__(self, data_dir: Path | None = None, *, seed: int = 0) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else self.default_data_dir()
        self.seed = seed

    @classmethod
    def default_data_dir(cls) -> Path:
        return Path("datasets") / cls.name

    def prepare(self) -> None:
        """Check (or create) the data on disk; raise BenchError with the fix if unusable."""

    @property
    @abstractmethod
    def class_names(self) -> list[str]: ...

    @abstractmethod
    def folds(self) -> list[str]:
        """Names of the folds available in ``data_dir`` (e.g. ``["1", ..., "5"]``)."""

    def default_folds(self) -> list[str]:
        """Folds a run covers when ``--folds`` is not given (all of them by default)."""
        return self.folds()

    @abstractmethod
    def split(self, fold: str) -> Split: ...

    def fingerprint(self) -> str:
        """A short hash of what is on disk; part of every cache key. Override when the
        dataset has a cheaper or stronger identity than the default (the clip list)."""
        import hashlib

        digest = hashlib.sha256(f"{self.name}:{self.version}".encode())
        for fold in self.folds():
            for part in (self.split(fold).train, self.split(fold).test):
                for clip in part:
                    digest.update(clip.clip_id.encode())
        return digest.hexdigest()[:16]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# ------------------------------------------------------------------ audio batches


@dataclass
class AudioBatch:
    """Clips with the front end's features; built by :class:`l2i_bench.data.ClipSet`."""

    clip_ids: list[str]
    waveform: torch.Tensor  # (B, L) float32
    spec: torch.Tensor  # (B, F, T) complex64 STFT
    logmel: torch.Tensor  # (B, 1, T, M) dB
    targets: torch.Tensor  # (B, C) float multi-hot ground truth
    stems: dict[str, torch.Tensor] = field(default_factory=dict)
    """Ground-truth stem waveforms ``(B, L)`` (``target``, ``interference``) when the
    dataset has them, scaled like the mixture; only reference explainers (``oracle``)
    and ground-truth metrics may read them."""

    @property
    def magnitude(self) -> torch.Tensor:
        return complex_magnitude(self.spec)

    @property
    def log_magnitude(self) -> torch.Tensor:
        """``log(1 + |X|)``: the space the NMF dictionary and decoders live in."""
        return torch.log1p(complex_magnitude(self.spec))

    def __len__(self) -> int:
        return len(self.clip_ids)

    def to(self, device: torch.device | str) -> AudioBatch:
        return AudioBatch(
            self.clip_ids,
            self.waveform.to(device),
            self.spec.to(device),
            self.logmel.to(device),
            self.targets.to(device),
            {k: v.to(device) for k, v in self.stems.items()},
        )

    def select(self, rows: torch.Tensor | Sequence[int]) -> AudioBatch:
        """Rows of this batch, repeated if asked (multilabel explains a clip per class)."""
        index = torch.as_tensor(rows, dtype=torch.long)
        cpu_index = index.tolist()
        dev = self.waveform.device
        index = index.to(dev)
        return AudioBatch(
            [self.clip_ids[i] for i in cpu_index],
            self.waveform[index],
            self.spec[index],
            self.logmel[index],
            self.targets[index],
            {k: v[index.to(v.device)] for k, v in self.stems.items()},
        )


class BatchSource(Protocol):
    """A split the host holds in memory; explainers iterate it to fit themselves."""

    clips: Sequence[Clip]

    def __len__(self) -> int: ...

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0
    ) -> Iterator[AudioBatch]:
        """Batches on the run's device; ``shuffle`` is seeded, so runs repeat."""
        ...


# --------------------------------------------------------------------- classifier


class ClassifierModel(Protocol):
    """What explainers and metrics may call on the trained classifier (an eval-mode
    :class:`Classifier`, or any module that behaves like one)."""

    task: Task
    num_classes: int
    tap_names: tuple[str, ...]
    late_taps: tuple[str, str, str]
    tap_channels: dict[str, int]

    def __call__(self, logmel: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)`` from log-mel input ``(B, 1, T, M)``."""
        ...

    def forward_with_taps(
        self, logmel: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and every named tap ``(B, C_tap, T', F')``."""
        ...

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax for multiclass, sigmoid for multilabel."""
        ...


@dataclass(frozen=True)
class FeatureSpec:
    """The log-mel a classifier takes, computed by the host's front end on the host's
    STFT grid (:mod:`l2i_bench.audio`: 44.1 kHz, n_fft 1024, hop 512): which mel bands
    (Slaney, librosa's filterbank), of the magnitude or of the power, and the dB
    conversion (``10 log10(max(amin, mel))``, then an optional floor ``top_db`` below
    each clip's peak). Every explainer and metric reaches the classifier's input through
    the run's front end, so masking, resynthesis and the one mel-to-STFT mapping follow
    the classifier's own bands. The default is Kumar et al.'s (the L2I code's)."""

    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    """None: the host's Nyquist frequency."""
    power: float = 1.0
    """1: mel of the magnitude (the L2I code's quirk); 2: of the power (PANNs)."""
    top_db: float | None = 80.0
    """Floor below each clip's peak in dB (librosa's ``power_to_db``); None: none."""


class Classifier(torch.nn.Module):
    """A classifier plugin: the network explainers interpret, registered through the
    ``register_classifiers`` hook like datasets and explainers.

    Input: its log-mel ``(B, 1, T, features.n_mels)`` in dB, computed by the host's front
    end on the host's STFT as its ``features`` ask (:class:`FeatureSpec`), the one
    representation every explainer and metric computes from a (masked) STFT. Output:
    logits ``(B, C)``. **Taps** are named hidden layers ``(B, C_tap, T', F')`` returned
    by :meth:`forward_with_taps`; ``late_taps`` names the three late layers that
    interpreters read (L2I, FLINT and L-MAC take all three, Grad-CAM averages them, IBA
    puts its bottleneck on the first), from earliest to latest. ``levels`` lists the
    module groups top-down for the sanity check's cascading randomisation
    (:mod:`l2i_bench.randomise`); a classifier without levels gets that metric's reason
    instead of a number.

    The host builds the network as ``cls(num_classes, task, width=...)`` and trains it
    (Adam, early stopping, precise BN: :mod:`l2i_bench.classifier`) when ``trainable``;
    ``--classifier pretrained=PATH`` first calls :meth:`load_pretrained`. A load-only
    classifier (``trainable = False``) is used as loaded: it needs ``pretrained``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    """Where the architecture is published (shown by ``l2i-bench plugins``)."""
    version: ClassVar[str] = "1"
    trainable: ClassVar[bool] = True
    tap_names: ClassVar[tuple[str, ...]] = ()
    late_taps: ClassVar[tuple[str, str, str]] = ("", "", "")
    levels: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = ()
    """Top-down (level name, attribute names of the modules it holds)."""
    min_frames: ClassVar[int] = 1
    """Shortest input in frames the network accepts (its pools must leave one)."""
    features: ClassVar[FeatureSpec] = FeatureSpec()
    """The log-mel it takes (bands, magnitude or power, dB floor)."""

    def __init__(self, num_classes: int, task: Task, width: float = 1.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.num_classes = int(num_classes)
        self.task = Task(task)
        self.width = float(width)
        self.tap_channels: dict[str, int] = {}
        """Channels of each tap (what FLINT's and L-MAC's decoders are built for)."""

    def forward_with_taps(
        self, logmel: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and every tap in ``tap_names``; each plugin implements it."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_with_taps")

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.forward_with_taps(logmel)[0]

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax for multiclass, sigmoid for multilabel."""
        if self.task is Task.MULTICLASS:
            return torch.softmax(logits, dim=-1)
        return torch.sigmoid(logits)

    def load_pretrained(self, path: Path) -> dict[str, Any]:
        """Load published weights before training (``--classifier pretrained=PATH``);
        returns facts for the manifest (e.g. how many tensors were loaded). Loads with
        ``weights_only=True``; a file that does not fit raises a BenchError that names
        the first mismatching key."""
        from l2i_bench.errors import BenchError

        raise BenchError(
            f"classifier {self.name!r} has no published weights to load (pretrained={path})",
            "drop --classifier pretrained=... for this classifier",
        )

    def check_input(self, logmel: torch.Tensor, n_mels: int) -> None:
        """The shape checks every classifier shares, with messages that name it."""
        if logmel.dim() != 4 or logmel.shape[1] != 1 or logmel.shape[-1] != n_mels:
            raise ValueError(
                f"{type(self).__name__} expects log-mel input (B, 1, T, {n_mels}), "
                f"got {tuple(logmel.shape)}"
            )
        if logmel.shape[2] < self.min_frames:
            raise ValueError(
                f"{type(self).__name__} needs at least {self.min_frames} frames, "
                f"got {logmel.shape[2]}"
            )


def require_taps(classifier: Any, explainer: str, wanted: Sequence[str]) -> tuple[str, ...]:
    """The taps an explainer reads, or an error naming what the classifier lacks."""
    from l2i_bench.errors import BenchError

    available = tuple(getattr(classifier, "tap_names", ()) or ())
    missing = [t for t in wanted if t not in available]
    if missing or not wanted:
        raise BenchError(
            f"{explainer} needs the classifier's tap(s) {', '.join(missing or ['(none named)'])}, "
            f"but {type(classifier).__name__} exposes {', '.join(available) or 'no taps'}",
            "use a classifier plugin that declares them in `tap_names` and `late_taps` "
            "(`l2i-bench plugins` lists each classifier's taps)",
        )
    return tuple(wanted)


def late_taps_of(classifier: Any, explainer: str) -> tuple[str, str, str]:
    """The classifier's three late taps (``late_taps``), checked to exist."""
    from l2i_bench.errors import BenchError

    late = tuple(getattr(classifier, "late_taps", ()) or ())
    if len(late) != 3 or not all(late):
        raise BenchError(
            f"{explainer} reads the classifier's three late layers, but "
            f"{type(classifier).__name__} declares no `late_taps`",
            "declare `late_taps` (three of its `tap_names`, earliest first) in the "
            "classifier plugin",
        )
    return require_taps(classifier, explainer, late)  # type: ignore[return-value]


def late_tap_channels(classifier: Any, explainer: str) -> dict[str, int]:
    """Channel counts of the classifier's three late taps, earliest first (the decoders
    of L2I, FLINT and L-MAC are built for them)."""
    from l2i_bench.errors import BenchError

    late = late_taps_of(classifier, explainer)
    channels = getattr(classifier, "tap_channels", None) or {}
    if any(t not in channels for t in late):
        raise BenchError(
            f"{explainer} needs the channel counts of the classifier's late taps "
            f"({', '.join(late)}) in its `tap_channels`",
            "declare `tap_channels` in the classifier plugin",
        )
    return {t: int(channels[t]) for t in late}


# ---------------------------------------------------------------------- explainers


@dataclass
class ExplainerContext:
    """Everything an explainer may use; handed to its constructor by the runner."""

    dataset_name: str
    task: Task
    class_names: list[str]
    classifier: ClassifierModel
    front_end: FrontEnd
    device: torch.device
    seed: int
    defaults: ExplainerDefaults
    cache_dir: Path  # explainers cache learned state here (e.g. NMF dictionaries)
    cache_key: str  # identifies data + classifier; put it in cache file names
    options: Mapping[str, Any] = field(default_factory=dict)  # --option NAME.key=value
    show_progress: bool = True
    declared: Mapping[str, Option] = field(default_factory=dict)  # the explainer's options
    _options_read: set[str] = field(default_factory=set, init=False, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def option(self, key: str, default: Any = NO_DEFAULT) -> Any:
        """The value of ``--option EXPLAINER.KEY=...`` (or the dataset's override) cast
        to the default's type, else the default: the one declared in the explainer's
        ``options`` (resolved for this dataset) unless ``default`` is passed, which only
        explainers that declare nothing do."""
        self._options_read.add(key)
        if default is NO_DEFAULT:
            if key not in self.declared:
                raise KeyError(
                    f"option {key!r} is read but not declared; add it to the explainer's "
                    "`options` with its default and help"
                )
            default = self.declared[key].resolve(self.defaults)
        if key not in self.options:
            return default
        return cast_option(self.options[key], default)

    def unused_options(self) -> list[str]:
        """Options given but never read: most likely typos, reported by the runner."""
        return sorted(set(self.options) - self._options_read)


@dataclass
class Explanation:
    """An explainer's answer for a batch of (clip, class) rows.

    ``mask`` is required for listenable output and every mask-based metric.
    ``relevance`` is over the explainer's own units (NMF components, segments, chunks).
    ``mask_domain`` says where the mask acts (:class:`MaskDomain`). ``waveform`` may be
    left ``None``; the host then resynthesises the kept input
    (:func:`l2i_bench.perturb.keep`) with the input phase. ``extra`` carries method-specific outputs (e.g. FLINT's
    activation-maximisation audio), each a tensor with the batch as first axis.
    """

    mask: torch.Tensor  # (B, F, T) in [0, 1]
    relevance: torch.Tensor | None = None  # (B, U)
    mask_domain: MaskDomain = MaskDomain.LINEAR
    waveform: torch.Tensor | None = None  # (B, L)
    surrogate_logits: torch.Tensor | None = None  # (B, C)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class Explainer(ABC):
    """Base class of explainer plugins; one module each, like ``captum.attr``.

    ``explain`` receives one class per row; the runner repeats a clip once per class
    for multilabel data. Explainers with a surrogate model (``has_surrogate``) also
    implement :meth:`predict`, scored for fidelity to the classifier.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    unit: ClassVar[str] = "time-frequency bin"  # what ``relevance`` indexes
    reference: ClassVar[bool] = False
    """A reference row (oracle, anti-oracle, random, loudest): published on the
    leaderboard to calibrate the metrics, set apart from the contenders."""
    family: ClassVar[str] = ""
    """A named group ``--explainers`` can ask for, e.g. ``paper`` (the methods the L2I
    paper compares) or ``attribution`` (the gradient family); empty for none. A group
    always comes with the reference rows."""
    groups: ClassVar[frozenset[str]] = frozenset()
    """Further named groups it belongs to beside its family, e.g. ``quick``: a few
    cheap contenders for a short first run (README, Explainers)."""
    needs_stems: ClassVar[bool] = False
    """Reads ``AudioBatch.stems`` (ground truth): runs only on datasets with stems."""
    needs_training: ClassVar[bool] = False
    has_surrogate: ClassVar[bool] = False
    tasks: ClassVar[frozenset[Task]] = BOTH_TASKS

    options: ClassVar[Mapping[str, Option]] = {}
    """Every setting :meth:`ExplainerContext.option` reads, with its default and help;
    ``--option`` keys outside it are refused before a run starts. An explainer that
    declares nothing passes defaults to ``option`` itself and is not checked."""
    passes: ClassVar[str] = ""
    """Cost per clip in passes, as the README's explainer table states it; ``{name}``
    fields are filled with the option's default per dataset (``l2i-bench plugins
    --options NAME``)."""

    def __init__(self, context: ExplainerContext) -> None:
        self.context = context
        context.declared = type(self).options

    def fit(self, train: BatchSource, valid: BatchSource) -> dict[str, Any]:
        """Train on the training split (select on ``valid``, never on test).

        Returns facts worth recording in the cell file (epochs run, best score...).
        """
        return {}

    @abstractmethod
    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        """Explain ``classes[i]`` (long, ``(B,)``) for row ``i`` of ``batch``."""

    def predict(self, batch: AudioBatch) -> torch.Tensor:
        """Surrogate logits ``(B, C)``; only for explainers with ``has_surrogate``."""
        raise NotImplementedError(f"explainer {self.name!r} has no surrogate model")

    def state_dict(self) -> dict[str, Any]:
        """Learned state to cache after ``fit`` (empty when nothing is learned)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


# ------------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class RowValues:
    """The per-row values behind one published number, and how they are summarised.

    A metric returns this instead of a float whenever its number is a summary of rows,
    so the runner can publish ``n`` (the rows it really rests on) and keep the rows for
    paired tests (metric validity) and audits. ``keys`` identify rows across explainers
    of a fold: ``"<set>/<clip_id>/<class index>"`` (see ``plugins.metrics._common``).
    """

    keys: tuple[str, ...]
    values: tuple[float, ...]
    summary: str = "mean"  # or "median"

    def __post_init__(self) -> None:
        if len(self.keys) != len(self.values):
            raise ValueError("one key per row value expected")
        if self.summary not in ("mean", "median"):
            raise ValueError(f"summary must be 'mean' or 'median', not {self.summary!r}")

    @classmethod
    def of(cls, keys: Sequence[str], values: Any, summary: str = "mean") -> RowValues:
        """From any array-like of values; non-finite rows are dropped (with their key)."""
        import numpy as np

        arr = np.asarray(
            values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else values,
            dtype=np.float64,
        ).reshape(-1)
        ok = np.isfinite(arr)
        return cls(
            tuple(k for k, good in zip(keys, ok, strict=True) if good),
            tuple(float(v) for v in arr[ok]),
            summary,
        )

    def __len__(self) -> int:
        return len(self.values)

    def __float__(self) -> float:
        from l2i_bench.stats import summarise

        return summarise(self.values, self.summary)


@dataclass(frozen=True)
class Column:
    """One published number of a metric: its name, direction, unit and exact variant."""

    name: str
    direction: Direction
    unit: str = ""
    variant: str = ""
    meta_evaluated: bool = True
    """Whether the column claims to measure an explanation's truth, so that the metric
    validity check (oracle > random > anti-oracle) applies; False for cost columns and
    for the sanity check, which measures dependence on the model, not truth."""


@dataclass
class ExplanationSet:
    """All explanations of one evaluation set, row-aligned with ``rows``/``classes``."""

    rows: torch.Tensor  # (R,) index into the evaluation batch
    classes: torch.Tensor  # (R,) class explained
    mask: torch.Tensor  # (R, F, T)
    relevance: torch.Tensor | None
    waveform: torch.Tensor  # (R, L)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    mask_domain: MaskDomain = MaskDomain.LINEAR


@dataclass
class ConditionSet:
    """A test set with stems (e.g. synth's overlap/noise), for ground-truth metrics."""

    name: str
    batch: AudioBatch
    stems: dict[str, torch.Tensor]  # stem name -> (N, L) waveforms aligned with batch
    explanations: ExplanationSet
    classifier_logits: torch.Tensor  # (N, C) on ``batch``: what the classifier decides


@dataclass
class Timing:
    fit_seconds: float
    explain_ms_per_clip: list[float]
    peak_memory_mb: float
    device_name: str


@dataclass
class Evaluation:
    """What a metric sees for one cell (dataset x fold x explainer). CPU tensors."""

    dataset: str
    fold: str
    task: Task
    class_names: list[str]
    explainer_name: str
    explainer_has_surrogate: bool
    classifier: ClassifierModel
    front_end: FrontEnd
    device: torch.device
    seed: int
    test: AudioBatch
    classifier_logits: torch.Tensor  # (N, C) on ``test``
    decision_thresholds: torch.Tensor | None  # (C,) multilabel decisions on probabilities
    surrogate_logits: torch.Tensor | None  # (N, C) when the explainer has a surrogate
    explanations: ExplanationSet
    conditions: dict[str, ConditionSet]
    timing: Timing
    explainer_is_reference: bool = False
    """A reference row (oracle, anti-oracle, random, loudest): its mask metrics also
    keep per-row values on the condition sets, for the metric validity check."""
    show_progress: bool = True
    """Metrics may draw progress bars for long passes (``--quiet`` turns them off)."""
    refit_explainer: Callable[[ClassifierModel, str], Explainer] | None = None
    """``(classifier, tag) -> explainer``: this cell's explainer built for another
    classifier and fitted with the same options, budget and seed (the sanity check's
    randomised models; ``tag`` names the model in the fit cache); ``None`` in unit tests."""

    def generator(self, tag: str) -> torch.Generator:
        """A seeded generator per (seed, metric tag) so metrics draw independently."""
        import zlib

        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + zlib.crc32(tag.encode()))
        return g

    def classifier_logits_of(self, logmel: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Classifier logits on modified inputs, batched on the run's device.

        The input goes in channels-last layout (one copy of the log-mel; for one
        channel only the strides differ), which lets the convolutions take oneDNN's
        NHWC path: 1.6-2.7x
        faster per clip on the CPU for Kumar's CNN at 16 clips a batch (the best batch
        there: larger ones fall out of cache), logits within 1e-7 of the default
        layout's. Only metrics' forward passes take it; training and the explainers'
        gradients keep the default layout, so no fit or checkpoint changes."""
        outs = []
        with torch.no_grad():
            for start in range(0, logmel.shape[0], batch_size):
                chunk = logmel[start : start + batch_size].to(self.device)
                chunk = chunk.contiguous(memory_format=torch.channels_last)
                outs.append(self.classifier(chunk).float().cpu())
        return torch.cat(outs) if outs else torch.empty(0, len(self.class_names))


class Metric(ABC):
    """Base class of metric plugins. ``columns`` is static so that a metric that does
    not apply still publishes its columns, empty, with the reason."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    """Bump when the definition changes: it enters every cell's configuration key."""
    columns: ClassVar[tuple[Column, ...]]
    tasks: ClassVar[frozenset[Task]] = BOTH_TASKS

    def not_applicable(self, evaluation: Evaluation) -> str | None:
        """A reason this metric does not apply to this cell, or ``None`` if it does."""
        if evaluation.task not in self.tasks:
            allowed = ", ".join(sorted(str(t) for t in self.tasks))
            return f"{self.name} is defined for {allowed} tasks only"
        return None

    @abstractmethod
    def compute(self, evaluation: Evaluation) -> dict[str, float | RowValues]:
        """Values keyed by column name (every declared column): a float, or the
        :class:`RowValues` it summarises (preferred: gives ``n`` and paired tests)."""
