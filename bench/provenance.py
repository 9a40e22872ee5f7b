"""What a result needs to be reproduced: versions, code revision, machine, seeds."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import torch

from l2i_bench import audio
from l2i_bench.timing import device_name

TRACKED_PACKAGES = (
    "l2i-bench",
    "torch",
    "torchaudio",
    "librosa",
    "numpy",
    "pandas",
    "pluggy",
    "scikit-learn",
    "soundfile",
    "captum",
)


def package_versions() -> dict[str, str]:
    found = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


SOURCE_FOLDERS = {"bench": "", "plugins": "plugins/"}
"""Where each source folder of the repository lands in the installed ``l2i_bench``
package (``pyproject.toml``'s ``package-dir``)."""


def _git(where: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(where: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the code this process runs.

    From a checkout (an editable install, a test run) that is the checkout's state. A
    copy installed by ``pip install DIR`` sits in ``site-packages``, outside any
    repository (or, in a ``.venv`` or ``.tox`` inside one, untracked), and used to record
    nothing; it records the commit of the directory pip installed it from (PEP 610's
    ``direct_url.json``), and is clean only when its files equal that commit's, file by
    file (:func:`installed_copy_state`), since the directory may have moved on since."""
    package = Path(__file__).resolve().parent
    tracked = _git(package, "ls-files", "--error-unmatch", Path(__file__).name) is not None
    checkout = where or (package if tracked else None)
    if checkout is not None:
        sha = _git(checkout, "rev-parse", "HEAD")
        if sha is None:
            return {"sha": None, "dirty": None}
        status = _git(checkout, "status", "--porcelain", "--untracked-files=no")
        return {"sha": sha, "dirty": bool(status)}
    source = _installed_from(package)
    if source is None:
        return {"sha": None, "dirty": None}
    return installed_copy_state(package, source)


def _installed_from(package: Path) -> Path | None:
    """The local directory pip installed ``package`` from, from the ``direct_url.json``
    of the dist-info beside it (not ``importlib.metadata``'s first match on
    ``sys.path``, which from a checkout's root is the checkout's own egg-info)."""
    for record in sorted(package.parent.glob("l2i_bench-*.dist-info/direct_url.json")):
        try:
            data = json.loads(record.read_text())
            url = urlparse(data.get("url", ""))
        except (OSError, ValueError, AttributeError):
            continue
        source = Path(unquote(url.path))
        if url.scheme == "file" and "dir_info" in data and source.is_dir():
            return source  # a wheel or archive by path, or a VCS URL: no checkout to read
    return None


def installed_copy_state(package: Path, source: Path) -> dict[str, Any]:
    """The commit of ``source`` (the root of the checkout an installed copy came from),
    dirty unless every file of the installed ``package`` equals that commit's file (git
    blob ids) and no tracked file of ``bench/`` or ``plugins/`` is missing from it. A
    dirty copy's ``sha`` is the checkout's HEAD now, the nearest known commit."""
    sha = _git(source, "rev-parse", "HEAD")
    top = _git(source, "rev-parse", "--show-prefix") == ""  # the repository's root
    listing = _git(source, "ls-tree", "-r", "HEAD", *SOURCE_FOLDERS)
    if sha is None or not top or listing is None:
        return {"sha": None, "dirty": None, "installed_from": str(source)}
    committed: dict[str, str] = {}
    for line in listing.splitlines():
        meta, path = line.split("\t", 1)
        folder, rest = path.split("/", 1)
        committed[SOURCE_FOLDERS[folder] + rest] = meta.split()[2]
    files = sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    names = [p.relative_to(package).as_posix() for p in files]
    blobs = (_git(source, "hash-object", "--no-filters", *map(str, files)) or "").split()
    if len(blobs) != len(files):
        differ = ["(git hash-object failed on the installed files)"]
    else:
        differ = [n for n, b in zip(names, blobs, strict=True) if committed.get(n) != b]
    missing = sorted(set(committed) - set(names))
    state: dict[str, Any] = {
        "sha": sha,
        "dirty": bool(differ or missing),
        "installed_from": str(source),
    }
    if state["dirty"]:
        state["differs_from_commit"] = (differ + missing)[:20]
    return state


def front_end() -> dict[str, Any]:
    """The features every network sees; a result is only comparable at equal values."""
    return {
        "version": audio.FRONT_END_VERSION,
        "input": "peak-normalised clip (x / max|x|)",
        "sample_rate": audio.SAMPLE_RATE,
        "n_fft": audio.N_FFT,
        "hop_length": audio.HOP_LENGTH,
        "n_mels": audio.N_MELS,
        "logmel": "Slaney mel of |X|, 10 log10, top_db 80",
        "nmf_input": "log(1 + |X|)",
    }


def arithmetic() -> dict[str, Any]:
    """The machine's arithmetic: what, beside the package versions, decides the float
    results of a training here.

    Why it is recorded: torch's CPU kernels (MKL, oneDNN) and numpy's ufuncs pick their
    code path by instruction set and CPU vendor, and different paths round differently.
    Measured on 2026-12-05: the same commit, data, seed and thread count trained the
    ESC-50 fold-4 classifier to sha256 7c780b28 (test accuracy 0.18) on an earlier
    machine and to f614c642 (0.28) on an AMD EPYC with AVX2; a retrain is bit-identical
    only where this record (and the versions) agree. ``cpu`` is read from
    ``/proc/cpuinfo`` (Linux), else :func:`platform.processor`."""
    cpu, vendor = _cpuinfo()
    config = torch.__config__.show()

    def version_in(pattern: str) -> str | None:
        found = re.search(pattern, config)
        return found.group(1) if found else None

    return {
        "cpu": cpu,
        "cpu_vendor": vendor,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_blas": version_in(r"BLAS_INFO=(\w+)"),
        "mkl": version_in(r"Math Kernel Library Version ([\w.]+)"),
        "onednn": version_in(r"MKL-DNN v([\d.]+)"),
        "numpy_simd": _numpy_simd(),
    }


def _cpuinfo() -> tuple[str | None, str | None]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None, None
    model, vendor = cpu_identity(text)
    return model or platform.processor() or None, vendor


def cpu_identity(cpuinfo: str) -> tuple[str | None, str | None]:
    """``model name`` and ``vendor_id`` of the first processor in a ``/proc/cpuinfo``
    text (None where a field is absent, as on ARM)."""

    def first(key: str) -> str | None:
        found = re.search(rf"^{key}\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        return found.group(1).strip() if found else None

    return first("model name"), first("vendor_id")


def _numpy_simd() -> list[str] | None:
    """The SIMD targets numpy dispatches to on this CPU (``numpy.show_runtime``'s
    "found"); None where numpy does not expose them."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:
        return None
    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "front_end": front_end(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_state(),
        "device": str(device),
        "device_name": device_name(device),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "arithmetic": arithmetic(),
        "command": sys.argv,
    }
