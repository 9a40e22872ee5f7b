"""The fault suite: each numbered case of issue 13, reproduced against the real runner.

Kills land inside the stage they name through failpoints (``L2I_BENCH_FAILPOINT``, see
:mod:`l2i_bench.failpoints`); runs use the tiny synth and cheap metrics of
``fault_plugins``, so the whole suite costs about a minute. Select it with
``pytest -m faults``; the README's test command runs it with everything else.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fault_plugins import FAULTY, registry, tiny_config

from l2i_bench.cache import load_torch, remove_stale_temporaries, save_torch
from l2i_bench.errors import BenchError
from l2i_bench.failpoints import ENV, STAGES
from l2i_bench.results import (
    PUBLISHED_CLASSIFIERS,
    CellResult,
    check_one_configuration,
    write_json_atomic,
)
from l2i_bench.runner import run_benchmark

pytestmark = pytest.mark.faults
DRIVER = Path(__file__).with_name("fault_driver.py")
HERE = Path(__file__).resolve().parents[1]


def _drive(synth_dir, out, cache, *, failpoint: str | None = None, wait: bool = True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(ENV, None)
    if failpoint:
        env[ENV] = failpoint
    cmd = [sys.executable, str(DRIVER), "--data-dir", str(synth_dir)]
    cmd += ["--out", str(out), "--cache-dir", str(cache)]
    if not wait:
        return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _board(out: Path) -> str:
    """The leaderboard as text, its notes without the "fit reused from the cache" note:
    a resumed run reuses the fit the killed one cached, and says so."""
    lines = (out / "synth-tiny" / "leaderboard.csv").read_text().splitlines()
    return "\n".join(re.sub(r";? ?fit reused from the cache[^;,]*", "", line) for line in lines)


def _leftovers(*folders: Path) -> list[Path]:
    found = []
    for folder in folders:
        found += [p for p in folder.rglob("*") if re.search(r"\.tmp|publish-journal", p.name)]
    return found


def _statuses(out: Path) -> list[str]:
    runs = sorted((out / "synth-tiny" / "runs").glob("*.json"))
    return [json.loads(p.read_text())["status"] for p in runs]


@pytest.fixture(autouse=True)
def _torch_threads_as_found():
    """Runs here fix torch's thread count to 1 (as the driver does), process-wide."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(synth_dir, tmp_path_factory) -> str:
    """The leaderboard of an uninterrupted run (in this process: the driver's runs in
    their own processes must give the same bytes, which the kill test checks)."""
    root = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    try:
        run_benchmark(tiny_config(synth_dir, root / "out", root / "cache"), registry())
    finally:
        torch.set_num_threads(threads)
    return _board(root / "out")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fault-cache")


# ----------------------------------------------------------- 6. signals and leftovers


def test_kill_9_at_every_stage_resumes_to_the_same_leaderboard(synth_dir, tmp_path, reference):
    out, cache = tmp_path / "out", tmp_path / "cache"
    for stage in STAGES:  # decode, classifier, cell, publish: each run gets one further
        done = _drive(synth_dir, out, cache, failpoint=f"{stage}=KILL")
        assert done.returncode == -signal.SIGKILL, (stage, done.stderr[-3000:])
    final = _drive(synth_dir, out, cache)
    assert final.returncode == 0, final.stderr[-3000:]
    assert _board(out) == reference
    assert _leftovers(out, cache) == []
    statuses = _statuses(out)
    # Killed runs could not say so: the next run marks those still "running". The one
    # killed while publishing had finished its cells, and the next run completed its
    # half-renamed files from the journal before anything else.
    assert statuses[:3] == [statuses[0]] * 3 and statuses[0].startswith("killed"), statuses
    assert statuses[3:] == ["finished", "finished"], statuses


