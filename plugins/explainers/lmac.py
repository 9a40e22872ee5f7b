"""L-MAC (Paissan, Ravanelli & Subakan, ICML 2024): a listenable mask from a decoder on
the classifier's hidden layers, trained so that what it keeps keeps the class and what
it removes loses it.

Method (paper and SpeechBrain's ``recipes/ESC50/interpret``, facts in
``shared/reference/peer-lmac-speechbrain.md``): a decoder reads the classifier's late
representations and outputs a mask ``M = sigmoid(decoder)`` on the STFT grid; with the
classifier frozen it minimises

    L = l_in CE(f(keep(X, M)), c) - l_out CE(f(remove(X, M)), c) + l1 mean|M| + tv TV(M)

where ``c`` is the classifier's own decision (not the label), ``keep`` / ``remove`` apply
``M`` and ``1 - M`` to ``log(1 + |X|)`` (the recipe's masking, ``expm1`` of the masked
log-magnitude, input phase), and the weights are the recipe's: ``l_in`` 4, ``l_out`` 0.2,
``l1`` 0.4, ``tv`` 0; Adam at lr 2e-4, weight decay 2e-6, batch 16.

What the paper leaves open, chosen here (ours):
- **Decoder.** The recipe's decoder is CNN14-specific (transposed convolutions over four
  CNN14 blocks with skip sums). Ours has the same shape on this suite's taps (B4, B5,
  B6, the layers L2I and FLINT read): a 1x1 projection of each tap to ``hidden`` (64)
  channels, B6 upsampled to B5's grid and summed, then to B4's, two 3x3 convs, bilinear
  upsampling to the log-mel grid ``(T, 128)`` and a learned per-frame map from the 128
  mel bands to the 513 STFT bins, initialised with the suite's mel-to-STFT mapping
  (:attr:`FrontEnd.mel_to_linear`), so training starts from the mapping every other
  mel-grid explainer uses and may refine it.
- **Classes.** The recipe explains the predicted class of a multiclass classifier with a
  one-channel decoder. Ours has one output channel per class and trains, per clip, the
  channels of the classes the classifier decides (argmax for multiclass; every class
  over its threshold, or the most probable one, for multilabel), with ``CE`` the
  class's negative log probability (softmax or sigmoid), so it runs on both task types
  and explains any class asked.
- **Masking in training** uses the same operators the metrics use
  (:func:`l2i_bench.perturb.kept_magnitude` / ``removed_magnitude`` in the ``log1p``
  domain) and feeds the classifier the log-mel of the masked magnitude, without the
  resynthesis round trip the metrics make (the recipe does the same).
- **Budget and selection.** The recipe trains 200 epochs and keeps the last; here the
  dataset's interpreter budget (``epochs`` option, default the dataset's
  ``interpreter_epochs``) and the epoch with the best validation input fidelity (the
  kept input's top class is the classifier's), ties to the lower validation loss.

Output: ``mask`` in the ``log1p`` domain (declared, so every metric keeps and removes it
as the method does); no relevance (L-MAC has no units). Cost: training, per epoch and
clip, 1 classifier forward for the taps and 2 forward + backward passes through the
classifier for the masked inputs; explaining, 1 classifier forward and 1 decoder pass.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from l2i_bench import hookimpl
from l2i_bench.errors import BenchError
from l2i_bench.perturb import kept_magnitude, removed_magnitude
from l2i_bench.types import (
    AudioBatch,
    Explainer,
    Explanation,
    MaskDomain,
    Option,
    Task,
    late_tap_channels,
)

WEIGHTS = {"l_in": 4.0, "l_out": 0.2, "l1": 0.4, "tv": 0.0}


class MaskDecoder(nn.Module):
    """The three late taps (B4, B5, B6 on ``kumar``; ``tap_channels`` names them,
    earliest first) -> per-class mask logits ``(B, C, F, T)`` on the STFT grid."""

    def __init__(
        self,
        tap_channels: dict[str, int],
        classes: int,
        mel_to_linear: torch.Tensor,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        self.taps = tuple(tap_channels)
        self.proj = nn.ModuleDict({t: nn.Conv2d(tap_channels[t], hidden, 1) for t in self.taps})
        self.up6 = nn.ConvTranspose2d(hidden, hidden, 2, stride=2)
        self.up5 = nn.ConvTranspose2d(hidden, hidden, 2, stride=2)
        self.conv1 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, classes, 3, padding=1)
        self.to_linear = nn.Linear(mel_to_linear.shape[1], mel_to_linear.shape[0], bias=False)
        with torch.no_grad():
            self.to_linear.weight.copy_(mel_to_linear)

    def forward(
        self,
        taps: dict[str, torch.Tensor],
        frames: int,
        mels: int,
        rows: torch.Tensor | None = None,
        classes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits ``(B, C, F, T)``, or ``(N, F, T)`` for the (row, class) pairs given.

        Asking for the pairs picks their channels on the coarse grid, before the upsampling
        and the mel-to-STFT map, which act on each channel alone: the same logits, without
        building (and back-propagating through) the ``(B, C, F, T)`` tensor of every
        class (bit for bit on CPU, tested; on CUDA, cuBLAS may pick another kernel for
        the smaller product). On ESC-50 (50 classes, 5 s) that tensor was 85 % of a
        training step."""
        if (rows is None) != (classes is None):
            raise ValueError("give rows and classes together (the pairs to decode), or neither")
        early, mid, late = self.taps
        x = self.proj[late](taps[late])
        x = F.interpolate(self.up6(x), size=taps[mid].shape[-2:]) + self.proj[mid](taps[mid])
        x = F.interpolate(self.up5(F.relu(x)), size=taps[early].shape[-2:]) + self.proj[early](
            taps[early]
        )
        x = self.conv2(F.relu(self.conv1(F.relu(x))))  # (B, C, T4, M4)
        if rows is not None:
            x = x[rows, classes][:, None]  # (N, 1, T4, M4)
        x = F.interpolate(x, size=(frames, mels), mode="bilinear", align_corners=False)
        x = self.to_linear(x).transpose(-1, -2)  # (B, C, F, T) or (N, 1, F, T)
        return x if rows is None else x[:, 0]


