"""The ``vibi`` baseline: Variational Information Bottleneck for Interpretation
(Bang et al., AAAI 2021) on a 4 x 10 chunk grid of the log-mel input.

VIBI learns an *explainer* ``g`` that scores ``d = 40`` chunks of the input and an
*approximator* ``q`` that must reproduce the classifier's prediction from the input
restricted to ``K`` chunks sampled from ``g``'s distribution. It maximises
``I(t; y) - beta I(x; t)``: the approximator's cross-entropy against the classifier's
prediction (lower bound on ``I(t; y)``) plus ``beta K KL(p(z|x) || uniform)`` (the VIB
upper bound on ``I(x; t)``: ``z`` is ``K`` independent draws from ``p``, so its KL to
``K`` uniform draws is ``K`` times the per-draw KL; method notes §1.1-1.3).

Chunk grid (appendix A.7: 32 mel x 43 frames on ESC-50, 32 x 86 on SONYC-UST, 40
chunks). The 128 mel bands form 4 chunks of 32; the ``T`` frames form 10 chunks of
``T // 10`` frames, and **the ``T mod 10`` leftover frames (1 on a 5-s clip, 2 on 10 s)
join the last time chunk** — neither padded nor cropped, so the chunk mask covers
every STFT frame. Chunk ``u`` of ``relevance`` is mel chunk ``u // 10`` (low to high
frequency) and time chunk ``u % 10``.

Choices (the audio architectures and several settings were not published; method
notes §1):

* **Sampler — the official code's bug is NOT reproduced.** ``SeojinBang/VIBI`` passes
  the explainer's *log*-probabilities as ``probs`` to ``RelaxedOneHotCategorical``,
  which renormalises them and ranks chunks in reverse (pitfall P1). Here the relaxed
  K-hot sample is ``z = max_j softmax((log p + G_j) / tau)`` over ``K`` Gumbel draws
  ``G_j`` with ``log p`` used as *logits*, so every draw picks chunk ``i`` with
  probability ``p_i`` (tested). ``tau = 0.5`` (the MNIST explainer's value).
* Information term: ``K KL(p || uniform)``, the forward direction of the VIB bound
  with its factor ``K`` (:func:`information_loss`); the official code computes
  ``K KL(uniform || p)`` (P1.3), the same factor on the reverse KL. ``beta = 0.1``
  (official default), so at ``K = 10`` the KL weighs 1.0 against the class loss.
* Masked-out chunks are filled with the clip's -80 dB floor (the classifier's own
  ``top_db`` silence, pitfall P3); inputs are scaled per clip to ``(x - peak)/40 + 1``
  so the floor is -1.
* Targets: the classifier's hard prediction (VIBI's ``y_hat``) with cross-entropy for
  multiclass; for multilabel, its decisions ``sigmoid(f) > 0.5`` with per-class BCE.
* Networks (L2I's audio architectures were not published): ``g`` and ``q`` are small
  CNNs on the log-mel at half resolution, pooled to the 4 x 10 grid; ``g`` adds a
  learned per-chunk bias, ``q`` ends with a linear layer over the grid (position-aware,
  as VIBI's MNIST approximator), width ``hidden`` (16).
* One relaxed sample per step, Adam (betas 0.5, 0.999), no EMA copy, ``lr`` 5e-4
  (official 1e-4 over 100 epochs).
* Training length: the appendix's budget, ``epochs`` 100 (ESC-50 and synth; the
  SONYC-UST plugin sets 30, the appendix's value there), with **early stopping** on
  the VALIDATION split: training of a K stops after ``patience`` (10) epochs without
  a strictly better validation fidelity (ties do not count, so a plateau stops it).
  Why 10: fidelity is a share of a few hundred validation clips, so it moves in
  steps and often stalls for a few epochs before the explainer's new chunk ranking
  pays off; 10 epochs is a tenth of the budget, long enough to ride out such stalls
  and short enough that a converged run does not pay for the other ~90 epochs on
  CPU. ``patience = 0`` trains the full budget.
* Model selection: fidelity of the approximator on the deterministic top-K input
  against the classifier (top-1 agreement; multilabel: mean per-class decision
  agreement) on the VALIDATION split, over epochs and over ``k_sweep`` (e.g.
  ``"5,10,15,20"``, each K trained from the same seed) as the appendix kept the K
  with best fidelity (ties across K: the first listed); ties across epochs go to the
  later epoch (the longer-trained explainer). With an empty validation split all
  ``epochs`` run and the last epoch of ``k`` is kept.

Which class is explained: as in VIBI, the explainer is not class-conditioned; it
selects the chunks from which the approximator reproduces the classifier's *own
prediction*. When the asked class differs from the classifier's prediction (a
multilabel row for a second positive class, or a misclassified clip), the same chunks
are returned; ``extra["explains_prediction"]`` (B,) is 1.0 where the asked class is
the classifier's top-1 prediction and 0.0 where it is not, so metrics and readers can
tell.

Outputs: ``relevance`` = chunk probabilities ``p`` (B, 40); ``mask`` = the
deterministic top-K chunks mapped to the STFT — time chunk → its frames, mel chunk →
the linear bins through the mel filterbank support (each bin weighted by the share of
its filterbank weight falling in the selected bands; bins outside every filter take
their nearest supported bin), in [0, 1]; the host inverts ``M X`` with the input
phase. ``surrogate_logits`` = the approximator on the top-K input.

Cost per clip. Training: per epoch and per K, 1 explainer and 1 approximator forward
and backward per training clip, and 1 of each forward per validation clip; the
classifier runs once per training and validation clip (its decisions are cached).
Epochs: at most ``epochs`` (100), usually fewer (early stopping). On synth (320
training clips, 2 s) an epoch took ~1 s on a 2-core CPU. Explain: 1 explainer
forward + 1 approximator forward, 0 classifier passes (+1 classifier forward to fill
``explains_prediction``).

Options (``--option vibi.KEY=VALUE``): ``k`` (10), ``k_sweep`` (none), ``epochs``
(100), ``patience`` (10), ``lr`` (5e-4), ``batch_size`` (32), ``beta`` (0.1), ``tau``
(0.5), ``hidden`` (16).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from l2i_bench import hookimpl
from l2i_bench.errors import BenchError
from l2i_bench.types import (
    AudioBatch,
    BatchSource,
    Explainer,
    ExplainerContext,
    Explanation,
    Option,
    Task,
)

MEL_CHUNKS = 4
TIME_CHUNKS = 10
NUM_CHUNKS = MEL_CHUNKS * TIME_CHUNKS
FLOOR_DB = 80.0  # the front end's top_db: the clip's own silence
DEFAULT_EPOCHS = 100  # L2I appendix A.7 on ESC-50 (30 on SONYC-UST)
DEFAULT_PATIENCE = 10  # epochs without better validation fidelity (see module docstring)


# ------------------------------------------------------------------ chunk grid


def chunk_maps(frames: int, mels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-chunk index per frame (T,) and mel-chunk index per band (M,).

    ``T mod 10`` leftover frames join the last time chunk (documented above).
    """
    if frames < TIME_CHUNKS or mels % MEL_CHUNKS:
        raise BenchError(
            f"vibi needs at least {TIME_CHUNKS} frames and mel bands divisible by "
            f"{MEL_CHUNKS}; got {frames} frames, {mels} bands",
            "use clips of at least 0.12 s with the shared 128-band front end",
        )
    time_index = (torch.arange(frames) // (frames // TIME_CHUNKS)).clamp_max(TIME_CHUNKS - 1)
    mel_index = torch.arange(mels) // (mels // MEL_CHUNKS)
    return time_index, mel_index


def chunks_to_logmel(z: torch.Tensor, frames: int, mels: int) -> torch.Tensor:
    """Chunk weights (B, 40) → a log-mel layout mask (B, 1, T, M)."""
    time_index, mel_index = chunk_maps(frames, mels)
    grid = z.view(-1, MEL_CHUNKS, TIME_CHUNKS)
    full = grid[:, mel_index.to(z.device)][:, :, time_index.to(z.device)]  # (B, M, T)
    return full.transpose(1, 2).unsqueeze(1)


# --------------------------------------------------------------------- sampler


def information_loss(chunk_logits: torch.Tensor, k: int) -> torch.Tensor:
    """VIB's bound on ``I(x; t)`` for a K-hot selection, batch mean:
    ``K KL(p(.|x) || uniform)``.

    ``z`` is built from ``K`` independent draws of one chunk from ``p``, so its
    distribution is the product of ``K`` copies of ``p`` and its KL to the product of
    ``K`` uniform draws is ``K`` times the per-draw KL (the factor the official code
    also applies); without it the bottleneck is ``K`` times too weak.
    """
    log_p = F.log_softmax(chunk_logits, dim=-1)
    per_draw = (log_p.exp() * log_p).sum(-1) + math.log(chunk_logits.shape[-1])
    return k * per_draw.mean()


class EarlyStopping:
    """Stops training after ``patience`` epochs without a strictly better validation
    score (0 never stops). Ties do not reset the count, so a plateau ends training."""

    def __init__(self, patience: int) -> None:
        self.patience = int(patience)
        self.best = -math.inf
        self.waited = 0

    def update(self, score: float) -> bool:
        """Record one epoch's score; True when training should stop now."""
        if score > self.best:
            self.best, self.waited = score, 0
            return False
        self.waited += 1
        return 0 < self.patience <= self.waited


def gumbel_draws(
    logits: torch.Tensor, k: int, tau: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``K`` relaxed one-hot draws (B, K, d): ``softmax((log p + G) / tau)``.

    ``log p`` enters as *logits* (not as ``probs``: the official code's bug), so the
    argmax of every draw is distributed as ``p`` for any ``tau``.
    """
    log_p = F.log_softmax(logits, dim=-1)
    shape = (logits.shape[0], k, logits.shape[-1])
    uniform = torch.rand(shape, generator=generator, device=logits.device, dtype=logits.dtype)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
    return F.softmax((log_p.unsqueeze(1) + gumbel) / tau, dim=-1)


def relaxed_k_hot(
    logits: torch.Tensor, k: int, tau: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Continuous relaxed K-hot subset sample (B, d): element-wise max over K draws."""
    return gumbel_draws(logits, k, tau, generator).amax(dim=1)


def top_k_hot(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The deterministic explanation: 1 on the ``k`` highest-scoring chunks."""
    index = logits.topk(min(k, logits.shape[-1]), dim=-1).indices
    return torch.zeros_like(logits).scatter_(-1, index, 1.0)


# -------------------------------------------------------------------- networks


def normalise_logmel(logmel: torch.Tensor) -> torch.Tensor:
    """Per clip: peak → +1, the -80 dB floor → -1 (the masking fill value)."""
    peak = logmel.amax(dim=(-2, -1), keepdim=True)
    return ((logmel - peak) / (FLOOR_DB / 2) + 1.0).clamp_min(-1.0)


def _conv_body(hidden: int) -> nn.Sequential:
    """The small log-mel encoder shared by the explainer ``g`` and the approximator
    ``q`` (each has its own weights): two poolings, three 3x3 convolutions."""
    return nn.Sequential(
        nn.AvgPool2d(2),
        nn.Conv2d(1, hidden, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(hidden, 2 * hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1),
        nn.ReLU(),
    )


class ChunkExplainer(nn.Module):
    """``g``: normalised log-mel (B, 1, T, M) → chunk logits (B, 40), mel-major.

    Works at half resolution (a chunk still spans ~21 x 16 points) to halve the cost.
    Convolutions are translation-equivariant, so a learned per-chunk bias lets ``g``
    prefer positions (a frequency band, say) independently of the content there.
    """

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.body = _conv_body(hidden)
        self.score = nn.Conv2d(2 * hidden, 1, 1)
        self.position = nn.Parameter(torch.zeros(NUM_CHUNKS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(self.body(x), (TIME_CHUNKS, MEL_CHUNKS))
        scores = self.score(pooled).squeeze(1).transpose(1, 2).reshape(x.shape[0], NUM_CHUNKS)
        return scores + self.position


class Approximator(nn.Module):
    """``q``: masked normalised log-mel → class logits (the surrogate).

    Like VIBI's MNIST ``decode_cnn`` it ends with a linear layer over a spatial map
    (max-pooled to the 4 x 10 chunk grid, any ``T``), so it knows *where* the kept
    chunks are, not only what they hold.
    """

    def __init__(self, num_classes: int, hidden: int = 16) -> None:
        super().__init__()
        self.body = _conv_body(hidden)
        self.out = nn.Linear(2 * hidden * NUM_CHUNKS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = F.adaptive_max_pool2d(self.body(x), (TIME_CHUNKS, MEL_CHUNKS))
        return self.out(grid.flatten(1))


def apply_chunks(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Keep the chunks weighted by ``z`` (B, 40); the rest takes the floor (-1)."""
    mask = chunks_to_logmel(z, x.shape[-2], x.shape[-1])
    return x * mask - (1.0 - mask)


# ------------------------------------------------------------------- explainer


class VibiExplainer(Explainer):
    """VIBI: Gumbel-softmax K-hot chunk selection with a trained approximator."""

    name = "vibi"
    family = "paper"
    description = "VIBI: information-bottleneck selection of K of 40 log-mel chunks"
    version = "3"  # 3: the front end's one mel-to-STFT mapping (float64; masks move <= 1 ulp)
    unit = "chunk"
    needs_training = True
    has_surrogate = True
    passes = "two forward passes"
    options: ClassVar[Mapping[str, Option]] = {
        "k": Option(10, f"chunks selected of the {NUM_CHUNKS} (1 to {NUM_CHUNKS})"),
        "k_sweep": Option(
            "",
            'comma-separated K values trained and selected on validation, e.g. "5,10,15,20" '
            "(empty: k alone)",
        ),
        "epochs": Option(
            DEFAULT_EPOCHS, "most training epochs per K, cut by early stopping (SONYC-UST: 30)"
        ),
        "patience": Option(
            DEFAULT_PATIENCE, "epochs without better validation fidelity before stopping (0: never)"
        ),
        "lr": Option(5e-4, "Adam learning rate"),
        "batch_size": Option(32, "training clips per step"),
        "beta": Option(0.1, "weight of the information term K KL(p || uniform)"),
        "tau": Option(0.5, "Gumbel-softmax temperature of the relaxed K-hot sample"),
        "hidden": Option(16, "channel width of the explainer and approximator CNNs"),
    }

    def __init__(self, context: ExplainerContext) -> None:
        super().__init__(context)
        self.k = int(context.option("k"))
        self.hidden = int(context.option("hidden"))
        self.tau = float(context.option("tau"))
        self.beta = float(context.option("beta"))
        if not 1 <= self.k <= NUM_CHUNKS:
            raise BenchError(
                f"vibi.k must be between 1 and {NUM_CHUNKS}, got {self.k}",
                "pass e.g. --option vibi.k=10",
            )
        self.linear_weights = context.front_end.mel_to_linear.to(context.device)
        self._build()

    def _build(self) -> None:
        ctx = self.context
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            self.explainer = ChunkExplainer(self.hidden)
            self.approximator = Approximator(ctx.num_classes, self.hidden)
        self.explainer.to(ctx.device)
        self.approximator.to(ctx.device)

    def _epochs(self) -> int:
        """The epoch budget: the appendix's 100 (ESC-50; SONYC-UST sets 30 through its
        ``explainer_options``), cut short by early stopping."""
        epochs = int(self.context.option("epochs"))
        if epochs < 1:
            raise BenchError(
                f"vibi.epochs must be >= 1, got {epochs}", "pass e.g. --option vibi.epochs=100"
            )
        return epochs

    def _patience(self) -> int:
        """Epochs without a better validation fidelity before training stops (0: never)."""
        patience = int(self.context.option("patience"))
        if patience < 0:
            raise BenchError(
                f"vibi.patience must be >= 0, got {patience}", "pass e.g. --option vibi.patience=10"
            )
        return patience

    def _k_values(self) -> list[int]:
        sweep = str(self.context.option("k_sweep")).strip()
        if not sweep:
            return [self.k]
        try:
            values = [int(v) for v in sweep.replace(";", ",").split(",") if v.strip()]
        except ValueError as err:
            raise BenchError(
                f"vibi.k_sweep must be comma-separated integers, got {sweep!r}",
                'pass e.g. --option vibi.k_sweep="5,10,15,20"',
            ) from err
        if not values or any(not 1 <= v <= NUM_CHUNKS for v in values):
            raise BenchError(
                f"vibi.k_sweep values must lie in 1..{NUM_CHUNKS}, got {sweep!r}",
                'pass e.g. --option vibi.k_sweep="5,10,15,20"',
            )
        return values

    # ------------------------------------------------------------------ pieces

    def _teacher(self, logits: torch.Tensor) -> torch.Tensor:
        """The classifier's decision: class index (multiclass) or 0/1 per class."""
        if self.context.task is Task.MULTILABEL:
            return (torch.sigmoid(logits) > 0.5).float()
        return logits.argmax(-1)

    def _class_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.context.task is Task.MULTILABEL:
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.cross_entropy(logits, target)

    def _agreement(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-row fidelity of the approximator to the classifier's decision."""
        if self.context.task is Task.MULTILABEL:
            return ((torch.sigmoid(logits) > 0.5).float() == target).float().mean(-1)
        return (logits.argmax(-1) == target).float()

    def _fixed_logits(self, logmel: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = normalise_logmel(logmel)
        chunk_logits = self.explainer(x)
        return chunk_logits, self.approximator(apply_chunks(x, top_k_hot(chunk_logits, k)))

    def _validate(
        self,
        valid: BatchSource,
        k: int,
        batch_size: int,
        teacher: dict[str, torch.Tensor] | None = None,
    ) -> float:
        """Fidelity of the top-K approximator on ``valid``; ``teacher`` caches the
        classifier's decisions across epochs (they do not change)."""
        self.explainer.eval()
        self.approximator.eval()
        teacher = {} if teacher is None else teacher
        scores = []
        with torch.no_grad():
            for batch in valid.batches(batch_size):
                if any(c not in teacher for c in batch.clip_ids):
                    decided = self._teacher(self.context.classifier(batch.logmel))
                    teacher.update(zip(batch.clip_ids, decided, strict=True))
                target = torch.stack([teacher[c] for c in batch.clip_ids])
                _, logits = self._fixed_logits(batch.logmel, k)
                scores.append(self._agreement(logits, target))
        return float(torch.cat(scores).mean()) if scores else math.nan

    def _train_one_k(self, train: BatchSource, valid: BatchSource, k: int) -> dict[str, Any]:
        ctx = self.context
        epochs, patience = self._epochs(), self._patience()
        lr = float(ctx.option("lr"))
        batch_size = int(ctx.option("batch_size"))
        self._build()
        params = list(self.explainer.parameters()) + list(self.approximator.parameters())
        optimiser = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
        generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed * 1009 + k)
        teacher: dict[str, torch.Tensor] = {}
        valid_teacher: dict[str, torch.Tensor] = {}
        best = (-1.0, -1, None)
        history: list[float] = []
        stopper = EarlyStopping(patience)
        epochs_run = 0
        for epoch in tqdm(
            range(epochs), desc=f"vibi K={k}", unit="epoch", disable=not ctx.show_progress
        ):
            self.explainer.train()
            self.approximator.train()
            for batch in train.batches(batch_size, shuffle=True, seed=ctx.seed + epoch):
                missing = [c for c in batch.clip_ids if c not in teacher]
                if missing:
                    with torch.no_grad():
                        decided = self._teacher(ctx.classifier(batch.logmel))
                    for row, clip_id in enumerate(batch.clip_ids):
                        teacher[clip_id] = decided[row]
                target = torch.stack([teacher[c] for c in batch.clip_ids])
                x = normalise_logmel(batch.logmel)
                chunk_logits = self.explainer(x)
                z = relaxed_k_hot(chunk_logits, k, self.tau, generator)
                info = information_loss(chunk_logits, k)
                loss = self._class_loss(self.approximator(apply_chunks(x, z)), target)
                loss = loss + self.beta * info
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            epochs_run = epoch + 1
            if len(valid) > 0:
                score = self._validate(valid, k, batch_size, valid_teacher)
                history.append(score)
                if score >= best[0]:  # ties: the longer-trained explainer
                    best = (score, epoch, copy.deepcopy(self._networks_state()))
                if stopper.update(score):
                    break
        if best[2] is None:  # no validation split: keep the last epoch
            best = (math.nan, epochs - 1, copy.deepcopy(self._networks_state()))
        return {
            "k": k,
            "valid_fidelity": best[0],
            "best_epoch": best[1] + 1,
            "epochs_run": epochs_run,
            "stopped_early": epochs_run < epochs,
            "history": history,
            "state": best[2],
        }

    def _networks_state(self) -> dict[str, Any]:
        return {
            "explainer": self.explainer.state_dict(),
            "approximator": self.approximator.state_dict(),
        }

    # --------------------------------------------------------------------- API

    def fit(self, train: BatchSource, valid: BatchSource) -> dict[str, Any]:
        if len(train) == 0:
            raise BenchError(
                "vibi cannot train: the training split is empty",
                "check the dataset's split (vibi learns from training clips)",
            )
        runs = [self._train_one_k(train, valid, k) for k in self._k_values()]
        scored = [r for r in runs if not math.isnan(r["valid_fidelity"])]
        chosen = max(scored, key=lambda r: r["valid_fidelity"]) if scored else runs[-1]
        self.k = chosen["k"]
        self.explainer.load_state_dict(chosen["state"]["explainer"])
        self.approximator.load_state_dict(chosen["state"]["approximator"])
        self.explainer.eval()
        self.approximator.eval()
        return {
            "k": self.k,
            "selection": "best validation fidelity" if scored else "last epoch (no validation)",
            "valid_fidelity": chosen["valid_fidelity"],
            "best_epoch": chosen["best_epoch"],
            "sweep": {str(r["k"]): r["valid_fidelity"] for r in runs},
            "epochs": self._epochs(),
            "patience": self._patience(),
            "epochs_run": {str(r["k"]): r["epochs_run"] for r in runs},
            "valid_history": {str(r["k"]): r["history"] for r in runs},
        }

    def predict(self, batch: AudioBatch) -> torch.Tensor:
        self.explainer.eval()
        self.approximator.eval()
        with torch.no_grad():
            return self._fixed_logits(batch.logmel, self.k)[1]

    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        self.explainer.eval()
        self.approximator.eval()
        with torch.no_grad():
            x = normalise_logmel(batch.logmel)
            chunk_logits = self.explainer(x)
            chosen = top_k_hot(chunk_logits, self.k)
            surrogate = self.approximator(apply_chunks(x, chosen))
            mel_mask = chunks_to_logmel(chosen, x.shape[-2], x.shape[-1]).squeeze(1)  # (B,T,M)
            mask = torch.einsum("fm,btm->bft", self.linear_weights, mel_mask).clamp(0.0, 1.0)
            predicted = self.context.classifier(batch.logmel).argmax(-1)
        asked = classes.to(predicted.device).long()
        return Explanation(
            mask=mask,
            relevance=F.softmax(chunk_logits, dim=-1),
            surrogate_logits=surrogate,
            extra={"explains_prediction": (predicted == asked).float()},
        )

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k, "hidden": self.hidden, **self._networks_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("hidden", -1)) != self.hidden:
            raise BenchError(
                f"cached vibi state has hidden={state.get('hidden')}, this run asks {self.hidden}",
                "delete the cached vibi state or pass the matching --option vibi.hidden",
            )
        self.k = int(state["k"])
        self.explainer.load_state_dict(state["explainer"])
        self.approximator.load_state_dict(state["approximator"])


@hookimpl
def register_explainers(register):
    register(VibiExplainer)
