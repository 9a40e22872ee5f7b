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


def test_classifier_table_follows_the_cells_not_a_stale_file(tmp_path):
    """classifier.csv is derived at publication from the classifiers the cells explain
    (by sha256) and the run manifests that recorded them, the cells' own run first: a
    stale file, a later retrained classifier and a later reload of the same weights
    are ignored, and a classifier no manifest records is said to be unknown."""
    root = tmp_path / "d"
    first = "20260101T000000Z-s0"
    cells = [
        make_cell(
            fold,
            "l2i",
            [Score("fid", "fidelity_top1", 0.5, "higher")],
            seed=seed,
            classifier_sha256=sha,
            run_id=run,
        )
        for fold, seed, sha, run in (
            ("10", 0, "a" * 64, first),
            ("2", 0, "b" * 64, "a run whose manifest is not here"),
            ("2", 1, "c" * 64, first),
        )
    ]
    for c in cells:
        write_json_atomic(cell_path(tmp_path, "d", c.fold, c.explainer, c.seed), c.to_json())
    (root / "runs").mkdir()

    def manifest(run_id, records):
        classifier = {
            f"{fold}/seed-{seed}": {"sha256": sha, "test_quality": {"accuracy": acc}}
            for fold, seed, sha, acc in records
        }
        path = root / "runs" / f"{run_id}.json"
        path.write_text(json.dumps({"run_id": run_id, "classifier": classifier}))

    manifest(first, [("10", 0, "a" * 64, 0.25), ("2", 0, "b" * 64, 0.5)])
    # later: fold 10 retrained (another sha), and the same weights reloaded elsewhere
    manifest("20260102T000000Z-s0", [("10", 0, "f" * 64, 0.99)])
    manifest("20260103T000000Z-s0", [("10", 0, "a" * 64, 0.7)])
    pd.DataFrame({"fold": ["10"], "seed": [0], "accuracy": [0.99]}).to_csv(
        root / "classifier.csv", index=False
    )
    publish(tmp_path, "d")
    table = pd.read_csv(root / "classifier.csv", dtype={"fold": str}, keep_default_na=False)
    assert list(zip(table["fold"], table["seed"], strict=True)) == [("2", 0), ("2", 1), ("10", 0)]
    assert list(table["accuracy"]) == ["0.5", "", "0.25"]  # read as text: one is empty
    assert list(table["classifier_sha256"]) == ["b" * 12, "c" * 12, "a" * 12]
    assert list(table["run"]) == [first, "", first]
    assert table["note"][1].startswith("no manifest in runs/ records this classifier")
    assert table["note"][0] == table["note"][2] == ""


def test_classifier_table_names_the_run_that_trained_a_resumed_boards_classifier(tmp_path):
    """A board whose fold was finished by a second run (which reloaded the classifier)
    names the run that trained it, not the newest one that recorded it."""
    root = tmp_path / "d"
    trained, resumed = "20260101T000000Z-s0", "20260102T000000Z-s0"
    for name, run in (("l2i", trained), ("slime", resumed)):
        cell = make_cell(
            "5",
            name,
            [Score("fid", "fidelity_top1", 0.5, "higher")],
            classifier_sha256="a" * 64,
            run_id=run,
        )
        write_json_atomic(cell_path(tmp_path, "d", "5", name, 0), cell.to_json())
    (root / "runs").mkdir()
    for run, reused in ((trained, False), (resumed, True)):
        record = {"sha256": "a" * 64, "reused": reused, "test_quality": {"accuracy": 0.9}}
        (root / "runs" / f"{run}.json").write_text(
            json.dumps({"run_id": run, "classifier": {"5/seed-0": record}})
        )
    publish(tmp_path, "d")
    table = pd.read_csv(root / "classifier.csv", dtype={"fold": str})
    assert list(table["run"]) == [trained]
    assert list(table["accuracy"]) == [0.9]
