"""A third-party explainer installed as a real package runs through `l2i-bench run`."""

from __future__ import annotations

import json
import os
import subprocess

import pandas as pd
from wheels import build_wheel, cli, install

PLUGIN_SOURCE = """
from l2i_bench import hookimpl
from l2i_bench.types import Explainer, Explanation, Option


class EnergyExplainer(Explainer):
    name = "energy"
    description = "loudest bins"
    options = {"share": Option(0.2, "share of the bins kept (0 to 1)")}
    passes = "no classifier pass"

    def explain(self, batch, classes):
        share = self.context.option("share")
        magnitude = batch.magnitude
        cutoff = magnitude.flatten(1).quantile(1 - share, dim=1)
        mask = (magnitude >= cutoff[:, None, None]).float()
        return Explanation(mask=mask, relevance=mask.mean(dim=1))


@hookimpl
def register_explainers(register):
    register(EnergyExplainer)
"""


def test_installed_plugin_is_listed_and_benchmarked(tmp_path, synth_dir, cache_dir):
    wheel = build_wheel(
        tmp_path,
        "l2i-bench-energy",
        {"l2i_bench_energy_plugin.py": PLUGIN_SOURCE},
        "energy = l2i_bench_energy_plugin",
    )
    target = install(wheel, tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("L2I_BENCH_LOAD_PLUGINS", None)
    listed = subprocess.run(cli() + ["plugins"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert any(
        line.split()[:3] == ["explainer", "energy", "l2i-bench-energy"]
        for line in listed.stdout.splitlines()
    ), listed.stdout
    options = subprocess.run(
        cli() + ["plugins", "--options", "energy"], env=env, capture_output=True, text=True
    )
    assert options.stdout.splitlines()[1].split() == [
        "share",
        "0.2",
        *["share", "of", "the", "bins", "kept", "(0", "to", "1)"],
    ]
    out = tmp_path / "results"
    run = subprocess.run(
        cli()
        + [
            "run",
            "--explainers",
            "energy,random",
            "--dataset",
            "synth",
            "--data-dir",
            str(synth_dir),
            "--cache-dir",
            str(cache_dir),
            "--folds",
            "1",
            "--limit",
            "6",
            "--classifier",
            "epochs=2",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--quiet",
            "--option",
            "energy.share=0.1",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    board = pd.read_csv(out / "synth" / "leaderboard.csv").set_index("explainer")
    assert set(board.index) == {"energy", "random"}
    manifest = json.loads(next((out / "synth" / "runs").glob("*.json")).read_text())
    assert manifest["dataset"]["folds"]["1"]["explainer_options"]["energy"] == {"share": "0.1"}


def test_cli_errors_are_two_lines_with_a_fix(tmp_path):
    done = subprocess.run(
        cli() + ["run", "--explainers", "nope", "--dataset", "synth"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "unknown explainer 'nope'" in done.stderr and "fix:" in done.stderr
    assert "Traceback" not in done.stderr
