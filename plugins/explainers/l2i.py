"""Listen to Interpret (Parekh et al., NeurIPS 2022): an NMF interpreter of the classifier.

The interpreter Ψ = Θ ∘ Φ reads the frozen classifier's hidden taps (B4, B5, B6):

* Φ maps them to non-negative time activations ``H`` (K x T) of a *fixed* sparse-NMF
  dictionary ``W`` learned on the training split (:mod:`l2i_bench.nmf`), so that
  ``ReLU(W H)`` reconstructs ``log(1 + |X|)``;
* Θ pools ``H`` over time with gated attention and maps the pooled ``z`` (K,) to class
  logits with a bias-free linear layer, the interpreter's surrogate of the classifier.

Training loss (method notes §3.4): output fidelity (cross-entropy against the
classifier's softmax; soft-target BCE for multilabel) + alpha * MSE(ReLU(W H), log1p|X|)
+ beta * mean|H|, alpha = 10, beta = 0.8 throughout (the authors' code halves both
after epoch 20; we keep the paper's values). The best epoch is chosen on the VALIDATION
split (top-1 agreement, or fidelity AUPRC for multilabel), never on the test fold as
the authors' code did.

Relevance of component k for class c: ``r = z * Θ[c] / max_k(z_k Θ[c, k])`` with ``z`` the
attention-pooled ``H``. The authors' code used max-over-time pooling for faithfulness
and attention pooling for explanations; we use the attention-pooled ``z`` for both, so
the mask scored by faithfulness metrics is the one a listener hears.

Listenable interpretation: the top-5 components with ``r > threshold``, their soft mask
``sum_k w_k h_k / (W H + eps)`` applied to ``log(1 + |X|)`` and mapped back to magnitude
(``exp(E) - 1``), inverted with the input phase. The ratio itself is returned as the
mask, declared in the ``log1p`` domain, so the host's operators
(:mod:`l2i_bench.perturb`) keep ``expm1(ratio log1p|X|)`` as the paper does and remove
``expm1((1 - ratio) log1p|X|)`` as the reference ``faithfulness_eval`` does.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from l2i_bench import hookimpl
from l2i_bench.errors import BenchError
from l2i_bench.nmf import learn_dictionary
from l2i_bench.types import (
    AudioBatch,
    BatchSource,
    Explainer,
    ExplainerContext,
    Explanation,
    MaskDomain,
    Option,
    Task,
    late_tap_channels,
)

MASK_EPS = 1e-6  # the ratio denominator's epsilon in the authors' code (§4.3)
ATTENTION_DIM = 256
TOP_K = 5


def _up_time(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Bilinear (align_corners) upsampling of the time axis (last) of (B, C, F, T)."""
    return F.interpolate(
        x, size=(x.shape[-2], x.shape[-1] * factor), mode="bilinear", align_corners=True
    )


def _fit_time(x: torch.Tensor, length: int) -> torch.Tensor:
    """Crop the time axis to ``length`` (the authors' recipe) or stretch it if shorter."""
    if x.shape[-1] >= length:
        return x[..., :length]
    return F.interpolate(x, size=(x.shape[-2], length), mode="bilinear", align_corners=True)


def _fit_freq(x: torch.Tensor, bins: int) -> torch.Tensor:
    return x if x.shape[-2] == bins else F.adaptive_avg_pool2d(x, (bins, x.shape[-1]))


