"""A third-party explainer installed as a real package runs through `l2i-bench run`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd

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


def _build_wheel(where: Path) -> Path:
    """A minimal, valid wheel written by hand: no build backend or network needed."""
    wheel = where / "l2i_bench_energy-0.1.0-py3-none-any.whl"
    dist = "l2i_bench_energy-0.1.0.dist-info"
    files = {
        "l2i_bench_energy_plugin.py": PLUGIN_SOURCE,
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: l2i-bench-energy\nVersion: 0.1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": "[l2i_bench]\nenergy = l2i_bench_energy_plugin\n",
    }
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        rows = [[name, "", ""] for name in files] + [[f"{dist}/RECORD", "", ""]]
        lines = []
        csv.writer(_Lines(lines)).writerows(rows)
        archive.writestr(f"{dist}/RECORD", "".join(lines))
    return wheel


class _Lines:
    def __init__(self, sink: list[str]):
        self.sink = sink

    def write(self, text: str) -> None:
        self.sink.append(text)


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "l2i-bench"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "l2i_bench.cli"]


def test_installed_plugin_is_listed_and_benchmarked(tmp_path, synth_dir, cache_dir):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(_build_wheel(tmp_path)),
        ],
        check=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("L2I_BENCH_LOAD_PLUGINS", None)
    listed = subprocess.run(_cli() + ["plugins"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert any(
        line.split()[:3] == ["explainer", "energy", "l2i-bench-energy"]
        for line in listed.stdout.splitlines()
    ), listed.stdout
    options = subprocess.run(
        _cli() + ["plugins", "--options", "energy"], env=env, capture_output=True, text=True
    )
    assert options.stdout.splitlines()[1].split() == [
        "share",
        "0.2",
        *["share", "of", "the", "bins", "kept", "(0", "to", "1)"],
    ]
    out = tmp_path / "results"
    run = subprocess.run(
        _cli()
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
        _cli() + ["run", "--explainers", "nope", "--dataset", "synth"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "unknown explainer 'nope'" in done.stderr and "fix:" in done.stderr
    assert "Traceback" not in done.stderr
