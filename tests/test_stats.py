"""The statistics behind every published uncertainty: the bootstrap interval covers at
its nominal rate, the paired test finds a real shift and keeps its level, Holm and the
tied ranks give the hand-computed answers, Kendall's tau the known ones."""

from __future__ import annotations

import numpy as np
import pytest

from l2i_bench.stats import (
    bootstrap_interval,
    holm,
    kendall_tau,
    paired_better,
    summarise,
    tied_ranks,
)


def test_summary_is_mean_or_median_in_float64():
    assert summarise([1.0, 2.0, 10.0]) == pytest.approx(13 / 3)
    assert summarise([1.0, 2.0, 10.0], "median") == 2.0
    assert np.isnan(summarise([]))
    with pytest.raises(ValueError, match="summary"):
        summarise([1.0], "mode")


@pytest.mark.parametrize("how", ["mean", "median"])
def test_bootstrap_interval_covers_the_true_value_at_about_its_nominal_rate(how):
    # Three cells (folds) of 40 rows each from normals with different means; the
    # statistic is the mean over cells of each cell's summary, true value known.
    rng = np.random.default_rng(123)
    centres = np.array([0.2, 0.5, 0.9])
    truth = centres.mean()  # mean and median of a normal coincide
    trials, covered = 300, 0
    for t in range(trials):
        cells = [rng.normal(c, 1.0, size=40) for c in centres]
        low, high = bootstrap_interval(cells, how, resamples=1000, seed=t)
        covered += low <= truth <= high
    rate = covered / trials
    # nominal 95 %; percentile intervals run a little short at n = 40 (binomial sd 1.3 %)
    assert 0.90 <= rate <= 0.985, rate


def test_bootstrap_interval_resamples_within_cells_not_across_them():
    # Two cells at 0 and 10 with no spread: resampling rows within each cell cannot move
    # the mean of the two cell means (5); pooling the rows would.
    low, high = bootstrap_interval([np.zeros(20), np.full(5, 10.0)])
    assert low == pytest.approx(5.0) and high == pytest.approx(5.0)


def test_bootstrap_interval_width_shrinks_like_one_over_root_n():
    rng = np.random.default_rng(0)
    small = np.diff(bootstrap_interval([rng.normal(size=100)], seed=1))[0]
    large = np.diff(bootstrap_interval([rng.normal(size=1600)], seed=1))[0]
    assert small / large == pytest.approx(4.0, rel=0.2)
    # 1.96 * 2 * sd / sqrt(n) for the mean of 1600 standard normals
    assert large == pytest.approx(2 * 1.96 / 40, rel=0.15)


def test_bootstrap_interval_without_rows_is_nan_and_repeats_with_its_seed():
    assert all(np.isnan(bootstrap_interval([np.array([])])))
    rows = [np.arange(10.0)]
    assert bootstrap_interval(rows, seed=5) == bootstrap_interval(rows, seed=5)


def test_paired_test_detects_a_known_shift():
    rng = np.random.default_rng(1)
    found = 0
    for _ in range(200):
        base = rng.normal(size=40)
        found += paired_better(base + 0.8 + rng.normal(size=40) * 0.5, base).p_value < 0.01
    assert found / 200 >= 0.95


@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
def test_paired_test_keeps_its_level_on_equal_distributions(alternative):
    rng = np.random.default_rng(2)
    trials = 600
    rejected = sum(
        paired_better(rng.normal(size=30), rng.normal(size=30), alternative=alternative).p_value
        < 0.05
        for _ in range(trials)
    )
    # level 5 %: binomial sd 0.9 %, so 8 % is more than three sd above
    assert rejected / trials <= 0.08, rejected / trials


def test_paired_test_on_tied_scores_keeps_its_level_too():
    # 0/1 hits (fidelity top-1): heavy ties, the normal approximation with tie correction
    rng = np.random.default_rng(3)
    trials = 600
    rejected = sum(
        paired_better(
            (rng.random(60) < 0.8).astype(float),
            (rng.random(60) < 0.8).astype(float),
            alternative="two-sided",
        ).p_value
        < 0.05
        for _ in range(trials)
    )
    assert rejected / trials <= 0.08


def test_paired_test_direction_and_effect_sizes():
    a, b = np.array([3.0, 4.0, 5.0, 6.0, 7.0, 8.0]), np.zeros(6)
    better = paired_better(a, b)
    assert better.rank_biserial == 1.0 and better.median_difference == 5.5
    assert better.p_value == pytest.approx(1 / 64)  # exact: one of 2^6 sign patterns
    worse = paired_better(a, b, higher_is_better=False)
    assert worse.rank_biserial == -1.0 and worse.p_value == pytest.approx(1.0)
    assert paired_better(a, b, alternative="two-sided").p_value == pytest.approx(2 / 64)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    with_nan = holm([0.01, float("nan"), 0.02])
    assert np.isnan(with_nan[1])
    np.testing.assert_allclose(with_nan[[0, 2]], [0.02, 0.02])  # two tests in the family
    np.testing.assert_allclose(holm([0.9, 0.8]), [1.0, 1.0])  # 0.8 x 2 capped at 1, monotone


def test_tied_ranks_by_hand():
    names = ["a", "b", "c"]
    # a beats both; b and c not separated: they share rank 2
    assert tied_ranks(names, {("a", "b"): True, ("a", "c"): True}) == {"a": 1, "b": 2, "c": 2}
    # a full order
    chain = {("a", "b"): True, ("b", "c"): True, ("a", "c"): True}
    assert tied_ranks(names, chain) == {"a": 1, "b": 2, "c": 3}
    # nothing separated: all first
    assert tied_ranks(names, {}) == {"a": 1, "b": 1, "c": 1}
    # only a > c: b is separated from nobody, so it stays first with a
    assert tied_ranks(names, {("a", "c"): True}) == {"a": 1, "b": 1, "c": 2}


def test_kendall_tau_known_values():
    assert kendall_tau([1, 2, 3, 4, 5], [10, 20, 30, 40, 50])[:1] == (pytest.approx(1.0),)
    tau, p, n = kendall_tau([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    assert tau == pytest.approx(-1.0) and p == pytest.approx(2 / 120) and n == 5
    # one discordant pair of 10: (9 - 1) / 10
    assert kendall_tau([1, 2, 3, 4, 5], [1, 2, 3, 5, 4])[0] == pytest.approx(0.8)
    tau, p, n = kendall_tau([1, 2, np.nan, 4], [1, 2, 3, 4])
    assert n == 3 and tau == pytest.approx(1.0)
    assert np.isnan(kendall_tau([1, 2], [1, 2])[0])
