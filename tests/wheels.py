"""Installable plugin packages for the tests: a valid wheel written by hand (no build
backend, no network), installed with pip into a folder the test puts on PYTHONPATH."""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from pathlib import Path


class _Lines:
    def __init__(self, sink: list[str]):
        self.sink = sink

    def write(self, text: str) -> None:
        self.sink.append(text)


def build_wheel(where: Path, project: str, modules: dict[str, str], entry_points: str) -> Path:
    """A wheel of ``project`` 0.1.0 holding ``modules`` (file name -> source) and the
    ``[l2i_bench]`` entry points given as ``name = module`` lines."""
    dist_name = project.replace("-", "_")
    wheel = where / f"{dist_name}-0.1.0-py3-none-any.whl"
    dist = f"{dist_name}-0.1.0.dist-info"
    files = {
        **modules,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: 0.1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": f"[l2i_bench]\n{entry_points.strip()}\n",
    }
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        rows = [[name, "", ""] for name in files] + [[f"{dist}/RECORD", "", ""]]
        lines: list[str] = []
        csv.writer(_Lines(lines)).writerows(rows)
        archive.writestr(f"{dist}/RECORD", "".join(lines))
    return wheel


def install(wheel: Path, target: Path) -> Path:
    """``pip install --target``: the folder to put on PYTHONPATH."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
        + ["--target", str(target), str(wheel)],
        check=True,
    )
    return target


def cli() -> list[str]:
    script = Path(sys.executable).parent / "l2i-bench"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "l2i_bench.cli"]
