"""Pure scoring functions: one definition per score, no plugin machinery.

The metric plugins (:mod:`l2i_bench.plugins.metrics`) and the runner's classifier
report both call these, so a number printed anywhere in the suite has exactly one
implementation. Inputs may be torch tensors or numpy arrays; ranking and AUPRC work
in float64 numpy (small ``(N, C)`` arrays), mask statistics stay in torch (large
``(R, F, T)`` arrays, possibly on the GPU).

Two AUPRC definitions are in use for multilabel audio tagging and they disagree, so
both are here under different names (ecosystem notes §4.2, L2I notes §5.1):

* :func:`dcase_auprc`: DCASE 2020 Task 5 (``sonyc-project/dcase2020task5-uststc-baseline``,
  ``src/metrics.py``). Thresholds are every unique score >= 0.01 plus 1.0; a row is
  positive when ``score >= threshold``; ``P = TP / max(TP + FP, 0.5)``,
  ``R = TP / max(TP + FN, 0.5)``; the points are sorted by recall, ``(R=0, P=1)`` is
  prepended and ``(R=1, P=0)`` appended, and the area is the trapezoid rule. Micro
  pools TP/FP/FN over classes per threshold; macro is the unweighted class mean.
  Where recalls tie, the area depends on which tied point comes first and last; the
  official code lists the points by *decreasing* threshold for a class (macro) and by
  *increasing* threshold for the pooled curve (micro), then sorts them with numpy's
  default, non-stable ``argsort`` (``quicksort``; pandas ``Series.argsort`` for
  macro). We do exactly that, so on tie-heavy scores (rounded probabilities) we give
  the official number. Note that the official number then depends on numpy's sort
  kernel: numpy >= 1.25 on AVX-512 CPUs (x86-simd-sort) orders ties differently from
  its portable introsort, which can move a tie-heavy micro AUPRC by ~1e-3.
* :func:`fixed11_auprc`: the L2I code's ``calc_PRC_metrics``: 11 fixed thresholds
  ``0.95, 0.9, 0.8, ..., 0.1, 0.05``, positive when ``score > threshold``,
  ``P = (TP + 1e-9) / (TP + FP + 1e-9)``, ``R = TP / (TP + FN)``, same padding and
  trapezoid (tied recalls keep decreasing-threshold order). Neither equals
  scikit-learn's ``average_precision_score`` (a step sum without padding).

Classes without a positive target (in the fidelity metric: a class the classifier
never decides) are left out of the macro mean in **both** definitions, and a micro
AUPRC with no positive at all is NaN in both: there is nothing to recall, so no
ranking to score. The L2I code gets 0/0 = NaN there; the official DCASE code has no
value either (sklearn's ``confusion_matrix`` returns a 1x1 matrix for an all-negative
class without a score of 1.0, and its ``cm[0, 1]`` raises), and its ``max(., 0.5)``
guard would give 0, which would punish a surrogate for the classifier never deciding
a class and make the two macro columns average over different classes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from l2i_bench.magnitude import complex_magnitude
from l2i_bench.types import Task

ArrayLike = np.ndarray | torch.Tensor
Average = Literal["micro", "macro"]

DCASE_MIN_THRESHOLD = 0.01
"""DCASE skips scores below this as thresholds (``min_threshold`` in its metrics.py)."""

FIXED11_THRESHOLDS: tuple[float, ...] = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05)
"""The L2I code's thresholds (``calc_PRC_metrics``), in decreasing order."""

GINI_EPS = 1e-7
"""Quantus adds this to every max-normalised value before the Gini index, so all-equal
maps score 0."""


