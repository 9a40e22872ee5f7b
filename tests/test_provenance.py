"""The commit a run records when the suite is a pip-installed copy, not a checkout."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from l2i_bench.provenance import _installed_from, installed_copy_state


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "checkout"
    for path, text in {
        "bench/__init__.py": "",
        "bench/runner.py": "STEP = 1\n",
        "bench/report/templates/page.j2": "<p>{{ x }}</p>\n",
        "plugins/explainers/l2i.py": "NAME = 'l2i'\n",
        "tests/test_x.py": "",  # not installed: not compared
    }.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "first")
    return repo


def _install(repo: Path, site: Path) -> Path:
    """What ``pip install repo`` lays out: bench/ as l2i_bench/, plugins/ inside it,
    byte-compiled caches, and PEP 610's record of where it came from."""
    package = site / "l2i_bench"
    shutil.copytree(repo / "bench", package)
    shutil.copytree(repo / "plugins", package / "plugins")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "runner.cpython-311.pyc").write_bytes(b"\0compiled")
    record = site / "l2i_bench-0.1.0.dist-info" / "direct_url.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"dir_info": {}, "url": f"file://{repo}"}))
    return package


def test_an_installed_copy_records_the_commit_it_equals(tmp_path: Path):
    repo = _checkout(tmp_path)
    package = _install(repo, tmp_path / "site-packages")
    assert _installed_from(package) == repo
    head = _git(repo, "rev-parse", "HEAD")
    assert installed_copy_state(package, repo) == {
        "sha": head,
        "dirty": False,
        "installed_from": str(repo),
    }


def test_an_installed_copy_that_differs_from_its_commit_is_dirty(tmp_path: Path):
    repo = _checkout(tmp_path)
    package = _install(repo, tmp_path / "site-packages")
    head = _git(repo, "rev-parse", "HEAD")

    (package / "runner.py").write_text("STEP = 2\n")  # edited after installing
    state = installed_copy_state(package, repo)
    assert (state["sha"], state["dirty"], state["differs_from_commit"]) == (
        head,
        True,
        ["runner.py"],
    )

    (package / "runner.py").write_text("STEP = 1\n")
    (package / "plugins" / "explainers" / "l2i.py").unlink()  # a module not installed
    state = installed_copy_state(package, repo)
    assert state["dirty"] and state["differs_from_commit"] == ["plugins/explainers/l2i.py"]

    shutil.rmtree(package.parent)
    package = _install(repo, tmp_path / "site-packages")
    (repo / "bench" / "runner.py").write_text("STEP = 3\n")  # the checkout moved on
    _git(repo, "commit", "-qam", "second")
    state = installed_copy_state(package, repo)
    assert state["sha"] == _git(repo, "rev-parse", "HEAD") != head
    assert state["dirty"] and state["differs_from_commit"] == ["runner.py"]


def test_a_copy_without_a_local_source_records_nothing(tmp_path: Path):
    package = tmp_path / "site-packages" / "l2i_bench"
    package.mkdir(parents=True)
    assert _installed_from(package) is None  # a wheel from an index: no direct_url.json
    record = tmp_path / "site-packages" / "l2i_bench-0.1.0.dist-info" / "direct_url.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"url": "https://example.org/l2i_bench.whl", "archive_info": {}}))
    assert _installed_from(package) is None
    wheel = tmp_path / "l2i_bench-0.1.0-py3-none-any.whl"  # a wheel installed by path
    wheel.write_bytes(b"PK")
    record.write_text(json.dumps({"url": f"file://{wheel}", "archive_info": {}}))
    assert _installed_from(package) is None
    assert installed_copy_state(package, tmp_path / "not-a-repo") == {
        "sha": None,
        "dirty": None,
        "installed_from": str(tmp_path / "not-a-repo"),
    }


def test_a_source_below_a_repositorys_root_records_no_commit(tmp_path: Path):
    """An unpacked source inside some other repository: that repository's HEAD is not
    the installed code's commit."""
    repo = _checkout(tmp_path)
    inner = repo / "vendored" / "l2i-bench"
    shutil.copytree(repo / "bench", inner / "bench")
    shutil.copytree(repo / "plugins", inner / "plugins")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "vendored")
    package = _install(inner, tmp_path / "site-packages")
    assert installed_copy_state(package, inner)["sha"] is None
