"""Cell records for the tests of publishing and validity: the fields no test reads are
fixed here once, so each test names only what it is about."""

from __future__ import annotations

from typing import Any

from l2i_bench.results import CellResult, Score


def make_cell(fold: str, explainer: str, scores: list[Score], **fields: Any) -> CellResult:
    """A finished cell of dataset ``d`` (override with ``dataset=``) holding ``scores``."""
    base: dict[str, Any] = dict(
        dataset="d",
        explainer_version="1",
        seed=0,
        config_key="k",
        run_id="r",
        device="cpu",
        classifier_sha256="abc",
    )
    base.update(fields)
    return CellResult(fold=fold, explainer=explainer, scores=scores, **base)