def _np(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_pair(scores: np.ndarray, targets: np.ndarray) -> None:
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(
            f"scores and targets must both be (N, C); got {scores.shape} and {targets.shape}"
        )
    if not np.all(np.isin(targets, (0.0, 1.0))):
        raise ValueError("targets must be binary (0/1)")


# ------------------------------------------------------------------ ranking scores


def top_k_agreement(reference_logits: ArrayLike, candidate_logits: ArrayLike, k: int) -> float:
    """Share of rows whose ``argmax`` of ``reference`` is among the ``k`` largest of
    ``candidate`` (L2I's top-k fidelity: reference = classifier, candidate = surrogate).

    Ties in the candidate are broken by index order (``argsort`` stable), so a constant
    candidate does not get credit for every class.
    """
    hits = top_k_agreement_rows(reference_logits, candidate_logits, k)
    return float(hits.mean()) if hits.size else float("nan")


def top_k_agreement_rows(
    reference_logits: ArrayLike, candidate_logits: ArrayLike, k: int
) -> np.ndarray:
    """Per row, 1.0 if the reference's argmax is among the candidate's ``k`` largest
    logits, else 0.0: the rows behind :func:`top_k_agreement` (their mean)."""
    ref = _np(reference_logits)
    cand = _np(candidate_logits)
    if ref.shape != cand.shape or ref.ndim != 2:
        raise ValueError(f"logits must both be (N, C); got {ref.shape} and {cand.shape}")
    return top_k_accuracy_rows(cand, ref.argmax(axis=1), k)


def top_k_accuracy(logits: ArrayLike, labels: ArrayLike, k: int) -> float:
    """Share of rows whose label (``(N,)`` class index) is among the ``k`` top logits."""
    hits = top_k_accuracy_rows(logits, labels, k)
    return float(hits.mean()) if hits.size else float("nan")


def top_k_accuracy_rows(logits: ArrayLike, labels: ArrayLike, k: int) -> np.ndarray:
    """Per row, 1.0 if its label is among the ``k`` top logits (ties broken by index
    order), else 0.0: the rows behind :func:`top_k_accuracy`."""
    scores = _np(logits)
    lab = _np(labels).astype(np.int64)
    top = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]
    return (top == lab[:, None]).any(axis=1).astype(np.float64)


# ------------------------------------------------------------------------- AUPRC


def _trapezoid(recall: np.ndarray, precision: np.ndarray) -> float:
    return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2.0))


def _padded_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under (R, P) points listed in decreasing-threshold order, sorted by recall
    (stable: equal recalls keep decreasing-threshold order), padded with (0, 1) and
    (1, 0). The fixed-11 (L2I) curve."""
    order = np.argsort(recall, kind="stable")
    r = np.concatenate([[0.0], recall[order], [1.0]])
    p = np.concatenate([[1.0], precision[order], [0.0]])
    return _trapezoid(r, p)


def _official_dcase_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area as DCASE's metrics.py computes it from points in the order it lists them:
    numpy's default (``quicksort``, not stable) ``argsort`` of the recalls, the same
    padding, trapezoid (``sklearn.metrics.auc`` on ascending recalls)."""
    order = np.argsort(recall)  # default kind on purpose: the official tie order
    r = np.concatenate([[0.0], recall[order], [1.0]])
    p = np.concatenate([[1.0], precision[order], [0.0]])
    return _trapezoid(r, p)


def _counts_at(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray, strict: bool):
    """TP, FP, FN of ``scores >= t`` (or ``> t`` when ``strict``) for each threshold."""
    order = np.argsort(-scores, kind="stable")
    desc = scores[order]
    cum_tp = np.concatenate([[0.0], np.cumsum(targets[order])])
    # Number of scores >= t (or > t): position in the ascending view of -desc.
    side = "left" if strict else "right"
    n_pos = np.searchsorted(-desc, -thresholds, side=side)
    tp = cum_tp[n_pos]
    fp = n_pos - tp
    fn = targets.sum() - tp
    return tp, fp, fn


def _dcase_thresholds(scores: np.ndarray) -> np.ndarray:
    kept = scores[scores >= DCASE_MIN_THRESHOLD]
    return np.unique(np.append(kept, 1.0))[::-1]


def _dcase_area(scores: np.ndarray, targets: np.ndarray, ascending: bool) -> float:
    """One DCASE curve of ``scores`` (1-D; pooled pairs for micro). ``ascending`` lists
    the points by increasing threshold before the sort, as the official micro code
    does (its macro code lists them by decreasing threshold). NaN without positives."""
    if not targets.any():
        return float("nan")
    thresholds = _dcase_thresholds(scores)
    if ascending:
        thresholds = thresholds[::-1]
    tp, fp, fn = _counts_at(scores, targets, thresholds, strict=False)
    precision = tp / np.maximum(tp + fp, 0.5)
    recall = tp / np.maximum(tp + fn, 0.5)
    return _official_dcase_area(recall, precision)


