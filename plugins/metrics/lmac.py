"""The L-MAC family on masked-in inputs (peer notes: L-MAC §1.2).

The masked-in input is what the explanation keeps, by the operator of its own mask
domain (:mod:`l2i_bench.perturb`: ``M|X|``, or ``expm1(M log1p|X|)`` for L2I and
FLINT, as their interpretations are heard). With ``p`` the classifier's probabilities
on the clip, ``o`` those on the masked-in input (resynthesised, features recomputed)
and ``c`` the explained class:
AI = 100 mean[p_c < o_c], AD = 100 mean(relu(p_c - o_c) / p_c),
AG = 100 mean(relu(o_c - p_c) / (1 - p_c)), Fid-In = mean[argmax o = argmax p].

Rows: the test rows (the published numbers) and the condition sets' scored rows (kept
for the metric validity check only). Cost: one classifier pass per row, shared by the
two metrics. Probabilities are the classifier's own, softmaxed **once**. SpeechBrain's
``compute_AD`` (recipes/ESC50/interpret) softmaxes probabilities a second time; on
values in [0, 1] the second softmax is nearly flat, so its AD is squeezed far below
100 (p_c = 0.9, o_c = 0 gives 58.9 instead of 100 with 50 classes). Published L-MAC AD
numbers are on that scale, so ``lmac_ad_speechbrain`` reproduces it for comparison
only.
"""

from __future__ import annotations

import numpy as np

from l2i_bench import scores
from l2i_bench.types import Column, Direction, Evaluation, Metric, RowValues, Task

from . import _common

ONCE = "classifier.probabilities applied once (softmax multiclass / sigmoid multilabel)"
KEPT = "masked-in = kept input by the explanation's mask-domain operator"


def per_row(score, *arrays) -> np.ndarray:
    """Each row's own value of a score defined as a mean over rows (one definition,
    in :mod:`l2i_bench.scores`, for the aggregate and for the rows behind it)."""
    n = len(arrays[0])
    return np.array([score(*(a[i : i + 1] for a in arrays)) for i in range(n)])


def _explained_pairs(evaluation: Evaluation):
    """Per row set: probabilities on the clip and on the masked-in input, and classes."""
    for rowset in _common.row_sets(evaluation):
        p = _common.probabilities(evaluation, rowset.logits)
        o = _common.probabilities(evaluation, _common.masked_in_logits(evaluation, rowset))
        yield rowset, p, o, rowset.classes


class LMac(Metric):
    name = "lmac"
    description = "Average increase / drop / gain of the explained class on the masked-in input"
    reference = "Paissan et al. 2024 (L-MAC), SpeechBrain recipes/ESC50/interpret"
    columns = (
        Column("lmac_ai", Direction.HIGHER, "%", f"100 mean[p_c < o_c], {KEPT}; {ONCE}"),
        Column(
            "lmac_ad",
            Direction.LOWER,
            "%",
            f"100 mean(relu(p_c - o_c)/p_c), {KEPT}; {ONCE} (not SpeechBrain's double)",
        ),
        Column(
            "lmac_ag",
            Direction.HIGHER,
            "%",
            f"100 mean(relu(o_c - p_c)/(1 - p_c)), {KEPT}; {ONCE}",
        ),
    )

    version = "2"

    def compute(self, evaluation: Evaluation) -> dict[str, float | RowValues]:
        out: dict[str, float | RowValues] = {}
        for rowset, p, o, c in _explained_pairs(evaluation):
            pc, oc = _common.explained(p, c).numpy(), _common.explained(o, c).numpy()
            out.update(
                (
                    rowset.values("lmac_ai", per_row(scores.average_increase, pc, oc)),
                    rowset.values("lmac_ad", per_row(scores.average_drop, pc, oc)),
                    rowset.values("lmac_ag", per_row(scores.average_gain, pc, oc)),
                )
            )
        return out


class LMacMulticlass(Metric):
    """The two L-MAC numbers that need a single-label softmax classifier."""

    name = "lmac_multiclass"
    description = "Input fidelity (top-1 kept on the masked-in input) and SpeechBrain's AD"
    reference = "Paissan et al. 2024 (L-MAC), SpeechBrain recipes/ESC50/interpret"
    tasks = frozenset({Task.MULTICLASS})
    columns = (
        Column(
            "lmac_fid_in",
            Direction.HIGHER,
            "fraction",
            f"mean[argmax softmax f(kept) = argmax softmax f(X)], {KEPT}",
        ),
        Column(
            "lmac_ad_speechbrain",
            Direction.LOWER,
            "%",
            "AD on softmax(softmax(logits)) as SpeechBrain codes it; compare with "
            "published L-MAC AD only",
        ),
    )

    version = "2"

    def compute(self, evaluation: Evaluation) -> dict[str, float | RowValues]:
        out: dict[str, float | RowValues] = {}
        for rowset, p, o, c in _explained_pairs(evaluation):
            p, o, c = p.numpy(), o.numpy(), c.long().cpu().numpy()
            out.update(
                (
                    rowset.values("lmac_fid_in", per_row(scores.top1_unchanged, p, o)),
                    rowset.values(
                        "lmac_ad_speechbrain", per_row(scores.average_drop_double_softmax, p, o, c)
                    ),
                )
            )
        return out
