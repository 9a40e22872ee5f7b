"""bench/scores.py against independent computations (scikit-learn, scipy, hand cases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import auc, precision_recall_curve, precision_score, recall_score

from l2i_bench import scores
from l2i_bench.types import Task

RNG = np.random.default_rng(1234)


# ---------------------------------------------------------------- DCASE AUPRC


def dcase_reference(y: np.ndarray, s: np.ndarray) -> float:
    """DCASE area built from scikit-learn's PR points (scores distinct, in [0.01, 1)).

    sklearn gives (P, R) at every unique score threshold (``>=``); DCASE adds the 1.0
    threshold, whose point is (R=0, P=0) when no score reaches 1, and pads the ends.
    """
    precision, recall, _ = precision_recall_curve(y, s, drop_intermediate=False)
    # sklearn lists thresholds ascending and appends (R=0, P=1): drop it, reverse.
    p, r = precision[:-1][::-1], recall[:-1][::-1]
    r_all = np.concatenate([[0.0, 0.0], r, [1.0]])
    p_all = np.concatenate([[1.0, 0.0], p, [0.0]])
    return float(auc(r_all, p_all))


def test_dcase_hand_case():
    # thresholds 1.0,.9,.5,.4,.3,.1,.05 -> (R,P): (0,0) (.5,1) (.5,.5) (1,2/3) (1,.5) ...
    # area = .5*(0+1)/2 + .5*(.5+2/3)/2 = 0.25 + 0.291666...
    y = np.array([0, 1, 0, 1, 0, 0])[:, None]
    s = np.array([0.1, 0.9, 0.3, 0.4, 0.5, 0.05])[:, None]
    assert scores.dcase_auprc(s, y) == pytest.approx(0.25 + 0.5 * (0.5 + 2 / 3) / 2)


@pytest.mark.parametrize("trial", range(5))
def test_dcase_matches_sklearn_built_curve_on_random_scores(trial):
    n = int(RNG.integers(5, 60))
    y = (RNG.random(n) < 0.3).astype(float)
    y[0] = 1.0
    s = RNG.uniform(0.011, 0.999, n)
    assert scores.dcase_auprc(s[:, None], y[:, None]) == pytest.approx(dcase_reference(y, s))


def test_dcase_perfect_ranking_is_one_minus_half_over_positives():
    for n_pos in (1, 3, 10, 40):
        y = np.r_[np.ones(n_pos), np.zeros(25)]
        s = np.r_[RNG.uniform(0.6, 0.99, n_pos), RNG.uniform(0.02, 0.5, 25)]
        assert scores.dcase_auprc(s[:, None], y[:, None]) == pytest.approx(1 - 0.5 / n_pos)


def test_dcase_random_scores_near_prevalence():
    n, prevalence = 4000, 0.2
    y = (RNG.random(n) < prevalence).astype(float)
    s = RNG.uniform(0.0, 1.0, n)
    assert scores.dcase_auprc(s[:, None], y[:, None]) == pytest.approx(y.mean(), abs=0.03)


def test_dcase_tied_perfect_scores_lose_half():
    # one shared positive score: points (0,1) (0,0) (1,1) (1,.5) (1,0) -> area 0.5
    y = np.array([1.0, 1.0, 0.0, 0.0])[:, None]
    s = np.array([0.9, 0.9, 0.1, 0.1])[:, None]
    assert scores.dcase_auprc(s, y) == pytest.approx(0.5)


def test_dcase_ignores_scores_below_min_threshold():
    # A positive scored below 0.01 is never recalled: the curve ends at R=1/2 and the
    # pad (1, 0) closes it with a triangle.
    y = np.array([1.0, 1.0, 0.0])[:, None]
    s = np.array([0.9, 0.005, 0.001])[:, None]
    # points: (0,1) (0,0) (.5,1) (1,0) -> 0 + .25 + .25
    assert scores.dcase_auprc(s, y) == pytest.approx(0.5)


def test_dcase_micro_pools_and_macro_averages_classes():
    y = (RNG.random((80, 4)) < 0.4).astype(float)
    y[0] = 1.0
    s = RNG.uniform(0.02, 0.98, (80, 4))
    # The pooled curve's points are listed by increasing threshold before the official
    # (non-stable) recall sort, so its tied recalls are not in sklearn's order: compare
    # with the transcription of the official procedure (below).
    micro = scores.dcase_auprc(s, y, "micro")
    assert micro == pytest.approx(official_dcase_micro(y, s), abs=1e-12)
    assert micro == pytest.approx(dcase_reference(y.ravel(), s.ravel()), abs=5e-3)
    macro = scores.dcase_auprc(s, y, "macro")
    assert macro == pytest.approx(official_dcase_macro(y, s), abs=1e-12)
    per_class = [scores.dcase_auprc(s[:, c : c + 1], y[:, c : c + 1]) for c in range(4)]
    assert macro == pytest.approx(np.mean(per_class), abs=1e-15)


def test_dcase_rejects_logits():
    with pytest.raises(ValueError):
        scores.dcase_auprc(np.array([[2.0], [-1.0]]), np.array([[1.0], [0.0]]))


# -------------------------------------------------------------- fixed-11 AUPRC


def fixed11_reference(y: np.ndarray, s: np.ndarray) -> float:
    """The L2I definition from scikit-learn's precision/recall at each threshold."""
    p, r = [], []
    for t in scores.FIXED11_THRESHOLDS:
        pred = (s > t).astype(int)
        p.append(precision_score(y, pred, zero_division=1.0))
        r.append(recall_score(y, pred))
    return float(auc([0.0, *r, 1.0], [1.0, *p, 0.0]))