def _mean_over_defined(areas: list[float]) -> float:
    """Macro mean over the classes with a positive target (NaN when there is none)."""
    arr = np.asarray(areas, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def dcase_auprc(scores: ArrayLike, targets: ArrayLike, average: Average = "macro") -> float:
    """AUPRC as DCASE 2020 Task 5 defines it (see the module docstring).

    ``scores`` are probabilities in [0, 1], ``targets`` binary, both ``(N, C)``.
    Micro-averaging pools every (clip, class) pair: DCASE's per-threshold sum of
    TP/FP/FN over classes on the union of the class thresholds is exactly the binary
    curve of the pooled pairs; its points are listed by increasing threshold before
    the (non-stable) recall sort, the class curves by decreasing threshold, as in the
    official code, so tied recalls are ordered as there. On a class curve (macro) a
    perfect ranking with distinct scores below 1 scores ``1 - 1/(2 P)`` with ``P``
    positives, not 1, because the 1.0 threshold adds the point (R=0, P=0); when all
    positives share one score the first step is a single trapezoid from (0, 0), so a
    perfect but tied ranking scores as low as 0.5. The pooled (micro) curve of the
    same perfect ranking scores lower still: every threshold below the last positive
    ties at R = 1, and the official increasing-threshold listing lets a point with
    negatives come first in that run (one class, 10 positives, 25 negatives: 0.915
    instead of 0.95 on numpy 2.4 with AVX-512).

    A class without a positive target is left out of the macro mean (as in
    :func:`fixed11_auprc`; the official code has no value for it, see the module
    docstring), and the result is NaN when no class has one (micro: no positive pair).
    """
    s, t = _np(scores), _np(targets)
    _check_pair(s, t)
    if s.size and (s.min() < 0.0 or s.max() > 1.0):
        raise ValueError("DCASE AUPRC needs probabilities in [0, 1]")
    if average == "micro":
        return _dcase_area(s.ravel(), t.ravel(), ascending=True)
    if average == "macro":
        return _mean_over_defined(
            [_dcase_area(s[:, c], t[:, c], ascending=False) for c in range(s.shape[1])]
        )
    raise ValueError(f"average must be 'micro' or 'macro', not {average!r}")


def _fixed11_area(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    if tp[0] + fn[0] == 0:  # no positive target: the L2I code divides 0 by 0
        return float("nan")
    precision = (tp + 1e-9) / (tp + fp + 1e-9)
    recall = tp / (tp + fn)
    return _padded_area(recall, precision)


def fixed11_auprc(scores: ArrayLike, targets: ArrayLike, average: Average = "macro") -> float:
    """AUPRC as the L2I code computes it on 11 fixed thresholds (module docstring).

    A class with no positive target has an undefined recall (0/0 in the L2I code);
    it is left out of the macro mean, and the result is NaN when no class has one
    (micro: no positive pair), as in :func:`dcase_auprc`.
    """
    s, t = _np(scores), _np(targets)
    _check_pair(s, t)
    thresholds = np.asarray(FIXED11_THRESHOLDS)
    per_class = [_counts_at(s[:, c], t[:, c], thresholds, strict=True) for c in range(s.shape[1])]
    if average == "micro":
        tp, fp, fn = (sum(parts) for parts in zip(*per_class, strict=True))
        return _fixed11_area(tp, fp, fn)
    if average == "macro":
        return _mean_over_defined([_fixed11_area(*counts) for counts in per_class])
    raise ValueError(f"average must be 'micro' or 'macro', not {average!r}")


# --------------------------------------------------------------- classifier report


def classifier_probabilities(logits: ArrayLike, task: Task) -> torch.Tensor:
    """Softmax over classes (multiclass) or per-class sigmoid (multilabel)."""
    x = torch.as_tensor(_np(logits))
    return torch.softmax(x, dim=1) if task == Task.MULTICLASS else torch.sigmoid(x)


def classifier_decisions(
    logits: torch.Tensor, task: Task, thresholds: torch.Tensor | None = None
) -> torch.Tensor:
    """Boolean (N, C): the classes the classifier decides for each clip. Multiclass: its
    top-1. Multilabel: probability > the per-class decision threshold (the L2I code's
    ``sigma(f(x)) > class_thresh``), 0.5 where the run chose none. One definition for
    what gets explained and for what the metrics score against."""
    logits = logits.detach().float().cpu()
    if task is Task.MULTICLASS:
        top = logits.argmax(dim=1, keepdim=True)
        return torch.zeros_like(logits, dtype=torch.bool).scatter_(1, top, True)
    if thresholds is None:
        thresholds = torch.full((logits.shape[1],), 0.5)
    return torch.sigmoid(logits) > thresholds.float().cpu()[None, :]


def classifier_quality(logits: ArrayLike, targets: ArrayLike, task: Task) -> dict[str, float]:
    """The classifier against ground truth, so each report says what was explained.

    Multiclass (``targets`` multi-hot ``(N, C)`` with one positive, or labels ``(N,)``):
    ``accuracy``, ``top3_accuracy``, ``top5_accuracy``. Multilabel (``targets`` multi-hot):
    ``auprc_micro_dcase``, ``auprc_macro_dcase`` of the sigmoid probabilities.
    """
    t = _np(targets)
    if task == Task.MULTICLASS:
        labels = t.argmax(axis=1) if t.ndim == 2 else t
        return {
            "accuracy": top_k_accuracy(logits, labels, 1),
            "top3_accuracy": top_k_accuracy(logits, labels, 3),
            "top5_accuracy": top_k_accuracy(logits, labels, 5),
        }
    probs = classifier_probabilities(logits, task)
    return {
        "auprc_micro_dcase": dcase_auprc(probs, t, "micro"),
        "auprc_macro_dcase": dcase_auprc(probs, t, "macro"),
    }


# --------------------------------------------------------- probability-change scores


def _pair(original: ArrayLike, changed: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = _np(original).ravel(), _np(changed).ravel()
    if a.shape != b.shape:
        raise ValueError(f"need one changed value per original value; got {a.shape}, {b.shape}")
    return a, b


def average_increase(original: ArrayLike, masked_in: ArrayLike) -> float:
    """L-MAC's AI in %: share of rows where the explained class's probability rises
    on the masked-in input (``100 * mean[p_c < o_c]``)."""
    p, o = _pair(original, masked_in)
    return float(100.0 * np.mean(p < o)) if p.size else float("nan")


def average_drop(original: ArrayLike, masked_in: ArrayLike) -> float:
    """L-MAC's AD in %: ``100 * mean(relu(p_c - o_c) / p_c)`` on probabilities
    softmaxed once. (SpeechBrain softmaxes them a second time: see
    :func:`average_drop_double_softmax`.)"""
    p, o = _pair(original, masked_in)
    return float(100.0 * np.mean(np.maximum(p - o, 0.0) / (p + 1e-10))) if p.size else float("nan")


def average_gain(original: ArrayLike, masked_in: ArrayLike) -> float:
    """L-MAC's AG in %: ``100 * mean(relu(o_c - p_c) / (1 - p_c))``."""
    p, o = _pair(original, masked_in)
    if not p.size:
        return float("nan")
    return float(100.0 * np.mean(np.maximum(o - p, 0.0) / (1.0 - p + 1e-10)))


def average_drop_double_softmax(
    original_probs: ArrayLike, masked_in_probs: ArrayLike, classes: ArrayLike
) -> float:
    """AD exactly as SpeechBrain's ``compute_AD`` codes it: the (N, C) probabilities go
    through ``softmax`` again before the drop. Softmax of values in [0, 1] is nearly
    flat, so this AD is capped far below 100 (about 59 for p_c = 0.9, o_c = 0 with 50
    classes); published L-MAC AD numbers are on this scale."""
    p2 = torch.softmax(torch.as_tensor(_np(original_probs)), dim=1)
    o2 = torch.softmax(torch.as_tensor(_np(masked_in_probs)), dim=1)
    idx = torch.as_tensor(_np(classes), dtype=torch.long)[:, None]
    return average_drop(p2.gather(1, idx), o2.gather(1, idx))


def top1_unchanged(original_probs: ArrayLike, changed_probs: ArrayLike) -> float:
    """Share of rows whose top-1 class is the same on both inputs (L-MAC's Fid-In when
    ``changed`` is the masked-in input)."""
    a, b = _np(original_probs), _np(changed_probs)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"probabilities must both be (N, C); got {a.shape} and {b.shape}")
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))) if a.shape[0] else float("nan")


