"""Result files: atomic cells, long CSV and leaderboard built from them."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from cells import make_cell

from l2i_bench.errors import BenchError
from l2i_bench.results import (
    CellResult,
    Score,
    cell_path,
    leaderboard,
    publish,
    read_cell,
    write_json_atomic,
)


def _cell(fold: str, explainer: str, value: float | None, note: str = "") -> CellResult:
    return make_cell(
        fold,
        explainer,
        [
            Score("fid", "fidelity_top1", value, "higher", note=note),
            Score("time", "explain_ms", 3.0, "lower"),
        ],
    )


def test_leaderboard_means_and_stds_over_folds_with_direction_in_header():
    rng = np.random.default_rng(0)
    values = {("a", f): float(rng.random()) for f in "123"}
    cells = [_cell(f, e, v) for (e, f), v in values.items()] + [_cell("1", "random", 0.1)]
    board = leaderboard(cells).set_index("explainer")
    expected = [values[("a", f)] for f in "123"]
    assert board.loc["a", "fidelity_top1 ↑"] == pytest.approx(np.mean(expected))
    assert board.loc["a", "fidelity_top1_std"] == pytest.approx(np.std(expected, ddof=1))
    assert board.loc["a", "folds"] == 3
    assert "explain_ms ↓" in board.columns
    assert list(board.index)[-1] == "random"  # the control row comes last


def test_empty_values_stay_empty_with_their_reason(tmp_path):
    cells = [
        _cell("1", "slime", None, note="explainer has no surrogate model"),
        _cell("1", "l2i", 0.8),
    ]
    for c in cells:
        write_json_atomic(cell_path(tmp_path, "d", c.fold, c.explainer), c.to_json())
    long_path, board_path = publish(tmp_path, "d")
    long = pd.read_csv(long_path)
    row = long[(long["column"] == "fidelity_top1") & (long["explainer"] == "slime")].iloc[0]
    assert math.isnan(row["value"]) and row["note"] == "explainer has no surrogate model"
    board = pd.read_csv(board_path).set_index("explainer")
    assert math.isnan(board.loc["slime", "fidelity_top1 ↑"])
    assert board.loc["l2i", "fidelity_top1 ↑"] == 0.8


def test_columns_empty_for_every_explainer_leave_the_leaderboard():
    cells = [_cell("1", "a", None, note="multilabel only"), _cell("1", "b", None, note="x")]
    board = leaderboard(cells)
    assert "fidelity_top1 ↑" not in board.columns and "explain_ms ↓" in board.columns


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path):
    path = tmp_path / "cell.json"
    write_json_atomic(path, {"ok": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"bad": float("nan")})  # JSON has no NaN: refused
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["cell.json"]


def test_torn_cell_is_treated_as_not_done(tmp_path):
    path = tmp_path / "cell.json"
    path.write_text('{"dataset": "d", "fold"')
    assert read_cell(path) is None


def test_unwritable_results_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BenchError, match="cannot write results"):
        write_json_atomic(blocker / "sub" / "cell.json", {})
