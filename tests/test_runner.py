"""The grid end to end on a small synth run: publish, resume, force, interruption."""

from __future__ import annotations

import json
import types

import pandas as pd
import pytest
import torch

from l2i_bench import hookimpl
from l2i_bench.errors import BenchError
from l2i_bench.registry import PluginInfo, load_registry
from l2i_bench.runner import RunConfig, run_benchmark
from l2i_bench.types import Explainer, Explanation


class Interrupting(Explainer):
    """Keeps the quietest half of the bins; raises KeyboardInterrupt while armed, as a
    user's Ctrl-C would in the middle of a cell."""

    name = "interrupting"
    armed = True

    def explain(self, batch, classes):
        if Interrupting.armed:
            raise KeyboardInterrupt
        magnitude = batch.magnitude
        median = magnitude.flatten(1).median(dim=1).values
        return Explanation(mask=(magnitude <= median[:, None, None]).float())


def _registry():
    module = types.ModuleType("interrupting_plugin")

    def register_explainers(register):
        register(Interrupting)

    module.register_explainers = hookimpl(register_explainers)
    return load_registry([(PluginInfo("interrupting", "tests", "tests", "0"), module)])


def _config(synth_dir, cache_dir, out, **kw) -> RunConfig:
    base = dict(
        dataset="synth",
        explainers=["random", "interrupting"],
        folds=["1"],
        data_dir=synth_dir,
        device="cpu",
        limit=6,
        out=out,
        cache_dir=cache_dir,
        classifier={"epochs": 2},
        listen=1,
        show_progress=False,
    )
    base.update(kw)
    return RunConfig(**base)


def test_interrupted_run_resumes_without_recomputing(synth_dir, cache_dir, tmp_path):
    registry = _registry()
    out = tmp_path / "results"
    Interrupting.armed = True
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(_config(synth_dir, cache_dir, out), registry)
    random_cell = out / "synth" / "cells" / "fold-1" / "seed-0" / "random.json"
    assert random_cell.is_file()
    assert not (out / "synth" / "cells" / "fold-1" / "seed-0" / "interrupting.json").exists()
    manifests = list((out / "synth" / "runs").glob("*.json"))
    assert json.loads(manifests[0].read_text())["status"] == "interrupted"
    first_bytes = random_cell.read_bytes()

    Interrupting.armed = False
    summary = run_benchmark(_config(synth_dir, cache_dir, out), registry)
    assert summary.skipped == [("1", "random")]
    assert summary.computed == [("1", "interrupting")]
    assert random_cell.read_bytes() == first_bytes

    board = pd.read_csv(summary.leaderboard)
    assert list(board["explainer"]) == ["interrupting", "random"]
    long = pd.read_csv(summary.results)
    assert set(long["explainer"]) == {"random", "interrupting"}
    assert {"higher", "lower"} <= set(long["direction"])
    manifest = json.loads(summary.manifest.read_text())
    assert manifest["status"] == "finished"
    assert manifest["classifier"]["1/seed-0"]["reused"] is True  # trained by the first run
    assert manifest["dataset"]["folds"]["1"]["protocol"]
    assert "torch" in manifest["environment"]["packages"]
    assert (out / "synth" / "classifier.csv").is_file()
    assert list((out / "synth" / "listen" / "fold-1" / "random").glob("*.wav"))

    forced = run_benchmark(_config(synth_dir, cache_dir, out, force=True), registry)
    assert len(forced.computed) == 2


def test_same_seed_gives_same_numbers(synth_dir, cache_dir, tmp_path):
    registry = _registry()
    Interrupting.armed = False
    a = run_benchmark(
        _config(synth_dir, cache_dir, tmp_path / "a", explainers=["random"]), registry
    )
    b = run_benchmark(
        _config(synth_dir, cache_dir, tmp_path / "b", explainers=["random"]), registry
    )
    timing = ("seconds", "_ms", "memory")
    va = pd.read_csv(a.results)
    vb = pd.read_csv(b.results)
    keep = ~va["column"].str.contains("|".join(timing))
    pd.testing.assert_series_equal(va[keep]["value"], vb[keep]["value"])


def test_unknown_fold_and_bad_device_are_clear_errors(synth_dir, cache_dir, tmp_path):
    registry = _registry()
    with pytest.raises(BenchError, match="fold"):
        run_benchmark(_config(synth_dir, cache_dir, tmp_path, folds=["9"]), registry)
    if not torch.cuda.is_available():
        with pytest.raises(BenchError, match="CUDA"):
            run_benchmark(_config(synth_dir, cache_dir, tmp_path, device="cuda"), registry)