def median_drop(original: ArrayLike, changed: ArrayLike) -> float:
    """Median of ``original - changed`` (L2I's faithfulness reports medians)."""
    a, b = _pair(original, changed)
    return float(np.median(a - b)) if a.size else float("nan")


def curve_area(values: ArrayLike) -> np.ndarray:
    """Per-row trapezoid area of curves ``(R, S)`` sampled at ``S`` evenly spaced
    fractions from 0 to 1 (deletion/insertion curves)."""
    v = _np(values)
    x = np.linspace(0.0, 1.0, v.shape[1])
    return np.sum(np.diff(x) * (v[:, 1:] + v[:, :-1]) / 2.0, axis=1)


# -------------------------------------------------------------- mask statistics


def gini_index(values: torch.Tensor) -> torch.Tensor:
    """Gini index per row of ``(R, ...)`` as Quantus ``Sparseness`` computes it with its
    defaults (``abs=True``, ``normalise=True``, ``normalise_by_max``): ``a = |v| / max|v|``,
    then ``a + 1e-7`` sorted ascending, ``sum((2i - d - 1) a_i) / (d sum a_i)``.
    0 = flat, ->1 = one bin.

    The Gini index itself is scale-invariant; only the ``+1e-7`` is not, so without the
    max normalisation a map scaled by 1e-6 would read as nearly flat. After it, the
    index is exactly the same for ``v`` and ``k v`` (``k > 0``). An all-zero row stays
    all-zero (its index is 0).
    """
    a = values.detach().flatten(1).abs().double()
    peak = a.amax(dim=1, keepdim=True)
    a = a / torch.where(peak > 0, peak, torch.ones_like(peak))
    a = a + GINI_EPS
    a, _ = torch.sort(a, dim=1)
    d = a.shape[1]
    i = torch.arange(1, d + 1, dtype=a.dtype, device=a.device)
    return ((2 * i - d - 1) * a).sum(dim=1) / (d * a.sum(dim=1))