def test_sigterm_at_every_stage_is_an_interruption_that_resumes(
    synth_dir, tmp_path, reference, monkeypatch
):
    """SIGTERM (timeout, Slurm, docker stop) takes Ctrl-C's path: manifest
    ``interrupted``, finished cells published. In this process: no start-up cost."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    for stage in STAGES:
        monkeypatch.setenv(ENV, f"{stage}=TERM")
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            run_benchmark(tiny_config(synth_dir, out, cache), registry())
    monkeypatch.delenv(ENV, raising=False)  # a failpoint clears itself once it fired
    run_benchmark(tiny_config(synth_dir, out, cache), registry())
    assert _board(out) == reference
    assert _leftovers(out, cache) == []
    statuses = _statuses(out)
    assert statuses[:3] == ["interrupted (SIGTERM)"] * 3, statuses
    assert statuses[3].startswith("interrupted while publishing (SIGTERM)"), statuses
    assert statuses[4] == "finished"


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = tmp_path / ".audio.npy.999999999-0badc0de.tmp"
    old_style = tmp_path / "sub" / "x.999999999.tmp.npy"
    live = tmp_path / f".cell.json.{os.getpid()}-12345678.tmp"
    old_style.parent.mkdir()
    for path in (dead, old_style, live):
        path.write_bytes(b"partial")
    assert sorted(remove_stale_temporaries([tmp_path])) == sorted([dead, old_style])
    assert live.exists()


# ------------------------------------------------------------------ 4. concurrency


def test_two_concurrent_runs_on_one_folder_give_one_result_and_two_manifests(
    synth_dir, tmp_path, reference
):
    """Two runs on one folder, and a third on another folder sharing the cache: the
    folder lock serialises the first two, the cache-entry locks the third's decoding,
    training and fitting against theirs."""
    out, other, cache = tmp_path / "out", tmp_path / "other", tmp_path / "cache"
    procs = [_drive(synth_dir, folder, cache, wait=False) for folder in (out, out, other)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert any(f"the run that holds {out / 'synth-tiny'} (pid " in e for e in errors), errors
    assert _board(out) == reference and _board(other) == reference
    assert _statuses(out) == ["finished", "finished"] and _statuses(other) == ["finished"]
    assert len(list((cache / "classifiers").glob("*.pt"))) == 1
    assert _leftovers(out, other, cache) == []


# ----------------------------------------------------------- 5. one failure, one cell


def test_a_failing_or_hanging_plugin_costs_only_its_cell(synth_dir, tmp_path, shared_cache):
    names = [cls.name for cls in FAULTY]
    config = tiny_config(synth_dir, tmp_path / "out", shared_cache, cell_timeout=3.0)
    config.explainers = [names[0], "random", *names[1:]]  # a failure first, then the rest
    summary = run_benchmark(config, registry())
    errors = {name: error for _, _, name, error in summary.failed}
    assert sorted(errors) == sorted(names)
    assert "RuntimeError: boom inside the plugin" in errors["raising"]
    assert "outside [0, 1] or with NaN" in errors["nan-mask"]
    assert "returned a mask of shape" in errors["wrong-shape"]
    assert "returned a relevance of shape (4, 3, 2)" in errors["wrong-relevance"]
    assert "ran past the 3 s cell timeout" in errors["hanging"]
    assert summary.computed == [("1", "random")]
    board = (tmp_path / "out" / "synth-tiny" / "leaderboard.csv").read_text()
    assert board.splitlines()[1].startswith("random,")
    assert len(board.splitlines()) == 2
    manifest = json.loads(summary.manifest.read_text())
    assert manifest["status"] == "finished, 5 cell(s) failed"
    assert sorted(row[2] for row in manifest["cells"]["failed"]) == sorted(names)


# ------------------------------------------------------------ 1. no code from caches


class Payload:
    """Unpickling this creates ``marker``: the proof that a load ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _entries(cache: Path) -> dict[str, Path]:
    return {
        "classifier": next((cache / "classifiers").glob("*.pt")),
        "explainer": next((cache / "explainers").glob("profile-*.pt")),
        "audio": next(p for p in (cache / "audio").glob("*.npy") if ".gains" not in p.name),
    }


def test_malicious_cache_entries_execute_nothing(synth_dir, tmp_path, reference, capfd):
    out, cache = tmp_path / "out", tmp_path / "cache"
    run_benchmark(tiny_config(synth_dir, out, cache), registry())
    marker = tmp_path / "payload-ran"
    entries = _entries(cache)
    torch.save({"state": Payload(marker)}, entries["explainer"])  # record kept: mismatch
    torch.save({"state_dict": Payload(marker)}, entries["classifier"])
    Path(str(entries["classifier"]) + ".integrity.json").unlink()  # no record: still refused
    np.save(entries["audio"], np.array([Payload(marker)], dtype=object), allow_pickle=True)
    capfd.readouterr()
    run_benchmark(tiny_config(synth_dir, out, cache, force=True), registry())
    warnings = capfd.readouterr().err
    assert not marker.exists()
    for path in entries.values():
        assert f"discarding cache entry {path}" in warnings, warnings
    assert _board(out) == reference
    # The payload is live: the unsafe load this suite replaced would have run it.
    torch.save({"state": Payload(marker)}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)
    assert marker.exists()