@pytest.mark.parametrize("trial", range(5))
def test_fixed11_matches_sklearn_counts(trial):
    y = (RNG.random((50, 3)) < 0.35).astype(float)
    y[0] = 1.0
    s = RNG.random((50, 3))
    ref = [fixed11_reference(y[:, c], s[:, c]) for c in range(3)]
    assert scores.fixed11_auprc(s, y, "macro") == pytest.approx(np.mean(ref), abs=1e-8)
    assert scores.fixed11_auprc(s, y, "micro") == pytest.approx(
        fixed11_reference(y.ravel(), s.ravel()), abs=1e-8
    )


def test_fixed11_perfect_scores_give_one_and_class_without_positive_is_skipped():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype=float)
    s = np.array([[0.99, 0.7], [0.01, 0.2], [0.97, 0.4], [0.02, 0.3]])
    assert scores.fixed11_auprc(s, y, "macro") == pytest.approx(1.0)
    assert np.isnan(scores.fixed11_auprc(s[:, 1:], y[:, 1:], "macro"))


def test_fixed11_and_dcase_differ_from_each_other():
    # Hand-computed on 4 clips, no tied recalls in the DCASE curve.
    # DCASE: thresholds 1, .9, .6 (the negatives are below 0.01) -> (R,P) = (0,0) (.5,1)
    #   (1,1); padded: (0,1) (0,0) (.5,1) (1,1) (1,0) -> .25 + .5 = 0.75.
    # fixed-11 (score > t): R = 0 at .95/.9, .5 at .8/.7/.6, 1 from .5 down, P = 1
    #   throughout -> a unit square.
    y = np.array([1.0, 1.0, 0.0, 0.0])[:, None]
    s = np.array([0.9, 0.6, 0.005, 0.001])[:, None]
    assert scores.dcase_auprc(s, y) == pytest.approx(0.75, abs=1e-12)
    assert scores.fixed11_auprc(s, y) == pytest.approx(1.0, abs=1e-9)
    # A positive exactly at a fixed threshold (0.8): fixed-11 counts it from t = 0.7 on
    # (score > t), DCASE at its own score (score >= t).
    # fixed-11 (R,P): (0,1) x3 [.95 .9 .8], (.5,.5) x5 [.7 .. .3], (1,2/3) x3 [.2 .1 .05]
    #   -> (1 + .5)/2 * .5 + (.5 + 2/3)/2 * .5 = .375 + 7/24
    # DCASE: thresholds 1 .8 .75 .3 -> (0,0) (.5,1) (.5,.5) (1,2/3)
    #   -> .25 + 7/24 (either order of the tied .5 recalls gives the same area)
    y = np.array([1.0, 0.0, 1.0])[:, None]
    s = np.array([0.8, 0.75, 0.3])[:, None]
    assert scores.fixed11_auprc(s, y) == pytest.approx(0.375 + 7 / 24, abs=1e-9)
    assert scores.dcase_auprc(s, y) == pytest.approx(0.25 + 7 / 24, abs=1e-12)


# ------------------------------------------- DCASE on ties: the official procedure