class Broken(Explainer):
    name = "broken"

    def explain(self, batch, classes):
        return Explanation(mask=torch.full_like(batch.magnitude, 2.0))  # outside [0, 1]


def test_a_bad_explainer_fails_its_cell_and_the_manifest_says_so(synth_dir, cache_dir, tmp_path):
    module = types.ModuleType("broken_plugin")
    module.register_explainers = hookimpl(lambda register: register(Broken))
    registry = load_registry([(PluginInfo("broken", "tests", "tests", "0"), module)])
    out = tmp_path / "results"
    summary = run_benchmark(_config(synth_dir, cache_dir, out, explainers=["broken"]), registry)
    [(fold, seed, name, error)] = summary.failed
    assert (fold, seed, name) == ("1", 0, "broken")
    assert "'broken' returned a mask outside [0, 1]" in error and "fix:" in error
    manifest = json.loads(summary.manifest.read_text())
    assert manifest["status"] == "finished, 1 cell(s) failed"
    assert manifest["cells"]["failed"] == [["1", 0, "broken", error]]
    assert not (out / "synth" / "cells" / "fold-1" / "seed-0" / "broken.json").exists()


def test_seeds_are_a_grid_axis_each_with_its_classifier_and_resumable(
    synth_dir, cache_dir, tmp_path
):
    registry = _registry()
    out = tmp_path / "results"
    config = _config(synth_dir, cache_dir, out, explainers=["random"], seeds=[0, 1], threads=1)
    threads = torch.get_num_threads()
    try:
        first = run_benchmark(config, registry)
    finally:
        torch.set_num_threads(threads)  # the setting is process-wide: leave it as found
    assert first.computed == [("1", "random"), ("1", "random")]
    cells = out / "synth" / "cells" / "fold-1"
    seeds = {p.parent.name: json.loads(p.read_text()) for p in cells.glob("seed-*/random.json")}
    assert set(seeds) == {"seed-0", "seed-1"}
    assert seeds["seed-0"]["classifier_sha256"] != seeds["seed-1"]["classifier_sha256"]
    board = pd.read_csv(first.leaderboard).set_index("explainer")
    assert (board.loc["random", "seeds"], board.loc["random", "cells"]) == (2, 2)
    manifest = json.loads(first.manifest.read_text())
    assert manifest["seeds"] == [0, 1] and set(manifest["classifier"]) == {"1/seed-0", "1/seed-1"}
    assert manifest["determinism"]["torch_threads"] == 1
    assert manifest["determinism"]["deterministic_algorithms"] is True
    assert manifest["publish_seconds"] > 0
    quality = pd.read_csv(out / "synth" / "classifier.csv", dtype={"fold": str})
    assert sorted(quality["seed"]) == [0, 1]
    again = run_benchmark(config, registry)
    assert again.computed == [] and len(again.skipped) == 2


def test_a_legacy_cell_is_read_and_replaced_by_its_seed_folder_twin(synth_dir, cache_dir, tmp_path):
    registry = _registry()
    out = tmp_path / "results"
    config = _config(synth_dir, cache_dir, out, explainers=["random"])
    run_benchmark(config, registry)
    current = out / "synth" / "cells" / "fold-1" / "seed-0" / "random.json"
    legacy = out / "synth" / "cells" / "fold-1" / "random.json"
    current.rename(legacy)  # as a results folder from before seeds were an axis
    resumed = run_benchmark(config, registry)
    assert resumed.skipped == [("1", "random")]  # same configuration: reused, not rerun
    forced = run_benchmark(
        _config(synth_dir, cache_dir, out, explainers=["random"], force=True), registry
    )
    assert forced.computed == [("1", "random")]
    assert current.is_file() and not legacy.exists()


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_draws_no_bar_and_otherwise_one_bar_follows_the_grid(
    synth_dir, cache_dir, tmp_path, capfd, quiet
):
    """--quiet: no progress bar from any stage (data, classifier, explainer, metrics);
    without it the grid's bar counts the cells (2 here) whatever the cell bars do."""
    Interrupting.armed = False
    run_benchmark(
        _config(synth_dir, cache_dir, tmp_path / "out", show_progress=not quiet),
        _registry(),
    )
    err = capfd.readouterr().err
    bars = [line for line in err.replace("\r", "\n").splitlines() if "|" in line]
    if quiet:
        assert bars == []
    else:
        assert any(line.startswith("synth grid: 2/2 cells |") for line in bars), bars[-5:]
