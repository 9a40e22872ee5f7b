"""``l2i-bench verify``: a rerun of a small published grid is confirmed column by
column; a published number that a rerun cannot reproduce is reported outside."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cells import make_cell

from l2i_bench.cli import main
from l2i_bench.errors import BenchError
from l2i_bench.provenance import arithmetic, cpu_identity
from l2i_bench.registry import load_registry
from l2i_bench.results import Score, pack_rows
from l2i_bench.runner import RunConfig, run_benchmark
from l2i_bench.types import RowValues
from l2i_bench.verify import (
    VerifyRequest,
    compare,
    describe_arithmetic,
    published_config,
    verify,
)

KEYS = [f"test/c{i}/0" for i in range(40)]


def _cell(values, *, fidelity=0.5, explainer="l2i"):
    rows = {"ff_prob_drop": RowValues.of(KEYS[: len(values)], values)}
    scores = [
        Score("ff", "ff_prob_drop", float(rows["ff_prob_drop"]), "higher"),
        Score("fid", "fidelity_auprc", fidelity, "higher"),
        Score("timing", "fit_seconds", 3.0, "lower"),
    ]
    return make_cell("1", explainer, scores, rows=pack_rows(rows))


def test_compare_statuses_by_hand():
    rng = np.random.default_rng(0)
    rows = rng.normal(0.5, 0.1, size=40)
    published = [_cell(rows)]
    same = compare(published, [_cell(rows)]).set_index("column")
    assert set(same["status"]) == {"identical"} and "fit_seconds" not in same.index
    near = compare(published, [_cell(rows + 0.001, fidelity=0.6)]).set_index("column")
    assert near.loc["ff_prob_drop", "status"] == "inside"
    low, high = near.loc["ff_prob_drop", ["ci_low", "ci_high"]]
    assert low < rows.mean() < high and high - low == pytest.approx(4 * 0.1 / np.sqrt(40), rel=0.25)
    assert near.loc["fidelity_auprc", "status"] == "no interval"
    far = compare(published, [_cell(rows + 0.2)]).set_index("column")
    assert far.loc["ff_prob_drop", "status"] == "outside"
    assert compare(published, [_cell(rows, explainer="new")])["status"].eq("missing").all()


def test_a_limited_rerun_is_held_to_the_published_rows_of_the_same_clips():
    rows = np.r_[np.zeros(20), np.ones(20)]
    published = [_cell(rows)]
    (rec,) = [
        r
        for r in compare(published, [_cell(np.zeros(20))]).itertuples()
        if r.column == "ff_prob_drop"
    ]
    # against all 40 rows (mean 0.5) this would be far outside; against its own 20 clips
    # it is the published number exactly
    assert rec.published == 0.0 and rec.rows == 20 and rec.status == "identical"


def test_verify_reruns_a_small_published_grid_and_confirms_it(synth_dir, tmp_path, capsys):
    registry = load_registry()
    out = tmp_path / "results"
    # Its own cache: a classifier another test trained (at another thread count) would
    # differ from the rerun's in the last bits, and the rerun would be "inside", not equal.
    cache_dir = tmp_path / "published-cache"
    config = RunConfig(
        dataset="synth",
        explainers=["random"],
        folds=["1"],
        data_dir=synth_dir,
        device="cpu",
        limit=4,
        out=out,
        cache_dir=cache_dir,
        classifier={"epochs": 2},
        listen=0,
        show_progress=False,
    )
    run_benchmark(config, registry)
    assert published_config(out / "synth")["limit"] == 4
    request = VerifyRequest(
        results=out / "synth", out=tmp_path / "verify", data_dir=synth_dir, show_progress=False
    )
    table, path = verify(request, registry)  # fresh cache: the classifier is retrained
    assert path.is_file() and len(table) > 40
    assert set(table["status"]) == {"identical"}, table[table["status"] != "identical"]
    assert set(table["classifier"]) == {"same"}
    # A published number no rerun reproduces (shifted by 0.5 with its rows): the CLI
    # reports it outside its interval and exits 1.
    cell_file = next((out / "synth" / "cells").glob("fold-1/seed-0/random.json"))
    cell = json.loads(cell_file.read_text())
    ff = cell["rows"]["columns"]["ff_prob_drop"]
    ff["values"] = [v + 0.5 for v in ff["values"]]
    for score in cell["scores"]:
        if score["column"] == "ff_prob_drop":
            score["value"] += 0.5
    cell_file.write_text(json.dumps(cell))
    # compared again without recomputing (``--rerun``), as after a republish
    argv = ["verify", str(out / "synth"), "--rerun", str(path.parent.parent), "--quiet"]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "values compared" in printed
    assert "outside: fold 1 seed 0 random ff_prob_drop" in printed
    assert (path.parent / "verify.csv").is_file()
    assert "retrained" not in printed
    # Published from another machine: its classifier has other weights. The summary says
    # which cells explain a retrained classifier, with both runs' recorded arithmetic.
    cell["classifier_sha256"] = "0" * 64
    cell_file.write_text(json.dumps(cell))
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "1 of 1 cells explain a classifier retrained to other weights" in printed
    here = describe_arithmetic(arithmetic())
    assert f"published on: {here}" in printed and f"rerun on:     {here}" in printed
    table = pd.read_csv(path.parent / "verify.csv")
    assert set(table["classifier"]) == {"retrained"}


def test_the_arithmetic_record_names_the_cpu_and_its_kernels():
    cpuinfo = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core"
        "\nflags\t\t: fpu avx2\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n"
    )
    assert cpu_identity(cpuinfo) == ("AMD EPYC 9654 96-Core", "AuthenticAMD")
    assert cpu_identity("processor : 0\nBogoMIPS : 50.00\n") == (None, None)  # ARM
    record = {
        "cpu": "AMD EPYC",
        "cpu_vendor": "AuthenticAMD",
        "torch_cpu_capability": "AVX2",
        "torch_blas": "mkl",
        "mkl": "2024.2",
        "onednn": "3.12.0",
        "numpy_simd": ["X86_V3"],
    }
    assert describe_arithmetic(record) == (
        "AMD EPYC (AuthenticAMD), torch AVX2, mkl 2024.2, oneDNN 3.12.0, numpy X86_V3"
    )
    assert describe_arithmetic(None).startswith("not recorded")
    # this machine's record: torch's own capability string, numpy's dispatch targets
    here = arithmetic()
    assert here["torch_cpu_capability"] in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256"}
    assert here["numpy_simd"] is None or all(isinstance(t, str) for t in here["numpy_simd"])


def test_verify_refuses_a_folder_without_a_finished_run(tmp_path):
    with pytest.raises(BenchError, match="no finished run manifest"):
        published_config(tmp_path / "synth")


@pytest.mark.parametrize("spec", ["0,0", "a,b", "-1", ","])
def test_bad_seed_lists_are_refused_with_the_fix(spec, capsys):
    assert main(["run", "--dataset", "synth", "--seeds", spec]) == 2
    err = capsys.readouterr().err
    assert f"--seeds {spec!r}" in err and "--seeds 0,1,2" in err
