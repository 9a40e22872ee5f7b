"""What the mask-based metrics share: classifier calls on masked inputs.

Every masked input goes through :meth:`FrontEnd.logmel_of_masked` (waveform
resynthesis with the input phase, then features), as a listener would hear it, and
the classifier runs in batches on the run's device. The masked-in pass is reused by
the two L-MAC metrics through a one-slot cache keyed on the evaluation object (held
by weak reference, so the cache never keeps a finished cell's tensors alive).
"""

from __future__ import annotations

import weakref

import torch
from tqdm.auto import tqdm

from l2i_bench.types import Evaluation

CHUNK = 32
"""Rows resynthesised and classified at once: bounds memory at 5-10 s clips."""

_masked_in_cache: dict[str, tuple[weakref.ref, torch.Tensor]] = {}


def masked_logits(
    evaluation: Evaluation,
    masks: torch.Tensor,
    rows: torch.Tensor,
    *,
    desc: str = "",
    spec: torch.Tensor | None = None,
) -> torch.Tensor:
    """Classifier logits ``(R, C)`` on ``istft(masks[i] * spec[rows[i]])`` (CPU float32).

    ``spec`` defaults to the test batch's STFT (all sets share the clip length).
    """
    source = evaluation.test.spec if spec is None else spec
    length = evaluation.test.waveform.shape[-1]
    outs = []
    starts = range(0, len(rows), CHUNK)
    show = bool(desc) and len(rows) > 4 * CHUNK
    for start in tqdm(starts, desc=desc, unit="batch", disable=not show, leave=False):
        idx = rows[start : start + CHUNK].long().cpu()
        with torch.no_grad():
            logmel = evaluation.front_end.logmel_of_masked(
                source[idx], masks[start : start + CHUNK], length
            )
        outs.append(evaluation.classifier_logits_of(logmel, batch_size=CHUNK))
    if not outs:
        return torch.empty(0, len(evaluation.class_names))
    return torch.cat(outs)


def masked_in_logits(evaluation: Evaluation) -> torch.Tensor:
    """Logits on the masked-in inputs ``M * X`` of every explained row (cached)."""
    hit = _masked_in_cache.get("in")
    if hit is not None and hit[0]() is evaluation:
        return hit[1]
    ex = evaluation.explanations
    logits = masked_logits(evaluation, ex.mask, ex.rows, desc="masked-in")
    _masked_in_cache["in"] = (weakref.ref(evaluation), logits)
    return logits


def probabilities(evaluation: Evaluation, logits: torch.Tensor) -> torch.Tensor:
    """The classifier's own output probabilities (softmax or sigmoid, applied once)."""
    with torch.no_grad():
        return evaluation.classifier.probabilities(logits.to(evaluation.device)).float().cpu()


def explained(values: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Column ``classes[i]`` of row ``i``: the explained class's value."""
    return values.gather(1, classes.long().cpu()[:, None])[:, 0]


def original_logits(evaluation: Evaluation) -> torch.Tensor:
    """The classifier's logits on the unmodified clip of every explained row."""
    return evaluation.classifier_logits[evaluation.explanations.rows.long().cpu()].float()


def silence_logits(evaluation: Evaluation) -> torch.Tensor:
    """Logits ``(1, C)`` on a silent clip (every bin removed): a curve endpoint."""
    length = evaluation.test.waveform.shape[-1]
    with torch.no_grad():
        logmel = evaluation.front_end.logmel(torch.zeros(1, length))
    return evaluation.classifier_logits_of(logmel)