def entropy(values: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) per row of ``|a| / sum |a|`` (Quantus ``Complexity``).
    Ranges from 0 (one bin) to ``ln(d)`` (flat); NaN for an all-zero row."""
    a = values.detach().flatten(1).abs().double()
    p = a / a.sum(dim=1, keepdim=True)
    return -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(dim=1)


def shuffled_masks(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each row's mask values moved to random bins (an independent permutation per row).

    The random-removal control of faithfulness: the same number of masked bins, the same
    mask histogram and the same total mask energy as the explanation, at random places.
    """
    flat = mask.flatten(1)
    keys = torch.rand(flat.shape, generator=generator).to(flat.device)
    return flat.gather(1, keys.argsort(dim=1)).view_as(mask)


def relevance_ranks(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rank (0 = most relevant) of every bin of each row by mask value, descending;
    ties broken by a seeded random order so that flat or binary masks are not ranked
    by their memory layout. Returns long ``(R, F*T)``."""
    flat = mask.detach().flatten(1).float()
    jitter = torch.rand(flat.shape, generator=generator).to(flat.device)
    perm = jitter.argsort(dim=1)  # random order first, then a stable sort on values
    order = perm.gather(1, torch.argsort(-flat.gather(1, perm), dim=1, stable=True))
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def oracle_ratio_mask(target_spec: torch.Tensor, interference_spec: torch.Tensor) -> torch.Tensor:
    """``|S_t|^2 / (|S_t|^2 + |S_i|^2)`` per bin: the share of the mixture's energy in a
    bin that belongs to the target stem (0.5 where both stems are silent)."""
    t = complex_magnitude(target_spec).square()
    i = complex_magnitude(interference_spec).square()
    return (t + 1e-20) / (t + i + 2e-20)


def energy_precision_recall(
    mask: torch.Tensor, mixture_spec: torch.Tensor, ratio: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth localisation of linear-magnitude masks, per row.

    The interpretation keeps energy ``E = M^2 |X|^2`` per bin; the oracle ratio ``rho``
    attributes a share of every bin to the target. Precision = target share of the
    kept energy, ``sum(rho E) / sum(E)``; recall = share of the target's energy
    (``rho |X|^2``) that is kept, ``sum(rho E) / sum(rho |X|^2)``. Precision is NaN for
    an all-zero mask (nothing kept, nothing to attribute).
    """
    power = complex_magnitude(mixture_spec).square().double()
    kept = mask.double().square() * power
    rho = ratio.double()
    hit = (rho * kept).flatten(1).sum(dim=1)
    kept_total = kept.flatten(1).sum(dim=1)
    target_total = (rho * power).flatten(1).sum(dim=1)
    precision = torch.where(kept_total > 0, hit / kept_total, torch.full_like(hit, float("nan")))
    return precision, hit / target_total
