"""What the mask-based metrics share: the rows they score, classifier calls on perturbed
inputs, row keys.

Rows come in sets (:class:`RowSet`): the test clips the cell explained (the published
number), and, for the reference explainers on datasets with stems, the mixture rows of
each condition set that the classifier decides for their target (the ground-truth
metric's rows). The mixture rows are where the references differ in substance (the
anti-oracle points at a competing event or at noise, not at near-silence), so the metric
validity check (:mod:`l2i_bench.validity`) rests on them; their values are kept per row
under ``<column>@<set>`` and never enter the published test-set number. Contenders are
not scored there: it would add two thirds to every cell's metric time for numbers no
table publishes.

Every perturbed input goes through :meth:`FrontEnd.logmel_of_masked` with the operator
of the explanation's own mask domain (:mod:`l2i_bench.perturb`: keep or remove, linear
or ``log1p``), resynthesised with the input phase as a listener would hear it, and the
classifier runs in batches on the run's device. The masked-in pass is reused by the two
L-MAC metrics through a one-slot cache keyed on the evaluation object (held by weak
reference, so the cache never keeps a finished cell's tensors alive).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from l2i_bench import perturb, scores
from l2i_bench.types import Evaluation, ExplanationSet, MaskDomain, RowValues

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


def clip_keys(evaluation: Evaluation) -> list[str]:
    """``"test/<clip_id>/<classifier's top class>"`` per test clip: the row identity of
    the per-clip columns (fidelity, classifier accuracy) of a multiclass dataset, equal
    to :func:`row_keys` there, since the explained row of a clip is its top class."""
    top = evaluation.classifier_logits.argmax(dim=1).tolist()
    return [f"test/{c}/{int(k)}" for c, k in zip(evaluation.test.clip_ids, top, strict=True)]


@dataclass
class RowSet:
    """Explained rows of one evaluation set, as the mask metrics score them."""

    name: str  # "test" or a condition set's name
    keys: list[str]
    source: torch.Tensor  # (N, F, T) complex STFT of the set's clips
    rows: torch.Tensor  # (R,) index into ``source``
    classes: torch.Tensor  # (R,) class explained
    mask: torch.Tensor  # (R, F, T)
    mask_domain: MaskDomain
    logits: torch.Tensor  # (R, C) classifier logits on the unmodified clips

    def __len__(self) -> int:
        return len(self.rows)

    def specs(self) -> torch.Tensor:
        """The input STFT of every row ``(R, F, T)``."""
        return self.source[self.rows.long().cpu()]

    def column(self, name: str) -> str:
        """Where this set's row values of a column are kept: the column itself for the
        test set (the published number), ``<column>@<set>`` for the others."""
        return name if self.name == "test" else f"{name}@{self.name}"

    def values(self, name: str, values, summary: str = "mean") -> tuple[str, RowValues]:
        return self.column(name), RowValues.of(self.keys, values, summary)


def row_sets(evaluation: Evaluation, *, conditions: bool = True) -> Iterator[RowSet]:
    """The test set's explained rows, then, for a reference explainer, each condition
    set's scored rows (labelled target, decided by the classifier: the ground-truth
    metric's rows)."""
    ex = evaluation.explanations
    rows = ex.rows.long().cpu()
    yield RowSet(
        "test",
        row_keys(evaluation),
        evaluation.test.spec,
        rows,
        ex.classes.long().cpu(),
        ex.mask,
        MaskDomain(ex.mask_domain),
        evaluation.classifier_logits[rows].float(),
    )
    if not (conditions and evaluation.explainer_is_reference):
        return
    for name, cond in evaluation.conditions.items():
        cx = cond.explanations
        crow, ccls = cx.rows.long().cpu(), cx.classes.long().cpu()
        decided = scores.classifier_decisions(
            cond.classifier_logits, evaluation.task, evaluation.decision_thresholds
        )[crow, ccls]
        keep = decided & (cond.batch.targets[crow, ccls] > 0)
        if not keep.any():
            continue
        keys = [
            k for k, good in zip(row_keys(evaluation, name), keep.tolist(), strict=True) if good
        ]
        yield RowSet(
            name,
            keys,
            cond.batch.spec,
            crow[keep],
            ccls[keep],
            cx.mask[keep],
            MaskDomain(cx.mask_domain),
            cond.classifier_logits[crow[keep]].float(),
        )


