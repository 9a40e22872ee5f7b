"""What a result needs to be reproduced: versions, code revision, machine, seeds."""

from __future__ import annotations

import platform
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
        "command": sys.argv,
    }
