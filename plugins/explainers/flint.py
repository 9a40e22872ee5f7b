"""The ``flint`` baseline: post-hoc FLINT (Parekh et al., NeurIPS 2021) for audio.

FLINT interprets a frozen classifier ``f`` through ``J`` non-negative *attributes*:

* ``Phi``: an attribute function on the classifier's B4, B5 and B6 taps (the same
  hidden layers L2I reads, appendix A.7) → ``J`` attributes, ReLU at the end so
  ``Phi(x) >= 0`` (FLINT's ``attr_RN18_multi`` / L2I's audio ``Psi``);
* ``h``: a linear head *without bias* on the attributes that mimics ``f``
  (output fidelity ``L_of``); its logits are this explainer's surrogate
  (:meth:`FlintExplainer.predict`);
* ``d``: a decoder from the attributes to ``log(1 + |X|)`` (513 x T; input
  fidelity ``L_if``, MSE), the space L2I's NMF term lives in.

Loss (method notes §7.1), with the classifier frozen and only ``Phi, h, d`` trained::

    L = w_of L_of + w_if L_if + w_entropy (-E(mean_b |Phi|) + mean_b E(Phi)) + w_l1 mean|Phi|

``E(v)`` is the entropy of ``softmax(|v|)``: the first entropy term rewards
*diversity* (the batch uses many attributes), the second *conciseness* (each clip
uses few). ``L_of`` is the cross-entropy against the classifier's softmax for
multiclass and soft-target BCE against its sigmoid for multilabel (as L2I's own
interpreter). **Weights (our choice, documented because the audio ones were not
found):** ``w_of = 1``; ``w_if = 10`` because appendix A.7 says FLINT's ``gamma`` was set
to L2I's NMF weight ``alpha = 10``; ``w_entropy = 0.4`` and ``w_l1 = 0.2`` are FLINT's
MNIST defaults (0.2 and 0.1) divided by its ``L_of`` weight (0.5), so the ratio to
output fidelity is FLINT's. FLINT's "training strategy" switches terms on in stages
(MNIST: ``L_of`` and L1 after epoch 2 of 12, entropy after epoch 4); we keep the same
*fractions* of the epoch budget (1/6 and 1/3, option ``warmup``), so short runs still
train every term. FLINT's Dropout(0.01) before ``h`` is left out (negligible).

Model selection uses top-1 agreement ``argmax h(Phi(x)) == argmax f(x)`` on the
VALIDATION split after every epoch (L2I's code selected on test; we never do); for
multilabel data the same agreement on the most confident class; ties go to the later
epoch. With an empty validation split the last epoch is kept and the fit facts say so.

Relevance of attribute ``j`` for class ``c`` (method notes §7.3):
``r_j = Phi_j w_{c,j} / max_i (Phi_i w_{c,i})`` (signed max, as FLINT's local relevance);
a row whose products are all ``<= 0`` has no relevant attribute and gets ``r = 0``.

Listenable outputs:

(a) ``mask`` (what the mask-based metrics score): the decoder's reconstruction from the
    relevant attributes (``r > relevance_threshold``) taken as a log-magnitude soft
    mask, as L2I's component ratio: ``ratio = clamp(d(Phi * 1[rel]) / (d(Phi) + eps), 0, 1)``,
    returned as the mask in the ``log1p`` domain (keep ``expm1(ratio log1p|X|)``, remove
    ``expm1((1 - ratio) log1p|X|)``, the operators of :mod:`l2i_bench.perturb`).
(b) ``extra["activation_maximisation"]`` (B, L): **FLINT's own visualisation, as the
    paper did it** (appendix A.6.2): activation maximisation of the relevant attributes
    from a *weakened input* — the magnitude scaled by 0.1, i.e. the log-mel lowered by
    10 dB as the paper's "subtract 10" — then ``am_steps`` Adam steps (lr ``am_lr``) on
    the input's ``log(1 + |X|)`` to maximise ``sum_{j relevant} Phi_j``, resynthesised
    with the input phase. The paper ran 1500 steps; the default here is 10 to keep a
    benchmark run affordable (``--option flint.am_steps=1500`` to match). It is not a
    mask and no mask metric scores it.

Cost per clip. Training: per epoch, 1 classifier forward (taps, no gradient) plus
``Phi/h/d`` forward and backward, and 1 classifier forward per validation clip.
Explain: 1 classifier forward + 2 decoder forwards for the mask, plus ``am_steps``
classifier forward+backward passes for the activation maximisation (set
``am_steps=0`` to skip it). Predict: 1 classifier forward.
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
    MaskDomain,
    Option,
    Task,
    late_tap_channels,
)

EPS = 1e-6


class AttributeFunction(nn.Module):
    """``Phi``: the three late taps (B4, B5, B6 on ``kumar``) → ``J`` non-negative
    attributes; ``tap_channels`` names them, earliest first.

    Each tap is average-pooled to the latest one's (T', F') grid (any clip length, any width),
    brought to ``hidden`` channels by a 3x3 conv, concatenated, mixed by a 3x3 conv,
    pooled to 3x3 and projected to ``J`` with a final ReLU (FLINT's audio ``Psi``).
    """

    def __init__(self, tap_channels: dict[str, int], attributes: int, hidden: int = 128) -> None:
        super().__init__()
        self.taps = tuple(tap_channels)
        self.proj = nn.ModuleDict(
            {t: nn.Conv2d(tap_channels[t], hidden, 3, padding=1) for t in self.taps}
        )
        self.mix = nn.Conv2d(3 * hidden, hidden, 3, padding=1)
        self.out = nn.Linear(hidden * 9, attributes)

    def forward(self, taps: dict[str, torch.Tensor]) -> torch.Tensor:
        grid = taps[self.taps[-1]].shape[-2:]
        parts = [F.relu(self.proj[t](F.adaptive_avg_pool2d(taps[t], grid))) for t in self.taps]
        mixed = F.relu(self.mix(torch.cat(parts, dim=1)))
        pooled = F.adaptive_avg_pool2d(mixed, 3).flatten(1)
        return F.relu(self.out(pooled))


class AttributeDecoder(nn.Module):
    """``d``: ``J`` attributes → ``log(1 + |X|)`` of shape (513, T) for any T.

    FLINT's audio decoder shape: a linear map to a short 16-channel sequence, three
    1-D convs with x2 upsampling, a resize to ``T`` frames, a conv to 513 bins, ReLU
    (the target is non-negative).
    """

    def __init__(self, attributes: int, freqs: int, length: int = 50) -> None:
        super().__init__()
        self.length = length
        self.inp = nn.Linear(attributes, 16 * length)
        self.c1 = nn.Conv1d(16, 32, 5, padding=2)
        self.c2 = nn.Conv1d(32, 64, 5, padding=2)
        self.c3 = nn.Conv1d(64, 128, 5, padding=2)
        self.out = nn.Conv1d(128, freqs, 3, padding=1)

    def forward(self, phi: torch.Tensor, frames: int) -> torch.Tensor:
        x = self.inp(phi).view(phi.shape[0], 16, self.length)
        x = F.interpolate(F.relu(self.c1(x)), scale_factor=2.0, mode="linear")
        x = F.interpolate(F.relu(self.c2(x)), scale_factor=2.0, mode="linear")
        x = F.relu(self.c3(x))
        x = F.interpolate(x, size=frames, mode="linear", align_corners=False)
        return F.relu(self.out(x))


def entropy_of_softmax(values: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(|v|)`` along the last axis (FLINT's ``E``)."""
    logp = F.log_softmax(values.abs(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def output_fidelity_loss(
    surrogate: torch.Tensor, teacher: torch.Tensor, task: Task
) -> torch.Tensor:
    """Soft-target CE (multiclass) or soft-target BCE (multilabel) against ``f``."""
    teacher = teacher.detach()
    if task is Task.MULTILABEL:
        return F.binary_cross_entropy_with_logits(surrogate, torch.sigmoid(teacher))
    return -(F.softmax(teacher, -1) * F.log_softmax(surrogate, -1)).sum(-1).mean()


def attribute_relevance(
    phi: torch.Tensor, weight: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """``r_j = Phi_j w_{c,j} / max_i Phi_i w_{c,i}``; rows with no positive product → 0."""
    products = phi * weight[classes]
    peak = products.amax(dim=-1, keepdim=True)
    return torch.where(peak > 0, products / peak.clamp_min(EPS), torch.zeros_like(products))


class FlintExplainer(Explainer):
    """Post-hoc FLINT: attributes from B4/B5/B6, bias-free linear head, decoder."""

    name = "flint"
    family = "paper"
    description = "Post-hoc FLINT: attributes on B4-B6, linear head, decoder to log|X| (mask)"
    version = "2"
    unit = "attribute"
    needs_training = True
    has_surrogate = True
    passes = "one forward pass (+ {am_steps} gradient steps for the AM audio)"
    options: ClassVar[Mapping[str, Option]] = {
        "attributes": Option(
            lambda d: d.nmf_components, "number of attributes J (dataset's NMF K by default)"
        ),
        "hidden": Option(128, "channels of the attribute function's hidden layers"),
        "w_of": Option(1.0, "weight of output fidelity (the head against the classifier)"),
        "w_if": Option(10.0, "weight of input fidelity (decoder MSE on log(1 + |X|))"),
        "w_entropy": Option(0.4, "weight of the diversity and conciseness entropy terms"),
        "w_l1": Option(0.2, "weight of the L1 sparsity of the attributes"),
        "warmup": Option(
            True, "switch terms on in stages (of and L1 after 1/6 of the epochs, entropy after 1/3)"
        ),
        "epochs": Option(lambda d: d.interpreter_epochs, "training epochs (dataset default)"),
        "lr": Option(lambda d: d.interpreter_lr, "Adam learning rate (dataset default)"),
        "batch_size": Option(32, "training clips per step"),
        "threshold": Option(
            lambda d: d.relevance_threshold,
            "relevance above which an attribute is relevant, 0 to 1 (dataset default)",
        ),
        "am_steps": Option(10, "Adam steps of the activation-maximisation audio (0: skip it)"),
        "am_weaken_db": Option(10.0, "how much the AM starting input is lowered (dB)"),
        "am_lr": Option(0.05, "Adam learning rate of the AM on log(1 + |X|)"),
    }

    def __init__(self, context: ExplainerContext) -> None:
        super().__init__(context)
        self.attributes = int(context.option("attributes"))
        self.hidden = int(context.option("hidden"))
        if self.attributes < 1:
            raise BenchError(
                f"flint.attributes must be >= 1, got {self.attributes}",
                "pass --option flint.attributes=100 (the NMF K of the dataset by default)",
            )
        channels = late_tap_channels(context.classifier, self.name)
        freqs = context.front_end.mel_basis.shape[1]
        # Seeded initialisation without touching the caller's global RNG state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)
            self.phi = AttributeFunction(channels, self.attributes, self.hidden)
            self.head = nn.Linear(self.attributes, context.num_classes, bias=False)
            self.decoder = AttributeDecoder(self.attributes, freqs)
        for module in self._modules().values():
            module.to(context.device)

    # ------------------------------------------------------------------ helpers

    def _modules(self) -> dict[str, nn.Module]:
        return {"phi": self.phi, "head": self.head, "decoder": self.decoder}

    def _attributes(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Classifier logits (no gradient) and ``Phi`` on its taps."""
        with torch.no_grad():
            logits, taps = self.context.classifier.forward_with_taps(logmel)
        return logits, self.phi(taps)

    def _weights(self, epoch: int, epochs: int) -> dict[str, float]:
        ctx = self.context
        weights = {
            "of": float(ctx.option("w_of")),
            "if": float(ctx.option("w_if")),
            "entropy": float(ctx.option("w_entropy")),
            "l1": float(ctx.option("w_l1")),
        }
        if bool(ctx.option("warmup")):
            if epoch < int(epochs / 6):
                weights["of"] = weights["l1"] = 0.0
            if epoch < int(epochs / 3):
                weights["entropy"] = 0.0
        return weights

    def _agreement(self, valid: BatchSource, batch_size: int) -> float:
        agree, total = 0, 0
        for m in self._modules().values():
            m.eval()
        with torch.no_grad():
            for batch in valid.batches(batch_size):
                logits, phi = self._attributes(batch.logmel)
                agree += int((self.head(phi).argmax(-1) == logits.argmax(-1)).sum())
                total += len(batch)
        return agree / max(total, 1)

    # --------------------------------------------------------------------- API

    def fit(self, train: BatchSource, valid: BatchSource) -> dict[str, Any]:
        ctx = self.context
        epochs = int(ctx.option("epochs"))
        lr = float(ctx.option("lr"))
        batch_size = int(ctx.option("batch_size"))
        if len(train) == 0:
            raise BenchError(
                "flint cannot train: the training split is empty",
                "check the dataset's split (flint learns from training clips)",
            )
        params = [p for m in self._modules().values() for p in m.parameters()]
        optimiser = torch.optim.Adam(params, lr=lr)
        best_score, best_epoch, best_state = -1.0, -1, None
        history: list[float] = []
        for epoch in tqdm(
            range(epochs), desc="flint epochs", unit="epoch", disable=not ctx.show_progress
        ):
            w = self._weights(epoch, epochs)
            for m in self._modules().values():
                m.train()
            for batch in train.batches(batch_size, shuffle=True, seed=ctx.seed + epoch):
                logits, phi = self._attributes(batch.logmel)
                recon = self.decoder(phi, batch.spec.shape[-1])
                abs_phi = phi.abs()
                loss = (
                    w["of"] * output_fidelity_loss(self.head(phi), logits, ctx.task)
                    + w["if"] * F.mse_loss(recon, batch.log_magnitude)
                    + w["entropy"]
                    * (entropy_of_softmax(phi).mean() - entropy_of_softmax(abs_phi.mean(0)))
                    + w["l1"] * abs_phi.mean()
                )
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            if len(valid) > 0:
                score = self._agreement(valid, batch_size)
                history.append(score)
                if score >= best_score:  # ties: the longer-trained model
                    best_score, best_epoch = score, epoch
                    best_state = copy.deepcopy(self.state_dict())
        if best_state is not None:
            self.load_state_dict(best_state)
        for m in self._modules().values():
            m.eval()
        return {
            "epochs": epochs,
            "lr": lr,
            "attributes": self.attributes,
            "selection": "best validation top-1 agreement"
            if best_state is not None
            else "last epoch (validation split empty)",
            "best_epoch": best_epoch + 1 if best_state is not None else epochs,
            "valid_top1_agreement": best_score if best_state is not None else math.nan,
            "valid_history": history,
        }

    def predict_attributes(self, batch: AudioBatch) -> torch.Tensor:
        """The attributes ``Phi(x)`` (B, J) of a batch."""
        with torch.no_grad():
            return self._attributes(batch.logmel)[1]

    def predict(self, batch: AudioBatch) -> torch.Tensor:
        with torch.no_grad():
            _, phi = self._attributes(batch.logmel)
            return self.head(phi)

    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        for m in self._modules().values():
            m.eval()
        classes = classes.to(batch.spec.device).long()
        threshold = float(self.context.option("threshold"))
        with torch.no_grad():
            _, phi = self._attributes(batch.logmel)
            relevance = attribute_relevance(phi, self.head.weight, classes)
            relevant = (relevance > threshold).to(phi.dtype)
            frames = batch.spec.shape[-1]
            d_all = self.decoder(phi, frames)
            d_rel = self.decoder(phi * relevant, frames)
            mask = (d_rel / (d_all + EPS)).clamp(0.0, 1.0)
            surrogate = self.head(phi)
        extra = {}
        steps = int(self.context.option("am_steps"))
        if steps > 0:
            extra["activation_maximisation"] = self.activation_maximisation(batch, relevant, steps)
        return Explanation(
            mask=mask,
            relevance=relevance,
            surrogate_logits=surrogate,
            extra=extra,
            mask_domain=MaskDomain.LOG1P,
        )

    def activation_maximisation(
        self, batch: AudioBatch, relevant: torch.Tensor, steps: int
    ) -> torch.Tensor:
        """FLINT's visualisation (appendix A.6.2): maximise the relevant attributes
        starting from the input weakened by 10 dB; audio with the input phase.

        Rows are independent (the objective is a sum over rows and Adam is
        element-wise), so the whole batch is optimised at once. Gradients are taken
        with ``torch.autograd.grad`` on the input only, so the frozen classifier's
        parameters never accumulate gradients.
        """
        fe = self.context.front_end
        weak = float(self.context.option("am_weaken_db"))
        lr = float(self.context.option("am_lr"))
        scale = 10.0 ** (-weak / 10.0)  # log-mel is 10 log10(mel |X|): -10 dB = |X| * 0.1
        log_mag = torch.log1p(batch.magnitude * scale).detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([log_mag], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                magnitude = torch.expm1(log_mag.clamp_min(0.0))
                logmel = fe.logmel_from_magnitude(magnitude)
                _, taps = self.context.classifier.forward_with_taps(logmel)
                phi = self.phi(taps)
                objective = (phi * relevant).sum()
                (grad,) = torch.autograd.grad(-objective, [log_mag])
                optimiser.zero_grad(set_to_none=True)
                log_mag.grad = grad
                optimiser.step()
        with torch.no_grad():
            magnitude = torch.expm1(log_mag.clamp_min(0.0))
            return fe.resynthesise(magnitude, batch.spec, batch.waveform.shape[-1])

    def state_dict(self) -> dict[str, Any]:
        return {
            "attributes": self.attributes,
            "hidden": self.hidden,
            **{name: m.state_dict() for name, m in self._modules().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (
            int(state.get("attributes", -1)) != self.attributes
            or int(state.get("hidden", -1)) != self.hidden
        ):
            raise BenchError(
                f"cached flint state has attributes={state.get('attributes')}, "
                f"hidden={state.get('hidden')}; this run asks for {self.attributes}, {self.hidden}",
                "delete the cached flint state or pass the matching --option flint.attributes",
            )
        for name, module in self._modules().items():
            module.load_state_dict(state[name])


@hookimpl
def register_explainers(register):
    register(FlintExplainer)