def test_no_source_file_loads_torch_files_unsafely():
    calls = []
    for path in [*(HERE / "bench").rglob("*.py"), *(HERE / "plugins").rglob("*.py")]:
        for match in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
            calls.append((path.name, match.group(1)))
    assert calls and all("weights_only=True" in args for _, args in calls), calls


# --------------------------------------------------------------- 2. silent corruption


def test_corrupted_cache_entries_are_detected_and_redone_identically(
    synth_dir, tmp_path, reference, capfd
):
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = run_benchmark(tiny_config(synth_dir, out, cache), registry())
    entries = _entries(cache)
    payload = torch.load(entries["classifier"], weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name].float() * float("nan")
    torch.save(payload, entries["classifier"])  # parses, NaN weights, record now stale
    entries["explainer"].write_bytes(bytes(entries["explainer"].stat().st_size))  # zeroed
    audio = np.load(entries["audio"])
    np.save(
        entries["audio"], np.random.default_rng(0).standard_normal(audio.shape).astype(audio.dtype)
    )
    # The gains of another split (rebuilding the noised audio replaces its own gains).
    noised = entries["audio"].name.removesuffix(".npy")
    gains = next(p for p in (cache / "audio").glob("*.gains.npy") if not p.name.startswith(noised))
    gains.write_bytes(gains.read_bytes()[: gains.stat().st_size // 2])  # truncated
    # the cache alone: the folder's published checkpoint would restore the classifier
    # (tests/test_published_classifier.py), here it must be retrained
    shutil.rmtree(out / "synth-tiny" / PUBLISHED_CLASSIFIERS)
    capfd.readouterr()
    second = run_benchmark(tiny_config(synth_dir, out, cache, force=True), registry())
    warnings = capfd.readouterr().err
    for path in (*entries.values(), gains):
        assert f"discarding cache entry {path}" in warnings, warnings
    assert _board(out) == reference
    # The classifier's identity is its weights: retrained to the same bits, the same hash.
    before = json.loads(first.manifest.read_text())["classifier"]["1/seed-0"]
    after = json.loads(second.manifest.read_text())["classifier"]["1/seed-0"]
    assert after["reused"] is False and after["sha256"] == before["sha256"]


def test_an_entry_without_record_is_checked_before_it_is_adopted(tmp_path, capfd):
    path = tmp_path / "entry.pt"
    torch.save({"w": torch.tensor([1.0, float("inf")])}, path)  # as an older version wrote
    assert load_torch(path, "key") is None
    assert "NaN or infinite" in capfd.readouterr().err and not path.exists()
    save_torch(path, {"w": torch.ones(2)}, "key")
    assert torch.equal(load_torch(path, "key")["w"], torch.ones(2))
    assert load_torch(path, "another key") is None  # made for something else
    assert "another key" in capfd.readouterr().err


# ------------------------------------------------------------ 3. mixed leaderboards


def test_a_run_under_other_settings_is_refused_before_any_work(synth_dir, tmp_path, shared_cache):
    out = tmp_path / "out"
    run_benchmark(tiny_config(synth_dir, out, shared_cache), registry())
    runs_before = len(_statuses(out))
    with pytest.raises(BenchError, match=r"limit None \(this run: 2\)") as err:
        run_benchmark(
            tiny_config(synth_dir, out, shared_cache, explainers=["random"], limit=2), registry()
        )
    assert "profile" in err.value.problem and "--explainers profile" in err.value.fix
    assert len(_statuses(out)) == runs_before  # refused before a manifest or a cell


def test_publish_refuses_cells_of_two_classifiers_in_one_fold(tmp_path):
    def cell(explainer: str, sha: str) -> CellResult:
        return CellResult("d", "1", explainer, "1", 0, "k", "r", "cpu", sha)

    with pytest.raises(BenchError, match="fold 1 seed 0 explains several classifiers"):
        check_one_configuration([cell("a", "aaaa"), cell("b", "bbbb")], tmp_path)
    check_one_configuration([cell("a", "aaaa"), cell("b", "aaaa")], tmp_path)


# ------------------------------------------------------- 7. data, folders and pipes


def test_unwritable_out_is_refused_before_any_work(synth_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = tmp_path / "cache"
    with pytest.raises(BenchError, match="cannot write in") as err:
        run_benchmark(tiny_config(synth_dir, blocker / "out", cache), registry())
    assert "--out" in err.value.fix
    assert not (cache / "classifiers").exists()
    with pytest.raises(BenchError, match="cannot write in") as err:
        run_benchmark(tiny_config(synth_dir, tmp_path / "out", blocker / "cache"), registry())
    assert "--cache-dir" in err.value.fix
    assert not (tmp_path / "out" / "synth-tiny" / "runs").exists()


def test_published_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o640


def _esc50(root: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    header = ["filename", "fold", "target", "category"]
    with open(root / "meta" / "esc50.csv", "w", newline="", encoding=encoding) as fh:
        csv.writer(fh).writerows([header, *rows])
    for row in rows:
        name = Path(row[0]).name
        if name and name not in ("..", "."):
            (root / "audio" / name).write_bytes(b"")
    return root


@pytest.mark.parametrize(
    ("rows", "encoding", "message"),
    [
        (
            [["1-a-A-0.wav", "1", "0", "dog"], ["1-b-A-99.wav", "1", "99", "x"]],
            "utf-8",
            "line 3: target 99 is outside ESC-50's classes 0-49",
        ),
        (
            [["1-a-A-0.wav", "1", "0", "dog"], ["1-a-A-0.wav", "1", "0", "dog"]],
            "utf-8",
            "line 3 repeats clip '1-a-A-0.wav' of line 2",
        ),
        (
            [["../../etc/passwd", "1", "0", "dog"]],
            "utf-8",
            "line 2: file name '../../etc/passwd' is not a bare file name",
        ),
        (
            [["1-a-A-0.wav", "1", "0", "dog"], ["1-b-A-0.wav", "1", "0", "caf\u00e9"]],
            "latin-1",
            "line 3 is not UTF-8",
        ),
    ],
)
def test_esc50_listing_errors_name_the_line(tmp_path, rows, encoding, message):
    from l2i_bench.plugins.datasets.esc50 import ESC50

    root = _esc50(tmp_path / "esc", rows, encoding)
    with pytest.raises(BenchError) as err:
        ESC50(root).prepare()
    assert message in err.value.problem
    assert str(root / "meta" / "esc50.csv") in err.value.problem


def test_a_closed_pipe_ends_quietly():
    script = Path(sys.executable).parent / "l2i-bench"
    cmd = (
        [str(script), "plugins"]
        if script.is_file()
        else [sys.executable, "-m", "l2i_bench.cli", "plugins"]
    )
    env = {**os.environ, "L2I_BENCH_LOAD_PLUGINS": "random"}  # one plugin: a quick start
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before anything is written, as `| head` leaves
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141


def test_sonyc_listing_duplicates_and_escaping_names_are_refused(tmp_path):
    from fixtures_sonyc import build_sonyc_fixture

    from l2i_bench.plugins.datasets.sonyc_ust import SonycUST

    root = build_sonyc_fixture(tmp_path / "sonyc").root
    listing = root / "annotations.csv"
    lines = listing.read_text().splitlines()
    listing.write_text("\n".join([*lines, lines[1]]) + "\n")  # one row repeated whole
    with pytest.raises(BenchError, match=rf"line {len(lines) + 1} repeats the whole row"):
        SonycUST(root).split("official")
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("audio_filename")] = "../outside.wav"
    listing.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    with pytest.raises(
        BenchError, match=re.escape("line 2: file name '../outside.wav' is not a bare")
    ):
        SonycUST(root).split("official")


def _hold(path: str, seconds: float, started) -> None:
    from l2i_bench.cache import entry_lock

    with entry_lock(Path(path)):
        started.set()
        time.sleep(seconds)


def test_a_second_writer_of_an_entry_waits_for_the_first(tmp_path, capfd):
    """The primitive behind the cache entries and the generated synth folder."""
    import multiprocessing

    from l2i_bench.cache import entry_lock

    context = multiprocessing.get_context("fork")
    started = context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path / "entry"), 1.0, started))
    holder.start()
    assert started.wait(30)
    begun = time.perf_counter()
    with entry_lock(tmp_path / "entry"):
        waited = time.perf_counter() - begun
    holder.join(30)
    assert waited > 0.5, waited
    assert f"waiting for pid {holder.pid}, which is writing {tmp_path / 'entry'}" in (
        capfd.readouterr().err
    )
