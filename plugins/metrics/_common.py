"""What the mask-based metrics share: classifier calls on perturbed inputs, row keys.

Every perturbed input goes through :meth:`FrontEnd.logmel_of_masked` with the operator
of the explanation's own mask domain (:mod:`l2i_bench.perturb`: keep or remove, linear
or ``log1p``), resynthesised with the input phase as a listener would hear it, and the
classifier runs in batches on the run's device. The masked-in pass is reused by the two
L-MAC metrics through a one-slot cache keyed on the evaluation object (held by weak
reference, so the cache never keeps a finished cell's tensors alive).
"""

from __future__ import annotations

import weakref

import torch
from tqdm.auto import tqdm

from l2i_bench.types import Evaluation, ExplanationSet, MaskDomain

CHUNK = 32
"""Rows resynthesised and classified at once: bounds memory at 5-10 s clips."""

_masked_in_cache: dict[str, tuple[weakref.ref, torch.Tensor]] = {}


def operator_variant(domain: MaskDomain | str, remove: bool) -> str:
    """How a column's input was perturbed, for its ``variant`` text."""
    domain = MaskDomain(domain)
    if domain is MaskDomain.LOG1P:
        return "expm1((1-M)log1p|X|)" if remove else "expm1(M log1p|X|)"
    return "(1-M)|X|" if remove else "M|X|"


def row_keys(evaluation: Evaluation, set_name: str = "test") -> list[str]:
    """``"<set>/<clip_id>/<class>"`` per explained row: the identity that pairs rows
    across explainers of a fold (metric validity, significance, audits)."""
    if set_name == "test":
        ex, clip_ids = evaluation.explanations, evaluation.test.clip_ids
    else:
        cond = evaluation.conditions[set_name]
        ex, clip_ids = cond.explanations, cond.batch.clip_ids
    return [
        f"{set_name}/{clip_ids[int(r)]}/{int(c)}"
        for r, c in zip(ex.rows.tolist(), ex.classes.tolist(), strict=True)
    ]


def masked_logits(
    evaluation: Evaluation,
    masks: torch.Tensor,
    rows: torch.Tensor,
    *,
    domain: MaskDomain | str = MaskDomain.LINEAR,
    remove: bool = False,
    desc: str = "",
    spec: torch.Tensor | None = None,
) -> torch.Tensor:
    """Classifier logits ``(R, C)`` on the input ``spec[rows[i]]`` with ``masks[i]``
    kept (or removed), by the operator of ``domain`` (CPU float32).

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
                source[idx], masks[start : start + CHUNK], length, domain, remove=remove
            )
        outs.append(evaluation.classifier_logits_of(logmel, batch_size=CHUNK))
    if not outs:
        return torch.empty(0, len(evaluation.class_names))
    return torch.cat(outs)


def masked_in_logits(evaluation: Evaluation) -> torch.Tensor:
    """Logits on the kept input of every explained row (cached)."""
    hit = _masked_in_cache.get("in")
    if hit is not None and hit[0]() is evaluation:
        return hit[1]
    ex = evaluation.explanations
    logits = masked_logits(evaluation, ex.mask, ex.rows, domain=ex.mask_domain, desc="masked-in")
    _masked_in_cache["in"] = (weakref.ref(evaluation), logits)
    return logits


def row_specs(evaluation: Evaluation, explanations: ExplanationSet | None = None) -> torch.Tensor:
    """The input STFT of every explained row ``(R, F, T)``."""
    ex = evaluation.explanations if explanations is None else explanations
    return evaluation.test.spec[ex.rows.long().cpu()]


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
