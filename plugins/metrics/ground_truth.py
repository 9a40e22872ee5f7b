"""Ground-truth localisation on condition sets with stems (synth's overlap and noise).

The mixture ``X = S_t + S_i`` is known stem by stem, so each bin's energy can be
attributed: the oracle ratio ``rho = |S_t|^2 / (|S_t|^2 + |S_i|^2)`` on the STFT is the
target's share. An interpretation keeps the magnitude given by the operator of its own
mask domain (:func:`l2i_bench.perturb.kept_magnitude`), i.e. energy ``E = G^2 |X|^2``
with ``G`` the equivalent linear gain.

Two families of scores, because thresholded ones move with how much a mask keeps:

* **Threshold-free** (do not depend on coverage): the mask's values ranked against the
  target-dominant bins (``rho > 0.5``), every bin weighted by its energy ``|X|^2`` so
  silent bins do not decide: energy-weighted ROC AUC (0.5 = chance, whatever the mask
  keeps) and average precision, whose chance level is the mixture's target share; hence
  ``gt_ap_lift`` = AP minus that share.
* **Energy precision/recall** of what is kept, shown beside ``gt_coverage`` (share of
  the mixture's energy kept): precision = share of the kept energy that is target,
  ``sum(rho E) / sum(E)``; recall = share of the target's energy kept. A keep-everything
  mask has recall 1 and precision = the target share, so ``gt_precision_lift`` =
  precision minus the mixture's target share, per row.

Only rows that explain a labelled class of the mixture (the target stem's) *and that the
classifier decides for* (its top-1 for multiclass, above its decision threshold for
multilabel) are scored: the paper's protocol (appendix A.5.1). The question an
interpretation answers on a corrupted clip is "did the classifier decide because it
heard the target?", which has a ground truth only when it did decide so. Every column's
``n`` is the number of rows its value rests on (``gt_scored_{cond}`` repeats it).
Cost: one STFT of each stem per row, and two weighted rankings of the ``F x T`` bins.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from l2i_bench import perturb, scores
from l2i_bench.magnitude import complex_magnitude
from l2i_bench.types import Column, ConditionSet, Direction, Evaluation, Metric, RowValues

from . import _common

CONDITIONS: tuple[str, ...] = ("overlap", "noise")
"""Condition sets the columns are declared for (synth's); others are ignored."""

STEMS = ("target", "interference")
CHUNK = 32
DOMINANT = 0.5
"""A bin is the target's when the target holds more than this share of its energy."""


def decided(evaluation: Evaluation, condition: ConditionSet) -> torch.Tensor:
    """Boolean per explained row: the classifier decides the row's class on the clip."""
    ex = condition.explanations
    decisions = scores.classifier_decisions(
        condition.classifier_logits, evaluation.task, evaluation.decision_thresholds
    )
    return decisions[ex.rows.long().cpu(), ex.classes.long().cpu()]


def weighted_ranking_scores(
    mask: torch.Tensor, positive: torch.Tensor, weight: torch.Tensor
) -> tuple[float, float]:
    """Energy-weighted ROC AUC and average precision of one row's mask values ``(F, T)``
    against the boolean ``positive`` bins, each bin weighted by ``weight``; NaN when a
    class (positive or negative energy) is absent."""
    y = positive.flatten().cpu().numpy()
    w = weight.flatten().double().cpu().numpy()
    s = mask.flatten().double().cpu().numpy()
    keep = w > 0
    y, w, s = y[keep], w[keep], s[keep]
    if y.all() or not y.any():
        return float("nan"), float("nan")
    return (
        float(roc_auc_score(y, s, sample_weight=w)),
        float(average_precision_score(y, s, sample_weight=w)),
    )


def localisation_rows(
    condition: ConditionSet, front_end, scored: torch.Tensor
) -> tuple[list[int], dict[str, np.ndarray]]:
    """Per scored row of one condition set (labelled rows among ``scored``): its index
    in the explanation set and each localisation score."""
    ex = condition.explanations
    rows = ex.rows.long().cpu()
    labelled = (condition.batch.targets[rows, ex.classes.long().cpu()] > 0) & scored
    picked: list[int] = []
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("precision", "recall", "lift", "coverage", "auroc", "ap", "ap_lift")
    }
    for start in range(0, len(rows), CHUNK):
        sel = torch.arange(start, min(start + CHUNK, len(rows)))
        sel = sel[labelled[sel]]
        if len(sel) == 0:
            continue
        idx = rows[sel]
        with torch.no_grad():
            ratio = scores.oracle_ratio_mask(
                front_end.stft(condition.stems["target"][idx].float()),
                front_end.stft(condition.stems["interference"][idx].float()),
            ).cpu()
            mix = condition.batch.spec[idx].cpu()
            mask = ex.mask[sel].cpu()
            magnitude = complex_magnitude(mix)
            gain = perturb.linear_gain(magnitude, mask, ex.mask_domain)
            p, r = scores.energy_precision_recall(gain, mix, ratio)
            power = magnitude.double().square()
            share = (ratio.double() * power).flatten(1).sum(1) / power.flatten(1).sum(1)
            cov = perturb.coverage(mix, mask, ex.mask_domain)
        ranked = [
            weighted_ranking_scores(mask[i], ratio[i] > DOMINANT, power[i]) for i in range(len(sel))
        ]
        auroc = np.array([a for a, _ in ranked])
        ap = np.array([b for _, b in ranked])
        # AP's chance level: the energy share of the target-dominant bins.
        dominant_share = ((ratio > DOMINANT).double() * power).flatten(1).sum(1) / power.flatten(
            1
        ).sum(1)
        picked.extend(sel.tolist())
        parts["precision"].append(p.numpy())
        parts["recall"].append(r.numpy())
        parts["lift"].append((p - share).numpy())
        parts["coverage"].append(cov.numpy())
        parts["auroc"].append(auroc)
        parts["ap"].append(ap)
        parts["ap_lift"].append(ap - dominant_share.numpy())
    return picked, {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}


