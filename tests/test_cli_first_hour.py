"""What a new user meets in the first hour: options and limits checked before any work,
names with a suggestion, publish of nothing refused, quiet meaning quiet, their runs
kept out of the published results, and the README's costs coming from the code."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from l2i_bench.cli import LOCAL_OUT, build_parser, main
from l2i_bench.options import cost_per_clip
from l2i_bench.registry import load_registry

README = Path(__file__).resolve().parents[1] / "README.md"


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("l2i.epochz=3", r"l2i has no option 'epochz' \(did you mean 'epochs'\?\)"),
        ("l2j.epochs=3", r"no explainer is called 'l2j' \(did you mean 'l2i'\?\)"),
        ("flint.epochs=3", r"'flint' is not among the explainers of this run \(l2i\)"),
        ("l2i.epochs=abc", r"l2i.epochs=abc: not a whole number \(default "),
        ("l2i.threshold=lots", r"l2i.threshold=lots: not a number \(default 0.2"),
    ],
)
def test_options_are_refused_before_any_work(capsys, tmp_path, option, expected):
    """Exit 2 with the problem and a suggestion, and nothing written: no data generated,
    no output folder, no cache (the typo used to surface after a 4.5 min fit)."""
    code, text = _run(
        capsys,
        "run",
        "--explainers",
        "l2i",
        "--dataset",
        "synth",
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--option",
        option,
    )
    assert code == 2
    assert re.search(expected, text), text
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("limit", ["-1", "0", "two"])
def test_a_limit_below_one_is_an_argument_error(capsys, limit):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["run", "--dataset", "synth", "--limit", limit])
    assert exit_.value.code == 2
    assert "argument --limit" in capsys.readouterr().err


def test_unknown_names_suggest_the_closest(capsys, tmp_path):
    code, text = _run(capsys, "run", "--explainers", "l2j", "--dataset", "synth")
    assert code == 2 and "unknown explainer 'l2j' (did you mean 'l2i'?)" in text
    code, text = _run(capsys, "run", "--explainers", "l2i", "--dataset", "esc-50")
    assert code == 2 and "unknown dataset 'esc-50' (did you mean 'esc50'?)" in text


def test_publish_of_nothing_is_an_error_not_empty_csvs(capsys, tmp_path):
    code, text = _run(capsys, "publish", "--dataset", "nope", "--out", str(tmp_path))
    assert code == 2 and "unknown dataset 'nope'" in text
    (tmp_path / "synth" / "cells").mkdir(parents=True)  # a folder, but no cell in it
    code, text = _run(capsys, "publish", "--dataset", "synth", "--out", str(tmp_path))
    assert code == 2 and f"no cells to publish under {tmp_path / 'synth' / 'cells'}" in text
    assert not (tmp_path / "synth" / "leaderboard.csv").exists()
    # another classifier's folder is named after both, and both names are checked
    code, text = _run(capsys, "publish", "--dataset", "synth--cnn15", "--out", str(tmp_path))
    assert code == 2 and "unknown classifier 'cnn15' (did you mean 'cnn14'?)" in text
    code, text = _run(capsys, "publish", "--dataset", "synth--cnn14", "--out", str(tmp_path))
    assert code == 2 and f"no cells to publish under {tmp_path / 'synth--cnn14' / 'cells'}" in text


def test_a_users_run_goes_to_local_results_not_the_published_folder():
    args = build_parser().parse_args(["run", "--dataset", "synth"])
    assert args.out == LOCAL_OUT == Path("local-results")
    assert build_parser().parse_args(["publish", "--dataset", "synth"]).out == LOCAL_OUT
    ignored = (README.parent / ".gitignore").read_text().splitlines()
    assert f"{LOCAL_OUT}/" in ignored


def test_quiet_synth_generation_draws_no_bar_but_says_where(capsys, tmp_path):
    from l2i_bench.plugins.datasets.synth import GENERATED_MB, Synth

    dataset = Synth(tmp_path / "synth")
    dataset.show_progress = False  # what the runner sets from --quiet
    dataset.prepare()
    err = capsys.readouterr().err
    assert err == (
        f"synth: generating the embedded dataset into {tmp_path / 'synth'} "
        f"({GENERATED_MB} MB, seed 0; reused by later runs)\n"
    )
    size = sum(p.stat().st_size for p in (tmp_path / "synth").rglob("*") if p.is_file())
    assert abs(size / 1e6 - GENERATED_MB) / GENERATED_MB < 0.1, size / 1e6


def test_plugins_options_lists_defaults_per_dataset(capsys):
    code, text = _run(capsys, "plugins", "--options", "slime")
    assert code == 0
    samples = next(line for line in text.splitlines() if line.split()[:1] == ["samples"])
    assert "1000 (synth: 300)" in samples
    assert "cost per clip: 1000 forward passes, batched (synth: 300 forward passes" in text


def _readme_costs() -> dict[str, str]:
    """Explainer name -> the README explainer table's "cost per clip" cell."""
    section = README.read_text().split("## Explainers", 1)[1].split("\n\n", 2)[1]
    costs = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        match = re.fullmatch(r"`([a-z0-9-]+)`", cells[0])
        if match:
            costs[match.group(1)] = cells[-1]
    return costs


def test_the_readme_costs_carry_the_codes_defaults_on_every_dataset():
    """Every number an explainer's cost takes from an option (SLIME's samples, IG's
    steps...) appears in the README's cost cell with each dataset's default: the table
    once said 1000 SLIME passes where synth runs 300."""
    registry = load_registry()
    datasets = [registry.dataset(n) for n in registry.names("dataset")]
    costs = _readme_costs()
    checked = 0
    for name in registry.names("explainer"):
        cls = registry.explainer(name)
        fields = {f for _, f, _, _ in string.Formatter().parse(cls.passes) if f}
        if not fields or cls.reference:
            continue
        assert name in costs, f"{name} has no row in the README's explainer table"
        numbers = set(re.findall(r"\d+", costs[name]))
        for dataset in datasets:
            rendered = set(re.findall(r"\d+", cost_per_clip(cls, dataset)))
            assert rendered <= numbers, (name, dataset.name, rendered - numbers, costs[name])
            checked += 1
    assert checked >= 3 * 8


def test_executor_ray_without_ray_says_how_to_install(capsys, tmp_path, monkeypatch):
    """The extra is optional: without it, `--executor ray` names the install command
    before any work (no data, no output folder)."""
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # import ray -> ImportError
    out = tmp_path / "out"
    code, text = _run(
        capsys,
        "run",
        "--dataset",
        "synth",
        "--data-dir",
        str(tmp_path / "data"),
        "--explainers",
        "random",
        "--out",
        str(out),
        "--executor",
        "ray",
    )
    assert code == 2
    assert "--executor ray needs the Ray package" in text
    assert 'pip install "l2i-bench[ray]"' in text
    assert not out.exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ray-address", "auto"], "--ray-address given without --executor ray"),
        (["--executor", "ray", "--ray-gpus", "-1"], "argument --ray-gpus: -1 is not a finite"),
        (["--executor", "ray", "--ray-cpus", "0"], "argument --ray-cpus: 0 is not at least 1"),
    ],
)
def test_ray_flags_that_cannot_work_are_refused(capsys, tmp_path, flags, message):
    args = ["run", "--dataset", "synth", "--data-dir", str(tmp_path / "d"), "--out", str(tmp_path)]
    try:
        code, text = _run(capsys, *args, *flags)
    except SystemExit as exit_:  # argparse's own refusal
        code, text = exit_.code, capsys.readouterr().err
    assert code == 2
    assert message in text
