"""The stage profile: every run's manifest says where its seconds went, per fold, cell and
stage, and ``run --profile`` prints it. An explainer that sleeps known seconds in its fit
and in each explain call shows them in the right stage; the stages never add up to more
than the wall time; a fit loaded from the cache is marked as loaded; cell files keep
their keys."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fault_plugins import Sleepy, registry, tiny_config

from l2i_bench import cli
from l2i_bench.profiling import profile_table, timed_seconds
from l2i_bench.runner import run_benchmark

SLACK = 60.0
"""Upper bound on a stage's real seconds beside its sleeps (a shared, loaded machine):
far below :attr:`Sleepy.EXPLAIN_SECONDS`, so one sleep in the wrong stage fails."""


@pytest.fixture(autouse=True)
def real_clock_after(monkeypatch):
    """Sleepy shifts ``time.perf_counter`` (its sleeps are virtual): undo it afterwards."""
    monkeypatch.setattr(time, "perf_counter", time.perf_counter)


def _manifest(summary) -> dict:
    return json.loads(Path(summary.manifest).read_text())


def _explain_calls(manifest: dict, batch_size: int = 16) -> tuple[int, int]:
    """How many explain calls the test set and the condition sets take."""
    split = manifest["dataset"]["folds"]["1"]
    conditions = sum(math.ceil(n / batch_size) for n in split["conditions"].values())
    return math.ceil(split["test"] / batch_size), conditions


def _claimed(profile: dict) -> float:
    """Seconds the run's stages claim: setup, folds, cells, publishing, report."""
    folds = sum(f["total"] for f in profile["folds"].values())
    cells = sum(c.get("total", 0.0) for c in profile["cells"].values())
    return sum(profile["run"].values()) + folds + cells


def test_known_sleeps_land_in_their_stages_and_a_cached_fit_is_marked_loaded(synth_dir, tmp_path):
    config = tiny_config(
        synth_dir,
        tmp_path / "out",
        tmp_path / "cache",
        explainers=["sleepy", "random"],
        listen=1,
    )
    manifest = _manifest(run_benchmark(config, registry()))
    profile = manifest["profile"]
    assert profile["executor"] == "sequential" and profile["unit"] == "seconds"
    test_calls, condition_calls = _explain_calls(manifest)
    assert test_calls == 1 and condition_calls >= 2  # the tiny synth's 4 test clips, 2 sets

    cell = profile["cells"]["1/seed-0/sleepy"]
    assert cell["status"] == "done" and cell["fit_source"] == "fitted"
    assert Sleepy.FIT_SECONDS <= cell["fit"] < Sleepy.FIT_SECONDS + SLACK
    explain = Sleepy.EXPLAIN_SECONDS
    assert test_calls * explain <= cell["explain_test"] < test_calls * explain + SLACK
    assert (
        condition_calls * explain <= cell["explain_conditions"] < condition_calls * explain + SLACK
    )
    # the sleeps are not counted anywhere else
    assert cell["metrics"] and sum(cell["metrics"].values()) < SLACK
    assert 0 < cell["listening"] < SLACK and 0 <= cell["other"] < SLACK
    assert timed_seconds(cell) <= cell["total"] + 0.01
    random = profile["cells"]["1/seed-0/random"]
    assert random["fit_source"] == "none" and random["fit"] < 0.5

    fold = profile["folds"]["1/seed-0"]
    assert fold["classifier_reused"] is False and fold["classifier"] > 0 and fold["audio"] > 0
    assert fold["total"] < SLACK  # no explainer's sleep in the fold's stages
    stages = fold["audio"] + fold["classifier"] + fold["classifier_eval"] + fold["other"]
    assert stages == pytest.approx(fold["total"], abs=0.01)
    assert profile["run"]["setup"] > 0 and profile["run"]["publish"] > 0
    assert 0 < _claimed(profile) <= profile["wall"] + 0.01
    # the cell file keeps its keys: the profile lives in the manifest only
    stored = json.loads(
        (
            tmp_path / "out" / "synth-tiny" / "cells" / "fold-1" / "seed-0" / "sleepy.json"
        ).read_text()
    )
    assert "profile" not in stored
    assert set(stored["fit"]) == {"slept", "fit_seconds", "metric_seconds"}
    assert set(stored["fit"]["metric_seconds"]) == set(cell["metrics"])

    again = _manifest(run_benchmark(replace(config, force=True), registry()))
    cached = again["profile"]["cells"]["1/seed-0/sleepy"]
    assert cached["fit_source"] == "cache"
    assert cached["fit"] < Sleepy.FIT_SECONDS  # loading, not sleeping
    assert cached["fit_original_seconds"] >= Sleepy.FIT_SECONDS
    assert again["profile"]["folds"]["1/seed-0"]["classifier_reused"] is True
    assert _claimed(again["profile"]) <= again["profile"]["wall"] + 0.01
    table = profile_table(again["profile"])
    assert "1 cached" in table and "* fit loaded from the cache" in table