def _official_class_table(y: np.ndarray, s: np.ndarray):
    """One class as DCASE's metrics.py tabulates it: thresholds = sorted scores from
    0.01 up, plus 1.0, unique, listed in DECREASING order; TP/FP/FN of ``s >= t``."""
    thresholds = np.sort(s)
    thresholds = thresholds[np.searchsorted(thresholds, 0.01) :]
    thresholds = np.unique(np.append(thresholds, 1.0))[::-1]
    rows = []
    for t in thresholds:
        tp = fp = fn = 0
        for yi, si in zip(y, s, strict=True):
            pred = si >= t
            tp += int(pred and yi == 1)
            fp += int(pred and yi == 0)
            fn += int((not pred) and yi == 1)
        rows.append((t, tp, fp, fn))
    return rows


def _official_area(points: list[tuple[float, float]]) -> float:
    """Sort the (R, P) points as the official code does (numpy's default argsort of the
    recalls, in the order they are listed), pad, trapezoid with sklearn's ``auc``."""
    recalls = np.array([r for r, _ in points])
    precisions = np.array([p for _, p in points])
    order = np.argsort(recalls)
    return float(
        auc(
            np.array([0.0, *recalls[order], 1.0]),
            np.array([1.0, *precisions[order], 0.0]),
        )
    )


def _pr(tp: int, fp: int, fn: int) -> tuple[float, float]:
    return tp / max(tp + fn, 0.5), tp / max(tp + fp, 0.5)


def official_dcase_macro(Y: np.ndarray, S: np.ndarray) -> float:
    areas = []
    for c in range(Y.shape[1]):
        rows = _official_class_table(Y[:, c], S[:, c])
        areas.append(_official_area([_pr(tp, fp, fn) for _, tp, fp, fn in rows]))
    return float(np.mean(areas))


def official_dcase_micro(Y: np.ndarray, S: np.ndarray) -> float:
    """Union of the class thresholds in INCREASING order (``np.unique``, no reversal);
    per class, the counts of the last table row (decreasing thresholds) whose threshold
    is >= t; summed over classes."""
    tables = [_official_class_table(Y[:, c], S[:, c]) for c in range(Y.shape[1])]
    union = np.unique(np.hstack([[row[0] for row in table] for table in tables]))
    points = []
    for t in union:
        tp = fp = fn = 0
        for table in tables:
            last = [row for row in table if row[0] >= t][-1]
            tp, fp, fn = tp + last[1], fp + last[2], fn + last[3]
        points.append(_pr(tp, fp, fn))
    return _official_area(points)


@pytest.mark.parametrize("trial", range(8))
def test_dcase_matches_the_official_procedure_on_tie_heavy_scores(trial):
    rng = np.random.default_rng(100 + trial)
    n, c = int(rng.integers(20, 70)), int(rng.integers(3, 13))
    y = (rng.random((n, c)) < (0.1 if trial % 2 else 0.3)).astype(float)
    y[rng.integers(0, n, c), np.arange(c)] = 1.0  # every class has a positive
    # Scores rounded to 2 decimals: many tied scores, and many thresholds that add only
    # negatives, hence runs of tied recalls. (On this data the pooled curve sorted
    # stably in decreasing-threshold order differs from the official area in every
    # trial, by 2e-4 to 3e-3, on an AVX-512 machine with numpy 2.4.)
    s = np.round(np.clip(0.3 * y + 0.7 * rng.random((n, c)), 0.0, 1.0), 2)
    assert scores.dcase_auprc(s, y, "micro") == pytest.approx(official_dcase_micro(y, s), abs=1e-12)
    assert scores.dcase_auprc(s, y, "macro") == pytest.approx(official_dcase_macro(y, s), abs=1e-12)


def test_class_without_positive_is_left_out_of_both_macros():
    rng = np.random.default_rng(7)
    y = (rng.random((40, 3)) < 0.4).astype(float)
    y[0, :2] = 1.0
    y[:, 2] = 0.0  # e.g. a class the classifier never decides
    s = np.round(rng.random((40, 3)), 2)
    dcase_two = official_dcase_macro(y[:, :2], s[:, :2])
    assert scores.dcase_auprc(s, y, "macro") == pytest.approx(dcase_two, abs=1e-12)
    fixed_two = np.mean([fixed11_reference(y[:, k], s[:, k]) for k in range(2)])
    assert scores.fixed11_auprc(s, y, "macro") == pytest.approx(fixed_two, abs=1e-8)
    # no positive anywhere: undefined in both definitions, micro and macro
    for fn in (scores.dcase_auprc, scores.fixed11_auprc):
        for avg in ("micro", "macro"):
            assert np.isnan(fn(s[:, 2:], y[:, 2:], avg))
    # its scores still count as false positives in the pooled (micro) curve
    assert scores.dcase_auprc(s, y, "micro") == pytest.approx(official_dcase_micro(y, s), abs=1e-12)


