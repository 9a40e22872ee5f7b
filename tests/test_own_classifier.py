"""The README's recipe: a trained model of one's own, wrapped in one file
(``examples/own_classifier/my_classifier.py``), installed as a package and benchmarked
through `l2i-bench run` with its weights; wrong weights are refused with the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import torch
from wheels import build_wheel, cli, install

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_classifier"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The example installed as a real package; the environment that sees it."""
    where = tmp_path_factory.mktemp("own-classifier")
    source = (EXAMPLE / "my_classifier.py").read_text()
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"]["l2i_bench"]  # what the example declares
    entry = "\n".join(f"{name} = {module}" for name, module in declared.items())
    wheel = build_wheel(where, project["name"], {"my_classifier.py": source}, entry)
    target = install(wheel, where / "site")
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    env.pop("L2I_BENCH_LOAD_PLUGINS", None)
    return env


def _weights(path: Path, classes: int, env: dict[str, str]) -> Path:
    """Weights of MyNet "trained elsewhere" (seeded), saved as a state dict."""
    code = (
        "import sys, torch; from my_classifier import MyNet; torch.manual_seed(0); "
        f"torch.save(MyNet({classes}).state_dict(), sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True)
    return path


def _run(env, synth_dir, tmp_path, weights: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli()
        + ["run", "--dataset", "synth", "--data-dir", str(synth_dir), "--folds", "1"]
        + ["--explainers", "gradcam,random", "--limit", "3", "--device", "cpu", "--quiet"]
        + ["--classifier", "name=my-cnn", "--classifier", f"pretrained={weights}"]
        + ["--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
        + ["--no-report", "--threads", "1"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


def test_an_own_model_is_listed_and_benchmarked(installed, synth_dir, tmp_path):
    listed = subprocess.run(cli() + ["plugins"], env=installed, capture_output=True, text=True)
    line = next(x for x in listed.stdout.splitlines() if x.split()[:2] == ["classifier", "my-cnn"])
    assert "[taps block1, block2, block3; late block1, block2, block3; load-only]" in line
    done = _run(installed, synth_dir, tmp_path, _weights(tmp_path / "w.pt", 10, installed))
    assert done.returncode == 0, done.stderr[-3000:]
    board = pd.read_csv(tmp_path / "out" / "synth--my-cnn" / "leaderboard.csv")
    assert set(board["explainer"]) == {"gradcam", "random"}
    # used as loaded: the weights were never trained (no epoch beyond the check)
    [manifest] = [
        json.loads(p.read_text()) for p in (tmp_path / "out" / "synth--my-cnn" / "runs").glob("*")
    ]
    record = manifest["classifier"]["1/seed-0"]
    assert record["best_epoch"] == 0
    state = torch.load(tmp_path / "w.pt", weights_only=True)
    checkpoint = torch.load(record["checkpoint"], weights_only=True)["state_dict"]
    assert torch.equal(checkpoint["head.weight"], state["head.weight"])


def test_weights_for_other_classes_or_none_are_refused(installed, tmp_path, monkeypatch):
    """In this process (the CLI path is the test above): the installed module itself."""
    monkeypatch.syspath_prepend(installed["PYTHONPATH"])
    from my_classifier import MyClassifier

    from l2i_bench.classifier import ClassifierConfig, train_or_load_classifier
    from l2i_bench.errors import BenchError
    from l2i_bench.types import Task

    weights = _weights(tmp_path / "w7.pt", 7, installed)
    with pytest.raises(BenchError, match="was trained for 7 classes, the dataset has 10"):
        MyClassifier(10, Task.MULTICLASS).load_pretrained(weights)
    with pytest.raises(BenchError, match="is load-only: it needs its weights") as refused:
        train_or_load_classifier(
            [],  # refused before any clip is read
            [],
            task=Task.MULTICLASS,
            num_classes=10,
            config=ClassifierConfig(name="my-cnn"),
            cache_dir=tmp_path / "cache",
            cache_key="k",
            device="cpu",
            architecture=MyClassifier,
        )
    assert "--classifier pretrained=PATH" in refused.value.fix