def chunks(
    rows: torch.Tensor, source: torch.Tensor, device: torch.device
) -> Iterator[tuple[slice, perturb.Spectra]]:
    """``(slice, Spectra)`` per :data:`CHUNK` rows: the rows' STFTs on the device, with
    their magnitudes and baselines computed once for every perturbation of the chunk."""
    for start in range(0, len(rows), CHUNK):
        sel = slice(start, start + CHUNK)
        yield sel, perturb.Spectra(source[rows[sel].long().cpu()].to(device))


def perturbed_logits(
    evaluation: Evaluation,
    spectra: perturb.Spectra,
    masks: torch.Tensor,
    *,
    domain: MaskDomain | str = MaskDomain.LINEAR,
    remove: bool = False,
    baseline: str = perturb.SILENCE,
) -> torch.Tensor:
    """Classifier logits ``(R, C)`` (CPU float32) on the rows of ``spectra`` with
    ``masks`` kept (or removed) by the operator of ``domain`` towards ``baseline``,
    resynthesised and re-featurised."""
    length = evaluation.test.waveform.shape[-1]
    with torch.no_grad():
        logmel = evaluation.front_end.logmel_of_masked(
            spectra, masks, length, domain, remove=remove, baseline=baseline
        )
    return evaluation.classifier_logits_of(logmel)


def masked_logits(
    evaluation: Evaluation,
    masks: torch.Tensor,
    rows: torch.Tensor,
    *,
    domain: MaskDomain | str = MaskDomain.LINEAR,
    remove: bool = False,
    baseline: str = perturb.SILENCE,
    desc: str = "",
    spec: torch.Tensor | None = None,
) -> torch.Tensor:
    """Classifier logits ``(R, C)`` on the input ``spec[rows[i]]`` with ``masks[i]``
    kept (or removed), by the operator of ``domain`` towards ``baseline`` (CPU float32).

    ``spec`` defaults to the test batch's STFT (all sets share the clip length).
    """
    source = evaluation.test.spec if spec is None else spec
    show = evaluation.show_progress and bool(desc) and len(rows) > 4 * CHUNK
    outs = [
        perturbed_logits(
            evaluation, spectra, masks[sel], domain=domain, remove=remove, baseline=baseline
        )
        for sel, spectra in tqdm(
            chunks(rows, source, evaluation.device),
            total=-(-len(rows) // CHUNK),
            desc=desc,
            unit="batch",
            disable=not show,
            leave=False,
        )
    ]
    if not outs:
        return torch.empty(0, len(evaluation.class_names))
    return torch.cat(outs)


def set_logits(
    evaluation: Evaluation,
    rowset: RowSet,
    masks: torch.Tensor | None = None,
    *,
    domain: MaskDomain | str | None = None,
    remove: bool = False,
    baseline: str = perturb.SILENCE,
    desc: str = "",
) -> torch.Tensor:
    """Logits of a row set's inputs with ``masks`` (default: its explanations, in their
    own domain) kept or removed."""
    return masked_logits(
        evaluation,
        rowset.mask if masks is None else masks,
        rowset.rows,
        domain=rowset.mask_domain if domain is None else domain,
        remove=remove,
        baseline=baseline,
        desc=desc,
        spec=rowset.source,
    )


def masked_in_logits(evaluation: Evaluation, rowset: RowSet) -> torch.Tensor:
    """Logits on the kept input of every row of a set (cached per evaluation and set)."""
    hit = _masked_in_cache.get(rowset.name)
    if hit is not None and hit[0]() is evaluation:
        return hit[1]
    logits = set_logits(evaluation, rowset, desc=f"masked-in {rowset.name}")
    _masked_in_cache[rowset.name] = (weakref.ref(evaluation), logits)
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
