"""Reference explainers from ground truth: ``oracle`` and ``anti-oracle``.

On data whose clips are known stem by stem (``synth``: every clip is a target event
plus an interference, ``X = S_t + S_i``), the true explanation of a correct decision is
known: the target. ``oracle`` returns the target's ideal ratio mask
``rho = |S_t|^2 / (|S_t|^2 + |S_i|^2)`` as a linear gain on ``|X|`` (Wiener-style: a bin
that is all target is kept whole, a bin that is all interference is removed), and its
relevance is the mask's per-frame mean. ``anti-oracle`` returns ``1 - rho``: the
interference, the explanation that is certainly false. Together with ``random`` they
calibrate every metric (:mod:`l2i_bench.validity`): a metric that cannot rank oracle
above random above anti-oracle cannot be trusted to rank methods.

Both are references, not contenders (marked in the leaderboard), and they read
``AudioBatch.stems``, so they run only on datasets with stems (``needs_stems``). On the
clean ``synth`` test clips the interference is the quiet background; on the condition
sets it is the other event or the white noise. Cost: two STFTs per clip.
"""

from __future__ import annotations

import torch

from l2i_bench import hookimpl, scores
from l2i_bench.errors import BenchError
from l2i_bench.types import AudioBatch, Explainer, Explanation


class OracleExplainer(Explainer):
    name = "oracle"
    description = "Reference: the target stem's ideal ratio mask (needs ground-truth stems)"
    unit = "STFT frame"
    reference = True
    needs_stems = True
    inverted = False
    passes = "two STFTs (the stems), no classifier pass"

    def explain(self, batch: AudioBatch, classes: torch.Tensor) -> Explanation:
        missing = [s for s in ("target", "interference") if s not in batch.stems]
        if missing:
            raise BenchError(
                f"explainer {self.name!r} needs the clips' ground-truth stems; this batch of "
                f"{self.context.dataset_name!r} has no {', '.join(missing)} stem",
                "run the oracle references only on datasets with stems (e.g. synth)",
            )
        front_end = self.context.front_end
        ratio = scores.oracle_ratio_mask(
            front_end.stft(batch.stems["target"].float()),
            front_end.stft(batch.stems["interference"].float()),
        ).float()
        mask = 1.0 - ratio if self.inverted else ratio
        return Explanation(mask=mask.to(batch.spec.device), relevance=mask.mean(dim=1))


class AntiOracleExplainer(OracleExplainer):
    name = "anti-oracle"
    description = "Reference: the interference's ideal ratio mask, a certainly false explanation"
    inverted = True


@hookimpl
def register_explainers(register):
    register(OracleExplainer)
    register(AntiOracleExplainer)