def _columns(cond: str) -> tuple[Column, ...]:
    where = f"{cond} set, rows the classifier decides for the target"
    return (
        Column(
            f"gt_auroc_{cond}",
            Direction.HIGHER,
            "AUC",
            f"{where}: ROC AUC of mask values vs target-dominant bins (rho > 0.5), bins "
            "weighted by |X|^2; 0.5 = chance at any coverage; row mean",
        ),
        Column(
            f"gt_ap_lift_{cond}",
            Direction.HIGHER,
            "AP",
            f"{where}: energy-weighted average precision of mask values vs target-dominant "
            "bins, minus its chance level (their energy share); row mean",
        ),
        Column(
            f"gt_precision_{cond}",
            Direction.HIGHER,
            "energy share",
            f"{where}: sum(rho E)/sum(E), E = kept energy by the mask's operator; row mean",
        ),
        Column(
            f"gt_precision_lift_{cond}",
            Direction.HIGHER,
            "energy share",
            f"{where}: precision minus the mixture's target energy share (a random or "
            "keep-all mask scores about 0); row mean",
        ),
        Column(
            f"gt_recall_{cond}",
            Direction.HIGHER,
            "energy share",
            f"{where}: sum(rho E)/sum(rho |X|^2); rises with coverage (keep-all = 1), read "
            f"beside gt_coverage_{cond}; row mean",
        ),
        Column(
            f"gt_coverage_{cond}",
            Direction.NEUTRAL,
            "energy share",
            f"{where}: share of the mixture's energy the interpretation keeps; row mean",
        ),
        Column(
            f"gt_scored_{cond}",
            Direction.NEUTRAL,
            "rows",
            f"{cond} set: rows scored (target class, and the classifier decides it)",
            meta_evaluated=False,
        ),
    )


class GroundTruthLocalisation(Metric):
    name = "ground_truth"
    description = "Where the interpretation is, against the target stem (threshold-free and energy)"
    reference = "l2i-bench (synth stems); oracle ratio mask as in source-separation evaluation"
    version = "2"
    columns = tuple(col for cond in CONDITIONS for col in _columns(cond))

    def not_applicable(self, evaluation: Evaluation) -> str | None:
        reason = super().not_applicable(evaluation)
        if reason is None and not any(
            all(s in evaluation.conditions[c].stems for s in STEMS)
            for c in CONDITIONS
            if c in evaluation.conditions
        ):
            return f"dataset has no condition sets with target/interference stems ({CONDITIONS})"
        return reason

    def compute(self, evaluation: Evaluation) -> dict[str, float | RowValues]:
        out: dict[str, float | RowValues] = {}
        for cond in CONDITIONS:
            names = [c.name for c in _columns(cond)]
            condition = evaluation.conditions.get(cond)
            if condition is None or any(s not in condition.stems for s in STEMS):
                out.update({name: float("nan") for name in names})
                continue
            picked, values = localisation_rows(
                condition, evaluation.front_end, decided(evaluation, condition)
            )
            keys = _common.row_keys(evaluation, cond)
            keys = [keys[i] for i in picked]
            for column, part in (
                ("auroc", "auroc"),
                ("ap_lift", "ap_lift"),
                ("precision", "precision"),
                ("precision_lift", "lift"),
                ("recall", "recall"),
                ("coverage", "coverage"),
            ):
                out[f"gt_{column}_{cond}"] = RowValues.of(keys, values[part])
            out[f"gt_scored_{cond}"] = float(len(picked))
        return out