# --------------------------------------------------------------- top-k scores


def test_top_k_agreement_against_loop():
    ref = RNG.normal(size=(40, 7))
    cand = RNG.normal(size=(40, 7))
    for k in (1, 3, 5):
        expected = np.mean(
            [
                np.argmax(ref[i]) in sorted(range(7), key=lambda j: -cand[i, j])[:k]
                for i in range(40)
            ]
        )
        assert scores.top_k_agreement(ref, cand, k) == pytest.approx(expected)
    assert scores.top_k_agreement(ref, ref, 1) == 1.0


def test_classifier_quality_multiclass_and_multilabel():
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 0.5], [1.0, 0.0, 3.0, 2.0]])
    labels = torch.tensor([0, 2, 3])
    q = scores.classifier_quality(logits, torch.nn.functional.one_hot(labels, 4), Task.MULTICLASS)
    assert q["accuracy"] == pytest.approx(1 / 3)
    assert q["top3_accuracy"] == pytest.approx(1.0)
    targets = (RNG.random((30, 4)) < 0.5).astype(float)
    ml = torch.as_tensor(RNG.normal(size=(30, 4)))
    q = scores.classifier_quality(ml, targets, Task.MULTILABEL)
    assert q["auprc_micro_dcase"] == pytest.approx(
        scores.dcase_auprc(torch.sigmoid(ml), targets, "micro")
    )


# ------------------------------------------------------------- L-MAC scores


def test_lmac_hand_cases():
    p = np.array([0.9, 0.5, 0.2])
    o = np.array([0.45, 0.6, 0.2])
    assert scores.average_increase(p, o) == pytest.approx(100 / 3)
    assert scores.average_drop(p, o) == pytest.approx(100 * (0.5 + 0 + 0) / 3)
    assert scores.average_gain(p, o) == pytest.approx(100 * (0.1 / 0.5) / 3)


def test_double_softmax_ad_matches_published_values():
    # peer notes §1.2: 50 classes, p_c = 0.9, o_c = 0 -> 58.91 (single softmax: 100).
    p = np.full((1, 50), 0.1 / 49)
    p[0, 0] = 0.9
    o = np.full((1, 50), 1.0 / 49)
    o[0, 0] = 0.0
    assert scores.average_drop_double_softmax(p, o, [0]) == pytest.approx(58.91, abs=0.01)
    assert scores.average_drop(p[:, 0], o[:, 0]) == pytest.approx(100.0)


def test_curve_area_against_numpy_trapezoid():
    v = RNG.random((6, 11))
    assert np.allclose(scores.curve_area(v), np.trapezoid(v, np.linspace(0, 1, 11), axis=1))


# --------------------------------------------------------- mask statistics


def test_gini_equals_mean_absolute_difference_form():
    x = torch.as_tensor(RNG.random((5, 37)))
    a = x.numpy() / x.numpy().max(axis=1, keepdims=True) + scores.GINI_EPS
    expected = np.abs(a[:, :, None] - a[:, None, :]).sum(axis=(1, 2)) / (2 * 37 * a.sum(axis=1))
    assert np.allclose(scores.gini_index(x).numpy(), expected, rtol=0, atol=1e-12)
    flat = scores.gini_index(torch.ones(1, 100))
    one_hot = scores.gini_index(torch.nn.functional.one_hot(torch.tensor([3]), 100).float())
    assert flat.item() == pytest.approx(0.0, abs=1e-9) and one_hot.item() > 0.98


def test_gini_hand_values_on_small_vectors():
    e = scores.GINI_EPS
    # [0, 0, 0, 2] -> /max -> [0, 0, 0, 1] + e: sum_i (2i - 5) a_i = 3 (1 + e) - 3e - e - e...
    # = (-3 - 1 + 1) e + 3 (1 + e) = 3; divided by 4 (1 + 4e)
    got = scores.gini_index(torch.tensor([[0.0, 0.0, 0.0, 2.0]]))
    assert got.item() == pytest.approx(3 / (4 * (1 + 4 * e)), abs=1e-15)
    # [1, 3] -> [1/3, 1] + e: (-(1/3 + e) + (1 + e)) / (2 (4/3 + 2e)) = (2/3) / (8/3 + 4e)
    got = scores.gini_index(torch.tensor([[3.0, -1.0]]))  # absolute values, any order
    assert got.item() == pytest.approx((2 / 3) / (8 / 3 + 4 * e), abs=1e-15)
    # all-zero row: all values equal e -> 0
    assert scores.gini_index(torch.zeros(1, 5)).item() == pytest.approx(0.0, abs=1e-15)