class Phi(nn.Module):
    """Hidden taps -> activations ``H`` (B, K, T) >= 0 (method notes §3.1, adapted).

    The authors' layer recipe with its channel counts tied to the classifier's taps: at
    width 1 (B4 128, B5 256, B6 512 channels) it has exactly the layers of their
    ``in_maps=256`` network; at other widths every hidden size scales with the taps. Time
    is aligned on the B6 length ``Tb`` (B5 cropped to 2Tb, B4 to 4Tb, as they do) and the
    last stage resizes to the input's ``T``, so any clip length works; frequency is pooled
    to 4 bins per branch. Unlike theirs, the convolutions are He-initialised (see below).
    """

    def __init__(self, tap_channels: dict[str, int], n_components: int) -> None:
        """``tap_channels``: the classifier's three late taps, earliest first (B4, B5,
        B6 on ``kumar``; the layers keep those names whatever the classifier)."""
        super().__init__()
        self.taps = tuple(tap_channels)
        c4, c5, c6 = (tap_channels[t] for t in self.taps)
        hidden = c5
        self.b5 = nn.Conv2d(c5, hidden, 3, padding=1)
        self.b6 = nn.Conv2d(c6, c4, 3, padding=1)
        self.b4 = nn.Conv2d(c4, c4, (4, 1), stride=(4, 1))
        self.mix1 = nn.Conv2d(hidden + 2 * c4, hidden, 3, padding=1)
        self.mix2 = nn.Conv2d(hidden, hidden, (4, 1))
        self.out1 = nn.Conv1d(hidden, n_components, 5, padding=2)
        self.out2 = nn.Conv1d(n_components, n_components, 5, padding=2)
        # He initialisation: PyTorch's default conv init shrinks the signal ~3x per layer,
        # so after seven layers H would be almost input-independent (bias-dominated) and
        # the fidelity term would need many epochs to get going.
        for module in self.modules():
            if isinstance(module, nn.Conv1d | nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, taps: dict[str, torch.Tensor], frames: int) -> torch.Tensor:
        # taps are (B, C, T', F'); the recipe works on (B, C, F', T').
        t4, t5, t6 = (taps[name].transpose(-1, -2) for name in self.taps)
        tb = t6.shape[-1]
        if tb < 1:
            raise BenchError(
                "clip too short for the L2I interpreter (no B6 frame)",
                "use clips of at least 32 STFT frames",
            )
        x5 = F.relu(self.b5(_up_time(_fit_time(t5, 2 * tb))))
        x5 = _fit_freq(F.avg_pool2d(x5, (2, 1)), 4)
        x6 = _fit_freq(_up_time(F.relu(self.b6(_up_time(t6)))), 4)
        x4 = _fit_freq(F.relu(self.b4(_fit_time(t4, 4 * tb))), 4)
        x = torch.cat([x5, x6, x4], dim=1)
        x = _up_time(F.relu(self.mix1(_up_time(x))))
        x = F.relu(self.mix2(x))  # (B, hidden, 1, 16 Tb)
        x = F.interpolate(x, size=(1, frames), mode="bilinear", align_corners=True)
        x = F.relu(self.out1(x.squeeze(2)))
        return F.relu(self.out2(x))


