"""Paired tests between ranked explainers, Holm per column, tied ranks, agreement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cells import make_cell

from l2i_bench.agreement import agreement
from l2i_bench.results import Score, leaderboard, pack_rows
from l2i_bench.significance import significance
from l2i_bench.stats import holm, paired_better
from l2i_bench.types import RowValues


def _cell(explainer, columns: dict[str, np.ndarray], *, reference=False, fold="1", seed=0):
    rows, scores = {}, []
    for column, values in columns.items():
        direction = "lower" if column.startswith("deletion") else "higher"
        keys = [f"test/clip{i}/0" for i in range(len(values))]
        rows[column] = RowValues.of(keys, values)
        scores.append(Score("m", column, float(np.mean(values)), direction, n=len(values)))
    return make_cell(fold, explainer, scores, reference=reference, seed=seed, rows=pack_rows(rows))


def _grid(rng, n=40):
    base = rng.normal(size=n)
    return {
        "random": base,
        "good": base + 1.0 + rng.normal(0, 0.3, size=n),  # better on nearly every row
        "same": base + rng.normal(0, 0.3, size=n),  # indistinguishable from random
    }


def test_a_real_gap_separates_and_a_null_gap_ties_with_holm_over_the_column():
    rng = np.random.default_rng(0)
    values = _grid(rng)
    cells = [
        _cell(name, {"ff_prob_drop": v}, reference=name == "random") for name, v in values.items()
    ]
    table, ranks = significance(cells)
    assert ranks["ff_prob_drop"] == {"good": 1, "same": 2, "random": 2}
    table = table.set_index(["explainer", "versus"])
    good_random = table.loc[("good", "random")]
    raw = paired_better(values["good"], values["random"], alternative="two-sided").p_value
    assert good_random["p"] == pytest.approx(raw)
    assert good_random["role"] == "control" and good_random["verdict"] == "better"
    assert good_random["units"] == "rows" and good_random["n"] == 40
    same_best = table.loc[("same", "good")]
    assert same_best["role"] == "best" and same_best["verdict"] == "worse"
    assert table.loc[("same", "random"), "verdict"] == "not separated"
    # Holm over the column's three tests, in the table's order
    np.testing.assert_allclose(table["p_holm"], holm(table["p"].to_numpy()))


def test_lower_is_better_columns_rank_the_lowest_first():
    rng = np.random.default_rng(1)
    values = _grid(rng)
    cells = [
        _cell(name, {"deletion_auc": -v}, reference=name == "random") for name, v in values.items()
    ]
    _, ranks = significance(cells)
    assert ranks["deletion_auc"]["good"] == 1 and ranks["deletion_auc"]["random"] == 2


def test_oracle_references_are_not_ranked_and_set_level_columns_pair_on_cells():
    cells = []
    for fold, shift in zip("12345", [1.0, 1.2, 0.9, 1.1, 1.3], strict=True):
        for name, value in (("random", 0.0), ("good", shift), ("oracle", 5.0)):
            cells.append(
                make_cell(
                    fold,
                    name,
                    [Score("fid", "fidelity_auprc", value, "higher")],
                    reference=name != "good",
                )
            )
    table, ranks = significance(cells)
    assert set(ranks["fidelity_auprc"]) == {"good", "random"}
    (row,) = table.itertuples()
    assert row.units == "cells" and row.n == 5
    # five cells, all better: the exact two-sided p is 2/32, not enough to separate
    assert row.p == pytest.approx(2 / 32) and row.verdict == "not separated"
    assert ranks["fidelity_auprc"] == {"good": 1, "random": 1}


def test_leaderboard_carries_intervals_ranks_and_counts_of_folds_and_seeds():
    rng = np.random.default_rng(2)
    cells = []
    for seed in (0, 1):
        for fold in "12":
            for name, v in _grid(rng).items():
                cells.append(
                    _cell(
                        name, {"ff_prob_drop": v}, reference=name == "random", fold=fold, seed=seed
                    )
                )
    _, ranks = significance(cells)
    board = leaderboard(cells, ranks=ranks).set_index("explainer")
    good = board.loc["good"]
    assert (good["folds"], good["seeds"], good["cells"]) == (2, 2, 4)
    assert good["ff_prob_drop_ci_low"] < good["ff_prob_drop ↑"] < good["ff_prob_drop_ci_high"]
    assert good["ff_prob_drop_rank"] == 1 and board.loc["same", "ff_prob_drop_rank"] == 2
    # about 1.0 above random, with 160 rows the interval is narrow and excludes random
    assert good["ff_prob_drop_ci_low"] > board.loc["random", "ff_prob_drop_ci_high"]


def test_agreement_is_direction_adjusted_and_flags_ground_truth_columns():
    values = {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.0, "random": -1.0}
    cells = [
        make_cell(
            "1",
            name,
            [
                Score("m", "ff_prob_drop", v, "higher"),
                Score("m", "deletion_auc", -v, "lower"),  # same order, other direction
                Score("m", "gt_auroc_overlap", -v, "higher"),  # the reverse order
                Score("t", "fit_seconds", v, "lower", meta_evaluated=False),
            ],
            reference=name == "random",
        )
        for name, v in values.items()
    ]
    table = agreement(cells).set_index(["column_a", "column_b"])
    assert table.loc[("deletion_auc", "ff_prob_drop"), "tau"] == pytest.approx(1.0)
    gt = table.loc[("ff_prob_drop", "gt_auroc_overlap")]
    assert gt["tau"] == pytest.approx(-1.0) and gt["b_is_ground_truth"]
    assert gt["explainers"] == 5 and gt["p"] == pytest.approx(2 / 120)
    assert not any("fit_seconds" in pair for pair in table.index)  # cost is not truth
    assert isinstance(table, pd.DataFrame) and len(table) == 3