def test_gini_is_scale_free():
    # sparse maps (many exact zeros) are where the +1e-7 would otherwise dominate
    a = torch.as_tensor(RNG.random((6, 50)) * (RNG.random((6, 50)) < 0.2))
    base = scores.gini_index(a)
    for k in (1000.0, 1e-3, 1e-9):
        assert torch.allclose(scores.gini_index(k * a), base, rtol=0, atol=1e-9), k


def test_entropy_against_scipy():
    x = torch.as_tensor(RNG.random((4, 3, 9)))
    expected = [scipy_entropy(row.ravel()) for row in x.numpy()]
    assert np.allclose(scores.entropy(x).numpy(), expected)


def test_shuffled_masks_keep_values_and_move_them():
    mask = torch.as_tensor(RNG.random((3, 8, 10)), dtype=torch.float32)
    out = scores.shuffled_masks(mask, torch.Generator().manual_seed(0))
    for a, b in zip(mask, out, strict=True):
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
        assert not torch.equal(a, b)


def test_relevance_ranks_follow_mask_order_and_break_ties_randomly():
    mask = torch.as_tensor(RNG.random((2, 5, 6)), dtype=torch.float32)
    ranks = scores.relevance_ranks(mask, torch.Generator().manual_seed(0))
    for m, r in zip(mask, ranks, strict=True):
        assert torch.equal(r.argsort(), (-m.flatten()).argsort())
    binary = torch.zeros(1, 10, 10)
    binary[0, :, :3] = 1.0
    r = scores.relevance_ranks(binary, torch.Generator().manual_seed(1))[0]
    assert set(r[binary.flatten() > 0].tolist()) == set(range(30))
    # the zero bins are not in memory order
    assert r[binary.flatten() == 0].tolist() != sorted(r[binary.flatten() == 0].tolist())


def test_energy_precision_recall_properties():
    g = torch.Generator().manual_seed(3)
    st = torch.randn(2, 20, 15, generator=g, dtype=torch.complex64)
    si = 0.5 * torch.randn(2, 20, 15, generator=g, dtype=torch.complex64)
    mix = st + si
    rho = scores.oracle_ratio_mask(st, si)
    p, r = scores.energy_precision_recall(torch.ones(2, 20, 15), mix, rho)
    share = (rho * mix.abs() ** 2).sum(dim=(1, 2)) / (mix.abs() ** 2).sum(dim=(1, 2))
    assert torch.allclose(r, torch.ones(2, dtype=r.dtype))
    assert torch.allclose(p, share.double())
    oracle = (rho > 0.5).float()
    p2, r2 = scores.energy_precision_recall(oracle, mix, rho)
    assert (p2 > p).all() and (r2 < 1).all()
    # masks are magnitude gains: half the magnitude keeps a quarter of the energy
    p_half, r_half = scores.energy_precision_recall(torch.full((2, 20, 15), 0.5), mix, rho)
    assert torch.allclose(r_half, torch.full_like(r_half, 0.25)) and torch.allclose(p_half, p)
    p3, _ = scores.energy_precision_recall(torch.zeros(2, 20, 15), mix, rho)
    assert torch.isnan(p3).all()


def test_classifier_decisions_top1_or_above_threshold() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.5]])
    multiclass = scores.classifier_decisions(logits, Task.MULTICLASS)
    assert multiclass.tolist() == [[False, True, False], [True, False, False]]
    # sigmoid: [0.52, 0.88, 0.27] and [0.95, 0.5, 0.92]; 0.5 itself is not above 0.5
    default = scores.classifier_decisions(logits, Task.MULTILABEL)
    assert default.tolist() == [[True, True, False], [True, False, True]]
    own = scores.classifier_decisions(logits, Task.MULTILABEL, torch.tensor([0.6, 0.9, 0.2]))
    assert own.tolist() == [[False, False, True], [True, False, True]]
