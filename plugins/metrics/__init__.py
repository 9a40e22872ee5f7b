"""Built-in metrics: one definition each, named precisely (issue 3).

The scoring itself lives in :mod:`l2i_bench.scores` (pure functions the runner's
classifier report reuses); each module here adapts one family to the
:class:`l2i_bench.types.Metric` contract. This package is the single ``metrics``
entry point, and :func:`register_metrics` registers every class below.
"""

from __future__ import annotations

from l2i_bench import hookimpl

from .complexity import MaskComplexity, RelevanceComplexity
from .coverage import MaskCoverage
from .curves import DeletionInsertion
from .faithfulness import Faithfulness
from .fidelity import FidelityAUPRC, FidelityTopK
from .ground_truth import GroundTruthLocalisation
from .lmac import LMac, LMacMulticlass
from .quality import ClassifierAccuracy, ClassifierAUPRC
from .sanity import SanityCheck
from .timing import Timing

METRICS = (
    ClassifierAccuracy,
    ClassifierAUPRC,
    FidelityTopK,
    FidelityAUPRC,
    Faithfulness,
    LMac,
    LMacMulticlass,
    DeletionInsertion,
    GroundTruthLocalisation,
    MaskCoverage,
    MaskComplexity,
    RelevanceComplexity,
    SanityCheck,
    Timing,
)


@hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)