def test_run_profile_prints_a_table_that_fits_100_columns(synth_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "load_registry", registry)
    out = tmp_path / "out"
    args = [
        "run",
        "--dataset",
        "synth-tiny",
        "--data-dir",
        str(synth_dir),
        "--explainers",
        "sleepy,random",
        "--folds",
        "1",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--classifier",
        "epochs=1",
        "--classifier",
        "width=0.125",
        "--listen",
        "0",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--quiet",
        "--profile",
    ]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    table = text[text.index("stage profile:") :]
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 100
    labels = [line[:38].strip() for line in lines]
    for label in (
        "audio load/decode",
        "classifier train/load",
        "explainer fit",
        "explain test set",
        "explain condition sets",
        "metrics",
        "publish",
        "report",
        "wall",
    ):
        assert label in labels, label
    fit = next(line for line in lines if line.startswith("explainer fit"))
    assert "1 fitted, 0 cached" in fit
    row = next(line for line in lines if line.startswith("1/seed-0/sleepy"))
    assert float(row.split()[1]) >= Sleepy.FIT_SECONDS
    assert lines[-1].startswith("1/seed-0/random")
    # the report's build is in the manifest with the rest, and in the wall time
    [manifest] = (out / "synth-tiny" / "runs").glob("*.json")
    profile = json.loads(manifest.read_text())["profile"]
    assert profile["run"]["report"] > 0
    assert _claimed(profile) <= profile["wall"] + 0.01
    wall = next(line for line in lines if line.startswith("wall")).split()
    assert float(wall[1]) == pytest.approx(profile["wall"], abs=0.051) and wall[2] == "100.0"


def test_the_table_marks_cached_fits_failed_cells_and_parallel_seconds():
    profile = {
        "unit": "seconds",
        "executor": "ray",
        "wall": 100.0,
        "run": {"setup": 5.0, "publish": 2.0},
        "folds": {"1/seed-0": {"audio": 10.0, "classifier": 20.0, "classifier_reused": False}},
        "cells": {
            "1/seed-0/l2i": {
                "workspace": 1.0,
                "fit": 0.5,
                "fit_source": "cache",
                "fit_original_seconds": 300.0,
                "explain_test": 30.0,
                "explain_conditions": 20.0,
                "metrics": {"lmac": 40.0, "coverage": 1.0},
                "total": 95.0,
                "other": 2.5,
                "status": "done",
            },
            "1/seed-0/slime": {"fit": 0.0, "fit_source": "none", "status": "failed"},
        },
    }
    lines = profile_table(profile).splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "overlap" in lines[1]  # parallel workers: shares may exceed 100 %
    assert not any(line.startswith("driver") for line in lines)
    fit = next(line for line in lines if line.startswith("explainer fit"))
    assert fit.split()[2:4] == ["0.50", "0.5"] and fit.endswith(
        "0 fitted, 1 cached (fits took 300.0 s)"
    )
    lmac = next(line for line in lines if line.startswith("  lmac"))
    assert lmac.split()[1:3] == ["40.0", "40.0"]
    cell = next(line for line in lines if line.startswith("1/seed-0/l2i"))
    assert cell.split()[1:] == [
        "0.50*",
        "30.0",
        "20.0",
        "41.0",
        "0.00",
        "3.50",
        "95.0",
        "95.0",
        "%",
    ]
    assert next(line for line in lines if line.startswith("1/seed-0/slime")).endswith("failed")
