"""Contenders against the controls: paired over the same rows, verdict by p-value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cells import make_cell

from l2i_bench.comparisons import versus_controls
from l2i_bench.results import Score, pack_rows
from l2i_bench.stats import paired_better
from l2i_bench.types import RowValues


def _cell(explainer: str, values: np.ndarray, *, reference: bool, column="ff_prob_drop"):
    keys = [f"test/clip{i}/0" for i in range(len(values))]
    rows = {column: RowValues.of(keys, values)}
    score = Score("m", column, float(np.mean(values)), "higher", n=len(values))
    return make_cell("1", explainer, [score], reference=reference, rows=pack_rows(rows))


def test_a_contender_beats_a_control_only_when_the_paired_rows_say_so():
    rng = np.random.default_rng(0)
    base = rng.normal(size=30)
    shift = rng.normal(0.5, 0.2, size=30)  # positive on almost every row
    cells = [
        _cell("random", base, reference=True),
        _cell("loudest", base + shift + 1.0, reference=True),
        _cell("good", base + shift, reference=False),
    ]
    validity = pd.DataFrame(
        {"column": ["ff_prob_drop"], "verdict_rows": [True], "verdict": ["pass"]}
    )
    table = versus_controls(cells, validity).set_index("control")
    assert list(table["explainer"]) == ["good", "good"]
    vs_random, vs_loudest = table.loc["random"], table.loc["loudest"]
    expected = paired_better(base + shift, base)
    assert vs_random["p"] == pytest.approx(expected.p_value)
    assert vs_random["median_difference"] == pytest.approx(np.median(shift))
    assert vs_random["explainer_value"] == pytest.approx(np.mean(base + shift))
    assert vs_random["verdict"] == "beats" and vs_random["p"] < 1e-5
    # the loudest control is better on every row: no evidence the contender beats it
    assert vs_loudest["verdict"] == "does not beat" and vs_loudest["p"] > 0.99
    assert vs_loudest["rank_biserial"] == pytest.approx(-1.0)
    assert set(table["column_validity"]) == {"pass"}


def test_rows_only_one_side_has_are_left_out_and_unknown_validity_is_untestable():
    cells = [
        _cell("random", np.arange(10.0), reference=True),
        _cell("partial", np.arange(4.0) + 1.0, reference=False),
    ]
    (row,) = versus_controls(cells).itertuples()
    assert row.n == 4
    assert row.control_value == pytest.approx(np.mean(np.arange(4.0)))
    assert row.column_validity == "untestable"


def test_ground_truth_rows_pair_on_the_mixtures_and_test_rows_on_the_test_set():
    mixed = [f"overlap/clip{i}/0" for i in range(12)]
    test = [f"test/clip{i}/0" for i in range(12)]

    def cell(name, keys, values, reference):
        rows = {"gt_auroc_overlap": RowValues.of(keys, values)}
        score = Score("gt", "gt_auroc_overlap", float(np.mean(values)), "higher")
        return make_cell("1", name, [score], reference=reference, rows=pack_rows(rows))

    cells = [
        cell("random", mixed + test, np.r_[np.full(12, 0.5), np.full(12, 9.0)], True),
        cell("good", mixed, np.linspace(0.6, 0.9, 12), False),
    ]
    (row,) = versus_controls(cells).itertuples()
    assert row.n == 12 and row.control_value == pytest.approx(0.5)
    assert row.verdict == "beats"
