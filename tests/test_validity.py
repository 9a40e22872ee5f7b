"""Paired tests and the metric validity verdicts, on data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from cells import make_cell

from l2i_bench.results import CellResult, Score, leaderboard, pack_rows
from l2i_bench.stats import paired_better
from l2i_bench.types import RowValues
from l2i_bench.validity import failing_columns, metric_validity


def test_paired_test_by_hand_on_a_tiny_case():
    # differences 1, 2, 3, -0.5: ranks 2, 3, 4 positive and 1 negative
    a = np.array([2.0, 3.0, 4.0, 0.5])
    b = np.array([1.0, 1.0, 1.0, 1.0])
    test = paired_better(a, b)
    assert test.n == 4
    assert test.rank_biserial == pytest.approx((9 - 1) / 10)
    assert test.median_difference == pytest.approx(1.5)
    # exact one-sided p: P(W+ >= 9) over 2^4 sign patterns of ranks 1..4 = 2/16
    assert test.p_value == pytest.approx(2 / 16)
    # lower-is-better flips the sign
    assert paired_better(a, b, higher_is_better=False).rank_biserial == pytest.approx(-0.8)


def test_paired_test_detects_a_known_shift_and_holds_its_level():
    rng = np.random.default_rng(0)
    shifted = [
        paired_better(rng.normal(0.5, 1, 80), rng.normal(0, 1, 80)).p_value for _ in range(200)
    ]
    # differences have sd sqrt(2): effect 0.35 sd, n = 80, one-sided 5 %: power about 0.93
    assert np.mean(np.array(shifted) < 0.05) > 0.85
    null = [paired_better(rng.normal(0, 1, 80), rng.normal(0, 1, 80)).p_value for _ in range(400)]
    rate = np.mean(np.array(null) < 0.05)
    assert rate < 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)  # one-sided level 5 %


def test_all_equal_rows_give_no_evidence():
    test = paired_better(np.ones(10), np.ones(10))
    assert test.p_value == 1.0 and test.rank_biserial == 0.0


def _cell(explainer: str, fold: str, values: dict[str, np.ndarray], reference=True) -> CellResult:
    rows = {}
    scores = []
    for column, vals in values.items():
        keys = [f"test/clip{i}/0" for i in range(len(vals))]
        rows[column] = RowValues.of(keys, vals)
        direction = "lower" if column.startswith("deletion") else "higher"
        scores.append(Score("m", column, float(rows[column]), direction, n=len(vals)))
    scores.append(Score("timing", "fit_seconds", 1.0, "lower", meta_evaluated=False))
    return make_cell(
        fold, explainer, scores, dataset="synth", reference=reference, rows=pack_rows(rows)
    )


def _reference_cells(order: dict[str, float], noise: float = 0.05) -> list[CellResult]:
    rng = np.random.default_rng(1)
    cells = []
    for fold in ("1", "2"):
        base = rng.normal(0, 1, 30)
        for name, level in order.items():
            vals = base + level + rng.normal(0, noise, 30)
            cells.append(_cell(name, fold, {"good_auc": vals, "deletion_auc": -vals}))
    return cells


def test_a_column_that_orders_the_references_passes_and_reversed_fails():
    cells = _reference_cells({"oracle": 1.0, "random": 0.5, "anti-oracle": 0.0})
    table = metric_validity(cells).set_index("column")
    assert table.loc["good_auc", "verdict"] == "pass"
    assert table.loc["good_auc", "n_oracle_random"] == 60  # two folds of 30 rows, paired
    assert table.loc["good_auc", "effect_oracle_random"] == pytest.approx(0.5, abs=0.05)
    # deletion is lower-is-better: its values are the negation, so it passes too
    assert table.loc["deletion_auc", "verdict"] == "pass"
    assert table.loc["fit_seconds", "verdict"] == "untestable"
    flipped = _reference_cells({"oracle": 0.0, "random": 0.5, "anti-oracle": 1.0})
    table = metric_validity(flipped).set_index("column")
    assert table.loc["good_auc", "verdict"] == "fail"
    assert "oracle vs random" in table.loc["good_auc", "reason"]
    assert failing_columns(metric_validity(flipped)) == {"good_auc", "deletion_auc"}


def test_random_equal_to_anti_oracle_fails_on_the_second_comparison():
    cells = _reference_cells({"oracle": 1.0, "random": 0.0, "anti-oracle": 0.0}, noise=0.01)
    row = metric_validity(cells).set_index("column").loc["good_auc"]
    assert row["verdict"] == "fail"
    assert row["p_oracle_random"] < 1e-6
    assert "random vs anti-oracle" in row["reason"]


def test_without_oracle_cells_every_column_is_untestable():
    cells = [c for c in _reference_cells({"random": 0.5, "x": 0.0}) if c.explainer == "random"]
    table = metric_validity(cells)
    assert set(table["verdict"]) == {"untestable"}
    assert table.set_index("column").loc["good_auc", "reason"].startswith("no oracle, anti-oracle")


def test_leaderboard_flags_failing_columns_and_puts_references_last():
    cells = _reference_cells({"oracle": 0.0, "random": 0.5, "anti-oracle": 1.0})
    cells += [
        _cell("method", f, {"good_auc": np.ones(30), "deletion_auc": np.ones(30)}, False)
        for f in "12"
    ]
    board = leaderboard(cells, failing_columns(metric_validity(cells)))
    assert "good_auc ↑ ✗" in board.columns
    assert "fit_seconds ↓" in board.columns
    assert board["explainer"].iloc[0] == "method"
    assert board["reference"].tolist() == [False, True, True, True]


def test_packed_rows_round_trip_and_share_keys():
    a = RowValues(("x", "y"), (1.0, 2.0), "median")
    b = RowValues(("y", "z"), (3.0, 4.0))
    packed = pack_rows({"a": a, "b": b})
    assert packed["keys"] == ["x", "y", "z"]
    cell = _cell("oracle", "1", {})
    cell.rows = packed
    assert cell.row_values("a") == a
    assert cell.row_values("b") == b
    assert float(cell.row_values("a")) == 1.5
    assert cell.row_values("missing") is None
