"""What a result needs to be reproduced: versions, code revision, machine, seeds."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

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


def git_state(where: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the source tree the package runs from (if it is a repo)."""
    where = where or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=where, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"sha": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status)}


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
