"""This checkout against an earlier commit's code, side by side: the one mechanism the
``--against REV`` benchmarks share (``bench_metrics.py``, ``bench_lmac.py``).

The earlier commit's ``bench/`` and ``plugins/`` are extracted with ``git archive`` and
laid out as an importable ``l2i_bench``; each measurement runs in a subprocess with
that tree ahead of the installed (editable) package on ``PYTHONPATH``, so both codes run
in the same environment, interleaved, under the same load.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THIS_CHECKOUT = "this checkout"


def extract(rev: str, into: Path) -> Path:
    """``bench/`` and ``plugins/`` of ``rev`` laid out as an importable ``l2i_bench``
    under ``into``; returns the folder to put on ``PYTHONPATH``."""
    src = into / "src"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "bench", "plugins"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    pkg = into / "pkg" / "l2i_bench"
    shutil.copytree(src / "bench", pkg)
    shutil.copytree(src / "plugins", pkg / "plugins")
    return into / "pkg"


@contextlib.contextmanager
def code_versions(against: str | None) -> Iterator[dict[str, Path | None]]:
    """``{REV: its extracted tree, "this checkout": None}`` (only this checkout without
    ``against``), in the order to print them, for as long as the block runs."""
    with tempfile.TemporaryDirectory() as tmp:
        versions: dict[str, Path | None] = {}
        if against:
            versions[against] = extract(against, Path(tmp))
        versions[THIS_CHECKOUT] = None
        yield versions


def run_json(script: str, args: Sequence[str], code: Path | None, threads: int = 1) -> dict:
    """Run ``script`` with ``args`` on the given code (None: this checkout) and
    ``threads`` OpenMP threads; returns the JSON object its last line prints."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if code is not None:  # ahead of the installed (editable) package
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, script, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:  # the worker's own traceback, not only its exit status
        sys.stderr.write(done.stderr)
        done.check_returncode()
    return json.loads(done.stdout.strip().splitlines()[-1])
