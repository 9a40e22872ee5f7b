"""Wall-clock timing that is honest on CUDA, and peak-memory readings.

CUDA kernels run asynchronously, so a clock read without synchronising measures the
launch, not the work: every reading here synchronises first on CUDA devices.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def stopwatch(device: torch.device) -> Iterator[list[float]]:
    """Yields a list that receives the elapsed seconds when the block ends."""
    out: list[float] = []
    synchronize(device)
    start = time.perf_counter()
    try:
        yield out
    finally:
        synchronize(device)
        out.append(time.perf_counter() - start)


@contextmanager
def stage(seconds: dict[str, Any], name: str, device: torch.device) -> Iterator[None]:
    """Add the block's elapsed seconds to ``seconds[name]`` (a stage of the run's
    profile), synchronised like :func:`stopwatch`; recorded also when the block raises,
    so a failed cell's profile shows where its time went."""
    elapsed: list[float] = []
    try:
        with stopwatch(device) as elapsed:
            yield
    finally:
        if elapsed:
            seconds[name] = float(seconds.get(name, 0.0)) + elapsed[0]


class PeakMemory:
    """Peak memory over a block of work, in MB.

    On CUDA it is the caching allocator's peak (``max_memory_allocated``) since the
    block began. On CPU, where torch keeps no such counter, a daemon thread samples the
    process's resident set size every 20 ms and keeps the maximum (Linux ``/proc``;
    elsewhere it falls back to the process's lifetime peak, which only grows).
    """

    INTERVAL_S = 0.02

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif _STATM.is_file():
            self.peak_mb = _rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, _rss_mb())
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak_mb = peak / 2**20 if sys.platform == "darwin" else peak / 2**10


_STATM = Path("/proc/self/statm")
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 4096 / 2**20


def _rss_mb() -> float:
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE_MB
    except (OSError, IndexError, ValueError):
        return 0.0


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    from l2i_bench.errors import BenchError

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(
            f"--device {requested} asked for, but torch sees no CUDA device",
            "use --device cpu (or auto), or install a CUDA build of torch",
        )
    return torch.device(requested)