def class_log_probability(logits: torch.Tensor, classes: torch.Tensor, task: Task) -> torch.Tensor:
    """``log p_c`` per row: softmax for multiclass, sigmoid for multilabel."""
    if task is Task.MULTILABEL:
        return F.logsigmoid(logits.gather(1, classes[:, None])[:, 0])
    return F.log_softmax(logits, dim=-1).gather(1, classes[:, None])[:, 0]


def lmac_loss(
    classifier,
    front_end,
    magnitude: torch.Tensor,
    mask: torch.Tensor,
    classes: torch.Tensor,
    task: Task,
    weights: dict[str, float] = WEIGHTS,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The L-MAC objective of masks ``(B, F, T)`` (log1p domain) on magnitudes ``|X|``
    for one class per row; returns the batch mean and its terms (with the classifier's
    logits on the kept input, which validation scores for input fidelity)."""
    kept = kept_magnitude(magnitude, mask, MaskDomain.LOG1P)
    removed = removed_magnitude(magnitude, mask, MaskDomain.LOG1P)
    logits_in = classifier(front_end.logmel_from_magnitude(kept))
    ce_in = -class_log_probability(logits_in, classes, task)
    ce_out = -class_log_probability(
        classifier(front_end.logmel_from_magnitude(removed)), classes, task
    )
    l1 = mask.abs().mean(dim=(1, 2))
    tv = (mask[:, 1:] - mask[:, :-1]).abs().mean(dim=(1, 2)) + (
        mask[:, :, 1:] - mask[:, :, :-1]
    ).abs().mean(dim=(1, 2))
    total = weights["l_in"] * ce_in - weights["l_out"] * ce_out + weights["l1"] * l1
    total = total + weights["tv"] * tv
    terms = {"ce_in": ce_in, "ce_out": ce_out, "l1": l1, "tv": tv, "logits_in": logits_in}
    return total.mean(), terms


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """The classifier's parameters without gradients while the decoder trains through it
    (nothing accumulates in the shared model), restored afterwards."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class LmacExplainer(Explainer):
    name = "lmac"
    description = "L-MAC: decoder on the B4-B6 taps, mask that keeps the class in and out"
    version = "1"
    needs_training = True
    passes = "1 forward + 1 decoder pass"
    options: ClassVar[Mapping[str, Option]] = {
        "epochs": Option(
            lambda d: d.interpreter_epochs, "decoder training epochs (dataset's interpreter budget)"
        ),
        "lr": Option(2e-4, "Adam learning rate of the decoder"),
        "batch_size": Option(16, "training clips per step"),
        "l_in": Option(WEIGHTS["l_in"], "weight of the kept input's class cross-entropy"),
        "l_out": Option(
            WEIGHTS["l_out"], "weight of the removed input's class cross-entropy (subtracted)"
        ),
        "l1": Option(WEIGHTS["l1"], "weight of the mask's mean absolute value (L1)"),
        "tv": Option(WEIGHTS["tv"], "weight of the mask's total variation (0: off, the recipe's)"),
    }

    def __init__(self, context) -> None:
        super().__init__(context)
        self.decoder = MaskDecoder(
            late_tap_channels(context.classifier, self.name),
            context.num_classes,
            context.front_end.mel_to_linear.detach().cpu(),
        ).to(context.device)
        self.weights = dict(WEIGHTS)

    def state_dict(self) -> dict[str, Any]:
        return {"decoder": self.decoder.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decoder.load_state_dict(state["decoder"])

    def _decided(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, class) pairs the classifier decides, as the runner explains them."""
        if self.context.task is Task.MULTICLASS:
            return torch.arange(len(logits), device=logits.device), logits.argmax(1)
        probs = torch.sigmoid(logits)
        decided = probs >= 0.5
        decided[torch.arange(len(probs), device=probs.device), probs.argmax(1)] = (
            True  # at least one per clip
        )
        return torch.nonzero(decided, as_tuple=True)

    def masks(self, batch: AudioBatch, rows: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Masks ``(N, F, T)`` in [0, 1] for the given (row, class) pairs."""
        logmel = batch.logmel
        with torch.no_grad():
            _, taps = self.context.classifier.forward_with_taps(logmel)
        return torch.sigmoid(self.decoder(taps, logmel.shape[2], logmel.shape[3], rows, classes))

    def _objective(self, batch: AudioBatch):
        """The L-MAC objective of a batch on the classes the classifier decides, with its
        terms, the classifier's logits and the decided rows."""
        with torch.no_grad():
            logits = self.context.classifier(batch.logmel)
        rows, classes = self._decided(logits)
        loss, terms = lmac_loss(
            self.context.classifier,
            self.context.front_end,
            batch.magnitude[rows],
            self.masks(batch, rows, classes),
            classes,
            self.context.task,
            self.weights,
        )
        return loss, terms, logits[rows]

    def _step_loss(self, batch: AudioBatch) -> torch.Tensor:
        return self._objective(batch)[0]

    def _validate(self, valid, batch_size: int) -> tuple[float, float]:
        """(input fidelity, mean loss) on the validation split."""
        kept_top, total, losses = 0, 0, []
        self.decoder.eval()
        with torch.no_grad():
            for batch in valid.batches(batch_size):
                loss, terms, logits = self._objective(batch)
                rows = logits.shape[0]
                kept_top += int((terms["logits_in"].argmax(1) == logits.argmax(1)).sum())
                total += rows
                losses.append(float(loss) * rows)
        return kept_top / max(total, 1), sum(losses) / max(total, 1)

    def fit(self, train, valid) -> dict[str, Any]:
        ctx = self.context
        epochs = int(ctx.option("epochs"))
        lr = float(ctx.option("lr"))
        batch_size = int(ctx.option("batch_size"))
        self.weights = {
            "l_in": float(ctx.option("l_in")),
            "l_out": float(ctx.option("l_out")),
            "l1": float(ctx.option("l1")),
            "tv": float(ctx.option("tv")),
        }
        if len(train) == 0:
            raise BenchError(
                "lmac cannot train: the training split is empty",
                "check the dataset's split (lmac learns from training clips)",
            )
        optimiser = torch.optim.Adam(self.decoder.parameters(), lr=lr, weight_decay=2e-6)
        best, best_epoch, best_state, history = (-1.0, math.inf), -1, None, []
        with frozen(ctx.classifier):
            for epoch in tqdm(
                range(epochs), desc="lmac epochs", unit="epoch", disable=not ctx.show_progress
            ):
                self.decoder.train()
                for batch in train.batches(batch_size, shuffle=True, seed=ctx.seed + epoch):
                    loss = self._step_loss(batch)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                if len(valid) > 0:
                    fidelity, loss = self._validate(valid, batch_size)
                    history.append([fidelity, loss])
                    if (fidelity, -loss) > (best[0], -best[1]):
                        best, best_epoch = (fidelity, loss), epoch
                        best_state = copy.deepcopy(self.decoder.state_dict())
        if best_state is not None:
            self.decoder.load_state_dict(best_state)
        self.decoder.eval()
        return {
            "epochs": epochs,
            "lr": lr,
            "weights": dict(self.weights),
            "selection": "best validation input fidelity, then loss"
            if best_state is not None
            else "last epoch (validation split empty)",
            "best_epoch": best_epoch + 1 if best_state is not None else epochs,
            "valid_input_fidelity": best[0] if best_state is not None else math.nan,
            "valid_history": history,
        }

    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        self.decoder.eval()
        classes = classes.to(batch.spec.device).long()
        with torch.no_grad():
            mask = self.masks(batch, torch.arange(len(batch), device=classes.device), classes)
        return Explanation(mask=mask.clamp(0.0, 1.0), mask_domain=MaskDomain.LOG1P)


@hookimpl
def register_explainers(register):
    register(LmacExplainer)