class Theta(nn.Module):
    """Gated attention pooling over time + bias-free linear layer (method notes §3.3).

    ``a_t = w_a · (tanh(V h_t) ⊙ ReLU(U h_t))``: the gate is a ReLU, as in the authors'
    code (Ilse et al. use a sigmoid). Dropout acts on the attention branch's input only;
    ``z`` is always pooled from the un-dropped ``H``.
    """

    def __init__(
        self,
        n_components: int,
        num_classes: int,
        attention_dim: int = ATTENTION_DIM,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.V = nn.Linear(n_components, attention_dim)
        self.U = nn.Linear(n_components, attention_dim)
        self.w = nn.Linear(attention_dim, 1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_components, num_classes, bias=False)

    def pool(self, H: torch.Tensor) -> torch.Tensor:
        """Attention-pooled activations ``z`` (B, K) of ``H`` (B, K, T)."""
        h = H.transpose(1, 2)  # (B, T, K)
        g = self.dropout(h)
        scores = self.w(torch.tanh(self.V(g)) * F.relu(self.U(g))).squeeze(-1)  # (B, T)
        attention = torch.softmax(scores, dim=1)
        return torch.bmm(attention.unsqueeze(1), h).squeeze(1)

    def forward(self, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.pool(H)
        return self.fc(z), z


def relevance_of(z: torch.Tensor, weight: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``r = z ⊙ Θ[c] / max_k(z_k Θ[c,k])`` per row (B, K); the max is signed, as in §4.1.

    A row whose every contribution is <= 0 (no component speaks for the class) keeps its
    non-positive values unscaled, so no component passes a positive threshold.
    """
    contrib = z * weight[classes]
    peak = contrib.max(dim=1, keepdim=True).values
    return contrib / torch.where(peak > 0, peak, torch.ones_like(peak))


def select_components(relevance: torch.Tensor, threshold: float, top_k: int) -> torch.Tensor:
    """Boolean (B, K): the ``top_k`` most relevant components whose relevance > threshold."""
    k = min(top_k, relevance.shape[1])
    top = relevance.topk(k, dim=1).indices
    chosen = torch.zeros_like(relevance, dtype=torch.bool).scatter_(1, top, True)
    return chosen & (relevance > threshold)


def component_mask(
    W: torch.Tensor,
    H: torch.Tensor,
    log_magnitude: torch.Tensor,
    selected: torch.Tensor,
    domain: str = "log",
) -> torch.Tensor:
    """The selected components' soft mask ``sum_k w_k h_k / (W H + eps)`` (B, F, T) in
    [0, 1], and the domain it acts in.

    ``domain="log"`` (the paper): the ratio filters ``log1p|X|`` and the interpretation
    is ``expm1(ratio log1p|X|)`` with the input phase (:data:`MaskDomain.LOG1P`; the
    reference code removes components the same way, ``expm1((1 - ratio) log1p|X|)``).
    A ratio below 1 keeps far less of a loud bin than of a quiet one (0.5 keeps 11 % of
    a bin at |X| = 64, 37 % at |X| = 2) and removes the rest. ``domain="linear"``
    applies the same ratio to ``|X|`` (a Wiener-style mask), so the benchmark can show
    what the log-domain choice changes. ``log_magnitude`` is unused (kept for callers).
    """
    full = torch.einsum("fk,bkt->bft", W, H)
    part = torch.einsum("fk,bkt->bft", W, H * selected.unsqueeze(-1).to(H.dtype))
    ratio = (part / (full + MASK_EPS)).clamp(0.0, 1.0)
    return ratio, mask_domain_of(domain)


def mask_domain_of(option: str) -> MaskDomain:
    """The perturbation domain of the ``mask_domain`` option (``log`` is the paper's)."""
    if option == "log":
        return MaskDomain.LOG1P
    if option == "linear":
        return MaskDomain.LINEAR
    raise BenchError(
        f"l2i option mask_domain={option!r} is not 'log' or 'linear'",
        "use --option l2i.mask_domain=log (the paper) or linear",
    )


def fidelity_auprc(surrogate_logits: torch.Tensor, classifier_logits: torch.Tensor) -> float:
    """Macro average precision of the surrogate's sigmoid against the classifier's
    decisions (sigmoid > 0.5) over classes with at least one positive; NaN if none."""
    from sklearn.metrics import average_precision_score

    target = (torch.sigmoid(classifier_logits) > 0.5).cpu().numpy()
    scores = torch.sigmoid(surrogate_logits).cpu().numpy()
    values = [
        average_precision_score(target[:, c], scores[:, c])
        for c in range(target.shape[1])
        if target[:, c].any()
    ]
    return float(np.mean(values)) if values else float("nan")


class L2IExplainer(Explainer):
    """The L2I NMF interpreter; options (``--option l2i.KEY=VALUE``): components,
    strategy, nmf_beta, nmf_mu, nmf_iter, nmf_chunk, noise_components, clips_per_class
    (noise_then_class only), epochs, lr, batch_size, alpha, beta, threshold, top_k,
    dropout, mask_domain (log, the paper's; or linear: see :func:`component_mask`)."""

    name: ClassVar[str] = "l2i"
    family: ClassVar[str] = "paper"
    groups: ClassVar[frozenset[str]] = frozenset({"quick"})
    description: ClassVar[str] = (
        "Listen to Interpret: interpreter on the classifier's B4-B6 taps predicting NMF "
        "activations of a fixed sparse-NMF dictionary; listenable masks of the relevant "
        "components"
    )
    version: ClassVar[str] = "2"
    unit: ClassVar[str] = "NMF component"
    needs_training: ClassVar[bool] = True
    has_surrogate: ClassVar[bool] = True
    passes: ClassVar[str] = "one forward pass"
    options: ClassVar[Mapping[str, Option]] = {
        "components": Option(
            lambda d: d.nmf_components, "NMF dictionary size K (components; dataset default)"
        ),
        "strategy": Option(
            lambda d: d.dictionary_strategy,
            "how the dictionary is learned: global or noise_then_class (dataset default)",
        ),
        "nmf_beta": Option(1.0, "beta of the sparse-NMF divergence (1: Kullback-Leibler)"),
        "nmf_mu": Option(0.8, "sparsity weight (L1) of the NMF activations"),
        "nmf_iter": Option(200, "most NMF iterations (count)"),
        "nmf_chunk": Option(5, "consecutive frames averaged into one NMF column (frames; 1: none)"),
        "noise_components": Option(
            10, "components learned on the noise first (noise_then_class strategy only)"
        ),
        "clips_per_class": Option(
            700, "most clips per class read for the dictionary (noise_then_class only)"
        ),
        "epochs": Option(
            lambda d: d.interpreter_epochs, "interpreter training epochs (dataset default)"
        ),
        "lr": Option(lambda d: d.interpreter_lr, "Adam learning rate (dataset default)"),
        "batch_size": Option(32, "training clips per step"),
        "alpha": Option(10.0, "weight of the NMF reconstruction loss (MSE on log(1 + |X|))"),
        "beta": Option(0.8, "weight of the L1 sparsity loss on the activations H"),
        "threshold": Option(
            lambda d: d.relevance_threshold,
            "relevance above which a component is kept, 0 to 1 (dataset default)",
        ),
        "top_k": Option(TOP_K, "most relevant components kept in the mask (count)"),
        "dropout": Option(
            None,
            "dropout on the attention pooling's input, 0 to 1; derived from the task when "
            "unset: 0.4 multiclass, 0 multilabel",
        ),
        "mask_domain": Option("log", "domain of the component mask: log (the paper's) or linear"),
    }

    def __init__(self, context: ExplainerContext) -> None:
        super().__init__(context)
        self.n_components = int(context.option("components"))
        self.threshold = float(context.option("threshold"))
        self.top_k = int(context.option("top_k"))
        self.mask_domain = str(context.option("mask_domain"))
        self.device = torch.device(context.device)
        self.W: torch.Tensor | None = None
        self.phi: Phi | None = None
        self.theta: Theta | None = None

    # ------------------------------------------------------------------ modules

    def _build(self, n_components: int) -> None:
        tap_channels = late_tap_channels(self.context.classifier, self.name)
        dropout = self.context.option("dropout")
        if dropout is None:
            dropout = 0.4 if self.context.task == Task.MULTICLASS else 0.0  # §3.3
        dropout = float(dropout)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            self.phi = Phi(dict(tap_channels), n_components).to(self.device)
            self.theta = Theta(n_components, self.context.num_classes, dropout=dropout).to(
                self.device
            )
        self.n_components = n_components

    def _require(self) -> tuple[Phi, Theta, torch.Tensor]:
        if self.phi is None or self.theta is None or self.W is None:
            raise BenchError(
                "the l2i explainer is used before fit() or load_state_dict()",
                "let the runner fit it (needs_training=True)",
            )
        return self.phi, self.theta, self.W

    def _forward(
        self, logmel: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Classifier logits, activations H, surrogate logits and pooled z."""
        phi, theta, _ = self._require()
        with torch.no_grad():
            logits, taps = self.context.classifier.forward_with_taps(logmel)
        H = phi({k: v.detach() for k, v in taps.items()}, logmel.shape[2])
        surrogate, z = theta(H)
        return logits.detach(), H, surrogate, z

    def _fidelity_loss(self, surrogate: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.context.task == Task.MULTICLASS:
            target = torch.softmax(logits, dim=1)
            return -(target * torch.log_softmax(surrogate, dim=1)).sum(1).mean()
        return F.binary_cross_entropy_with_logits(surrogate, torch.sigmoid(logits))

    # --------------------------------------------------------------------- fit

    def fit(self, train: BatchSource, valid: BatchSource) -> dict[str, Any]:
        ctx = self.context
        strategy = str(ctx.option("strategy"))
        nmf_beta = float(ctx.option("nmf_beta"))
        nmf_mu = float(ctx.option("nmf_mu"))
        nmf_iter = int(ctx.option("nmf_iter"))
        chunk = int(ctx.option("nmf_chunk"))
        W = learn_dictionary(
            train,
            self.n_components,
            beta=nmf_beta,
            mu=nmf_mu,
            strategy=strategy,
            chunk=chunk,
            max_iter=nmf_iter,
            seed=ctx.seed,
            device=self.device,
            cache_dir=ctx.cache_dir,
            cache_key=ctx.cache_key,
            noise_components=int(ctx.option("noise_components")),
            clips_per_class=int(ctx.option("clips_per_class")),
            show_progress=ctx.show_progress,
        )
        self.W = W.to(self.device)
        self._build(W.shape[1])
        phi, theta, _ = self._require()
        if getattr(ctx.classifier, "training", False):
            ctx.classifier.eval()  # type: ignore[attr-defined]  # frozen BatchNorm statistics

        epochs = int(ctx.option("epochs"))
        lr = float(ctx.option("lr"))
        batch_size = int(ctx.option("batch_size"))
        alpha = float(ctx.option("alpha"))
        beta = float(ctx.option("beta"))
        params = list(phi.parameters()) + list(theta.parameters())
        optimiser = torch.optim.Adam(params, lr=lr)
        best: tuple[float, float] | None = None
        best_state: dict[str, Any] | None = None
        best_epoch = 0
        history: list[dict[str, float]] = []
        n_batches = math.ceil(len(train) / batch_size) * epochs
        bar = tqdm(
            total=n_batches, desc="l2i interpreter", unit="batch", disable=not ctx.show_progress
        )
        for epoch in range(1, epochs + 1):
            phi.train()
            theta.train()
            totals = np.zeros(3)
            count = 0
            for batch in train.batches(batch_size, shuffle=True, seed=ctx.seed * 1000 + epoch):
                logits, H, surrogate, _ = self._forward(batch.logmel.to(self.device))
                recon = F.relu(torch.einsum("fk,bkt->bft", self.W, H))
                parts = (
                    self._fidelity_loss(surrogate, logits),
                    F.mse_loss(recon, batch.log_magnitude.to(self.device)),
                    H.abs().mean(),
                )
                loss = parts[0] + alpha * parts[1] + beta * parts[2]
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                totals += [float(p.detach()) for p in parts]
                count += 1
                bar.update(1)
            score, valid_loss = self._validate(valid, batch_size, alpha, beta)
            totals /= max(count, 1)
            history.append(
                {
                    "epoch": epoch,
                    "fidelity_loss": totals[0],
                    "nmf_loss": totals[1],
                    "l1": totals[2],
                    "valid_score": score,
                    "valid_loss": valid_loss,
                }
            )
            bar.set_postfix(valid=f"{score:.3f}", nmf=f"{totals[1]:.4f}")
            key = (score if not math.isnan(score) else -math.inf, -valid_loss)
            if best is None or key > best:
                best, best_epoch = key, epoch
                best_state = copy.deepcopy({"phi": phi.state_dict(), "theta": theta.state_dict()})
        bar.close()
        if best_state is not None:
            phi.load_state_dict(best_state["phi"])
            theta.load_state_dict(best_state["theta"])
        phi.eval()
        theta.eval()
        last = history[-1] if history else {}
        return {
            "n_components": int(W.shape[1]),
            "dictionary_strategy": strategy,
            "nmf_beta": nmf_beta,
            "nmf_mu": nmf_mu,
            "epochs": epochs,
            "best_epoch": best_epoch,
            "selection": (
                "validation top-1 agreement"
                if ctx.task == Task.MULTICLASS
                else "validation fidelity macro-AUPRC"
            ),
            "best_valid_score": history[best_epoch - 1]["valid_score"] if best_epoch else None,
            "final_nmf_loss": last.get("nmf_loss"),
            "final_fidelity_loss": last.get("fidelity_loss"),
        }

    @torch.no_grad()
    def _validate(
        self, valid: BatchSource, batch_size: int, alpha: float, beta: float
    ) -> tuple[float, float]:
        """(selection score, mean validation loss); score NaN on an empty split."""
        phi, theta, W = self._require()
        phi.eval()
        theta.eval()
        cls_logits, sur_logits, losses = [], [], []
        for batch in valid.batches(batch_size):
            logits, H, surrogate, _ = self._forward(batch.logmel.to(self.device))
            recon = F.relu(torch.einsum("fk,bkt->bft", W, H))
            loss = (
                self._fidelity_loss(surrogate, logits)
                + alpha * F.mse_loss(recon, batch.log_magnitude.to(self.device))
                + beta * H.abs().mean()
            )
            losses.append(float(loss) * len(batch))
            cls_logits.append(logits.cpu())
            sur_logits.append(surrogate.cpu())
        if not cls_logits:
            return float("nan"), 0.0
        f_logits, s_logits = torch.cat(cls_logits), torch.cat(sur_logits)
        valid_loss = sum(losses) / f_logits.shape[0]
        if self.context.task == Task.MULTICLASS:
            score = float((f_logits.argmax(1) == s_logits.argmax(1)).float().mean())
        else:
            score = fidelity_auprc(s_logits, f_logits)
        return score, valid_loss

    # ----------------------------------------------------------------- explain

    @torch.no_grad()
    def predict(self, batch: AudioBatch) -> torch.Tensor:
        phi, theta, _ = self._require()
        phi.eval()
        theta.eval()
        _, _, surrogate, _ = self._forward(batch.logmel.to(self.device))
        return surrogate

    @torch.no_grad()
    def activations(self, batch: AudioBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The interpreter's activations ``H`` (B, K, T) and their pooled ``z`` (B, K):
        what relevance and masks are built from, for diagnostics that look per atom."""
        phi, theta, _ = self._require()
        phi.eval()
        theta.eval()
        _, H, _, z = self._forward(batch.logmel.to(self.device))
        return H, z

    @torch.no_grad()
    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        phi, theta, W = self._require()
        phi.eval()
        theta.eval()
        _, H, surrogate, z = self._forward(batch.logmel.to(self.device))
        classes = classes.to(self.device).long()
        relevance = relevance_of(z, theta.fc.weight, classes)
        selected = select_components(relevance, self.threshold, self.top_k)
        mask, domain = component_mask(
            W, H, batch.log_magnitude.to(self.device), selected, self.mask_domain
        )
        return Explanation(
            mask=mask,
            mask_domain=domain,
            relevance=relevance,
            surrogate_logits=surrogate,
            extra={"n_components": selected.sum(1).float()},
        )

    # -------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        phi, theta, W = self._require()
        return {
            "W": W.detach().cpu(),
            "phi": {k: v.detach().cpu() for k, v in phi.state_dict().items()},
            "theta": {k: v.detach().cpu() for k, v in theta.state_dict().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        W = state["W"]
        self.W = W.to(self.device)
        self._build(int(W.shape[1]))
        phi, theta, _ = self._require()
        phi.load_state_dict(state["phi"])
        theta.load_state_dict(state["theta"])
        phi.eval()
        theta.eval()


@hookimpl
def register_explainers(register) -> None:  # type: ignore[no-untyped-def]
    register(L2IExplainer)
