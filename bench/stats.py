"""The statistics every verdict of the suite rests on, in one place.

A leaderboard number is a summary of rows (clips); whether one explainer beats another
is a question about *paired* rows, the same clips explained by both. This module holds
the summary of rows, the paired tests, the bootstrap intervals, the multiple-testing
correction, the tied ranks and the rank agreement; everything that publishes a number
with its uncertainty calls it.

Summary (:func:`summarise`): a cell's number is the mean (or, for the columns that say
so, the median) of its rows; a leaderboard number is the mean of its cells (folds x
seeds). Everything else recomputes from rows through this one function, so audits and
intervals agree with the published numbers to the last bit.

Interval (:func:`bootstrap_interval`): the percentile bootstrap (Efron & Tibshirani
1993, ch. 13) of exactly that statistic, with rows resampled with replacement *within*
each cell (stratified by fold and seed: every resample keeps each cell's size and its
place in the mean), :data:`RESAMPLES` resamples, seeded per column so republishing
gives the same interval. It measures how much the number would move on other clips from
the same distribution, for the classifiers and explainer fits at hand; the spread over
folds and seeds (the ``std`` beside it) measures the rest. Percentile intervals cover a
little under their nominal rate at small n (tested: about 94 % at n = 40 for 95 %).

Method: the one-sided Wilcoxon signed-rank test (Wilcoxon 1945) of paired differences,
through :func:`scipy.stats.wilcoxon` (exact distribution for small samples without
ties, the normal approximation otherwise); zero differences are dropped
(``zero_method="wilcox"``), so rows where both explanations score the same carry no
evidence either way. Effect size: the matched-pairs rank-biserial correlation (Kerby
2014), ``(W+ - W-) / (W+ + W-)`` in [-1, 1], and the median paired difference, so a
reader sees both how consistent and how large a difference is. Cost: one sort of the
differences.

Multiple comparisons (:func:`holm`): Holm's step-down adjustment (Holm 1979), which
controls the family-wise error rate at any dependence between the tests; the family is
one column's tests. Tied ranks (:func:`tied_ranks`): an explainer's rank is one plus the
number of explainers significantly better than it, so explainers that no test separates
share a rank. Agreement of rankings (:func:`kendall_tau`): Kendall's tau-b with its
exact (or, with ties, asymptotic) p-value, through :func:`scipy.stats.kendalltau`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

RESAMPLES = 2000
"""Bootstrap resamples per interval: the 2.5 % and 97.5 % percentiles rest on 50
resamples each, a Monte Carlo error well under the interval's own width."""

LEVEL = 0.95
"""Nominal coverage of every published interval."""

SIGNIFICANCE = 0.05
"""Family-wise error rate of each column's Holm-corrected paired tests (ranks,
``significance.csv``). Metric validity sets its own, stricter bar."""

SUMMARIES = ("mean", "median")


def summarise(values: Sequence[float] | np.ndarray, how: str = "mean") -> float:
    """A cell's number from its rows: mean or median in float64 (NaN when empty)."""
    if how not in SUMMARIES:
        raise ValueError(f"summary must be one of {SUMMARIES}, not {how!r}")
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return float("nan")
    return float(np.median(arr) if how == "median" else np.mean(arr))


def stable_seed(*parts: object) -> int:
    """A seed from names (column, explainer): the same interval at every republish."""
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def bootstrap_interval(
    cells: Sequence[np.ndarray],
    how: str = "mean",
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over cells of each cell's summary of
    its rows, rows resampled within each cell. Cells with no rows are left out (as in
    the published mean); (NaN, NaN) when none has rows."""
    strata = [np.asarray(c, dtype=np.float64) for c in cells]
    strata = [c for c in strata if c.size]
    if not strata:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for rows in strata:
        draws = rows[rng.integers(0, rows.size, size=(resamples, rows.size))]
        total += np.median(draws, axis=1) if how == "median" else draws.mean(axis=1)
    stats = total / len(strata)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedTest:
    """One-sided comparison "a is better than b" over paired rows."""

    n: int  # pairs
    median_difference: float  # median of (a - b), direction-adjusted
    rank_biserial: float  # matched-pairs rank-biserial correlation, direction-adjusted
    p_value: float  # one-sided: a better than b


def paired_better(
    a: np.ndarray,
    b: np.ndarray,
    *,
    higher_is_better: bool = True,
    alternative: str = "greater",
) -> PairedTest:
    """Test whether ``a`` beats ``b`` on paired rows (Wilcoxon signed-rank).

    ``a`` and ``b`` are aligned arrays of the same rows; non-finite pairs are dropped.
    ``alternative="greater"`` (default) is the one-sided test "a is better";
    ``"two-sided"`` asks whether they differ at all (the sign of the effect sizes then
    says which is better). With no non-zero difference the p-value is 1 (no evidence).
    """
    if alternative not in ("greater", "two-sided"):
        raise ValueError(f"alternative must be 'greater' or 'two-sided', not {alternative!r}")
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired rows expected; got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    if not higher_is_better:
        d = -d
    n = int(d.size)
    if n == 0:
        return PairedTest(0, float("nan"), float("nan"), float("nan"))
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return PairedTest(n, 0.0, 0.0, 1.0)
    ranks = _scipy_stats.rankdata(np.abs(nonzero))
    w_plus = float(ranks[nonzero > 0].sum())
    w_minus = float(ranks[nonzero < 0].sum())
    rbc = (w_plus - w_minus) / (w_plus + w_minus)
    # Exact null distribution for small samples without ties, else the normal
    # approximation with tie correction (scipy's "auto" would run a permutation test
    # on small tied samples: seconds per call, for the same answer to two digits).
    ties = np.unique(np.abs(nonzero)).size < nonzero.size
    method = "exact" if nonzero.size <= 50 and not ties else "approx"
    result = _scipy_stats.wilcoxon(
        nonzero, zero_method="wilcox", alternative=alternative, method=method
    )
    return PairedTest(n, float(np.median(d)), rbc, float(result.pvalue))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (same order; NaN stays NaN and is not counted): reject
    a hypothesis at family-wise level ``alpha`` when its adjusted p is below ``alpha``."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    running = 0.0
    for step, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - step) * p[i]))
        adjusted[i] = running
    return adjusted


def tied_ranks(names: Sequence[str], better: Mapping[tuple[str, str], bool]) -> dict[str, int]:
    """Rank = 1 + how many others are significantly better (``better[(a, b)]``: a is
    significantly better than b). Explainers no test separates share a rank; the rank
    never rewards a gap the tests could not confirm."""
    return {b: 1 + sum(bool(better.get((a, b), False)) for a in names if a != b) for b in names}


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, int]:
    """Kendall's tau-b between two scorings of the same items, its two-sided p-value and
    the number of items both score (non-finite pairs dropped); NaN below 3 items."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan"), float("nan"), n
    result = _scipy_stats.kendalltau(a[ok], b[ok])
    return float(result.statistic), float(result.pvalue), n
