"""Ground-truth localisation on condition sets with stems (synth's overlap and noise).

The mixture ``X = S_t + S_i`` is known stem by stem, so each bin's energy can be
attributed: the oracle ratio ``rho = |S_t|^2 / (|S_t|^2 + |S_i|^2)`` on the STFT is the
target's share. An interpretation keeps energy ``M^2 |X|^2`` (masks are linear-magnitude
gains). Precision = share of the kept energy that is target; recall = share of the
target's energy (``rho |X|^2``) that is kept (:func:`l2i_bench.scores.energy_precision_recall`).
Only rows that explain a labelled class of the mixture (the target stem's) *and that the
classifier decides for* (its top-1 for multiclass, above its decision threshold for
multilabel) are scored. This is the paper's protocol (appendix A.5.1): the question an
interpretation answers on a corrupted clip is "did the classifier decide because it
heard the target?", which has a ground truth only when it did decide so; explaining a
class the classifier did not hear asks the explainer for evidence that is not there
(misclassifications are A.5.2's separate analysis). ``gt_scored_{cond}`` says how many
rows that left, so a mean over a handful of rows is read as such. Per-row values are
averaged; rows whose mask keeps nothing are left out of precision.
"""

from __future__ import annotations

import numpy as np
import torch

from l2i_bench import scores
from l2i_bench.types import Column, ConditionSet, Direction, Evaluation, Metric

CONDITIONS: tuple[str, ...] = ("overlap", "noise")
"""Condition sets the columns are declared for (synth's); others are ignored."""

STEMS = ("target", "interference")
CHUNK = 32


def decided(evaluation: Evaluation, condition: ConditionSet) -> torch.Tensor:
    """Boolean per explained row: the classifier decides the row's class on the clip."""
    ex = condition.explanations
    decisions = scores.classifier_decisions(
        condition.classifier_logits, evaluation.task, evaluation.decision_thresholds
    )
    return decisions[ex.rows.long().cpu(), ex.classes.long().cpu()]


def localisation(
    condition: ConditionSet, front_end, scored: torch.Tensor
) -> tuple[float, float, int]:
    """Mean energy precision and recall of one condition set's explanations, over the
    labelled rows among ``scored``, and how many rows that was."""
    missing = [s for s in STEMS if s not in condition.stems]
    if missing:
        return float("nan"), float("nan"), 0
    ex = condition.explanations
    rows = ex.rows.long().cpu()
    labelled = (condition.batch.targets[rows, ex.classes.long().cpu()] > 0) & scored
    precisions, recalls = [], []
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
            )
            mix = condition.batch.spec[idx].to(ratio.device)
            p, r = scores.energy_precision_recall(ex.mask[sel].to(ratio.device), mix, ratio)
        precisions.append(p.cpu())
        recalls.append(r.cpu())
    if not precisions:
        return float("nan"), float("nan"), 0
    p_all, r_all = torch.cat(precisions).numpy(), torch.cat(recalls).numpy()
    precision = float(np.nanmean(p_all)) if np.isfinite(p_all).any() else float("nan")
    return precision, float(np.mean(r_all)), len(r_all)


class GroundTruthLocalisation(Metric):
    name = "ground_truth"
    description = "Share of the interpretation's energy that is the target stem, and vice versa"
    reference = "l2i-bench (synth stems); oracle ratio mask as in source-separation evaluation"
    columns = tuple(
        col
        for cond in CONDITIONS
        for col in (
            Column(
                f"gt_precision_{cond}",
                Direction.HIGHER,
                "energy share",
                f"{cond} set: sum(rho M^2|X|^2)/sum(M^2|X|^2), rho = oracle ratio mask; row mean",
            ),
            Column(
                f"gt_recall_{cond}",
                Direction.HIGHER,
                "energy share",
                f"{cond} set: sum(rho M^2|X|^2)/sum(rho |X|^2), rho = oracle ratio mask; row mean",
            ),
            Column(
                f"gt_scored_{cond}",
                Direction.NEUTRAL,
                "rows",
                f"{cond} set: rows scored (target class, and the classifier decides it)",
            ),
        )
    )

    def not_applicable(self, evaluation: Evaluation) -> str | None:
        reason = super().not_applicable(evaluation)
        if reason is None and not any(
            all(s in evaluation.conditions[c].stems for s in STEMS)
            for c in CONDITIONS
            if c in evaluation.conditions
        ):
            return f"dataset has no condition sets with target/interference stems ({CONDITIONS})"
        return reason

    def compute(self, evaluation: Evaluation) -> dict[str, float]:
        out: dict[str, float] = {}
        for cond in CONDITIONS:
            p, r, n = float("nan"), float("nan"), 0
            if cond in evaluation.conditions:
                condition = evaluation.conditions[cond]
                p, r, n = localisation(
                    condition, evaluation.front_end, decided(evaluation, condition)
                )
            out[f"gt_precision_{cond}"], out[f"gt_recall_{cond}"] = p, r
            out[f"gt_scored_{cond}"] = float(n) if cond in evaluation.conditions else float("nan")
        return out
