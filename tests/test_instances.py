"""Per-instance records: they round-trip, and they reproduce every published aggregate
to the last bit, in the published results folders themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cells import make_cell

from l2i_bench.instances import (
    cell_values,
    instance_table,
    read_instances,
    split_key,
    write_instances,
)
from l2i_bench.results import Score, pack_rows
from l2i_bench.types import RowValues

RESULTS = Path(__file__).resolve().parents[1] / "results"
PUBLISHED = sorted(p.parent for p in RESULTS.glob("**/instances.parquet"))


def test_keys_split_into_set_clip_and_class_even_with_slashes_in_the_clip_id():
    assert split_key("overlap/a/b.wav/3") == ("overlap", "a/b.wav", 3)


def test_records_round_trip_and_give_back_each_cell_value(tmp_path):
    values = np.array([0.1, 0.2, 0.7, 0.4])
    keys = [f"test/c{i}/{i % 2}" for i in range(4)]
    rows = {
        "ff_prob_drop": RowValues.of(keys, values),
        "explain_ms_median": RowValues.of(keys, values * 10, "median"),
        "ff_prob_drop@overlap": RowValues.of(["overlap/m0/1"], [0.9]),
    }
    scores = [
        Score("ff", "ff_prob_drop", float(rows["ff_prob_drop"]), "higher"),
        Score("t", "explain_ms_median", float(rows["explain_ms_median"]), "lower"),
    ]
    cell = make_cell("2", "l2i", scores, seed=1, rows=pack_rows(rows))
    frame, summaries = instance_table([cell], class_names=["dog", "cat"])
    write_instances(frame, summaries, tmp_path / "instances.parquet")
    back, back_summaries = read_instances(tmp_path / "instances.parquet")
    assert back_summaries == summaries and summaries["explain_ms_median"] == "median"
    assert len(back) == 5 and set(back["set"]) == {"test", "overlap"}
    assert back.loc[back["set"] == "overlap", "class"].item() == "cat"
    got = cell_values(back, back_summaries).set_index("column")
    assert got.loc["ff_prob_drop", "value"] == np.mean(values)
    assert got.loc["explain_ms_median", "value"] == np.median(values * 10)
    assert got.loc["ff_prob_drop@overlap", "n"] == 1
    assert (got["seed"] == 1).all() and (got["fold"] == "2").all()


@pytest.mark.skipif(not PUBLISHED, reason="no published instances.parquet yet")
@pytest.mark.parametrize("folder", PUBLISHED, ids=lambda p: str(p.relative_to(RESULTS)))
def test_published_records_reproduce_every_published_cell_value_exactly(folder):
    frame, summaries = read_instances(folder / "instances.parquet")
    recomputed = cell_values(frame, summaries)
    long = pd.read_csv(folder / "results.csv", dtype={"fold": str})
    merged = long.merge(recomputed, on=["seed", "fold", "explainer", "column"], how="inner")
    assert len(merged) > 0
    # every published number that has rows is among them (none is left unaudited) ...
    with_rows = long[long["value"].notna() & long["column"].isin(summaries)]
    assert len(merged) == len(with_rows)
    # ... and equals the summary of its records exactly (the long CSV keeps full floats)
    assert (merged["value_x"] == merged["value_y"]).all()
    assert (merged["n_x"] == merged["n_y"]).all()
