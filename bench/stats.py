"""The statistics every verdict of the suite rests on, in one place.

A leaderboard number is a summary of rows (clips); whether one explainer beats another
is a question about *paired* rows, the same clips explained by both. This module holds
the paired tests; everything that publishes a p-value calls it.

Method: the one-sided Wilcoxon signed-rank test (Wilcoxon 1945) of paired differences,
through :func:`scipy.stats.wilcoxon` (exact distribution for small samples without
ties, the normal approximation otherwise); zero differences are dropped
(``zero_method="wilcox"``), so rows where both explanations score the same carry no
evidence either way. Effect size: the matched-pairs rank-biserial correlation (Kerby
2014), ``(W+ - W-) / (W+ + W-)`` in [-1, 1], and the median paired difference, so a
reader sees both how consistent and how large a difference is. Cost: one sort of the
differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats


@dataclass(frozen=True)
class PairedTest:
    """One-sided comparison "a is better than b" over paired rows."""

    n: int  # pairs
    median_difference: float  # median of (a - b), direction-adjusted
    rank_biserial: float  # matched-pairs rank-biserial correlation, direction-adjusted
    p_value: float  # one-sided: a better than b


def paired_better(a: np.ndarray, b: np.ndarray, *, higher_is_better: bool = True) -> PairedTest:
    """Test whether ``a`` beats ``b`` on paired rows (one-sided Wilcoxon signed-rank).

    ``a`` and ``b`` are aligned arrays of the same rows; non-finite pairs are dropped.
    With fewer than one non-zero difference the p-value is 1 (no evidence).
    """
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
    result = _scipy_stats.wilcoxon(nonzero, zero_method="wilcox", alternative="greater")
    return PairedTest(n, float(np.median(d)), rbc, float(result.pvalue))
