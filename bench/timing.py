"""Wall-clock timing that is honest on CUDA, and peak-memory readings.

CUDA kernels run asynchronously, so a clock read without synchronising measures the
launch, not the work: every reading here synchronises first on CUDA devices.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this cell on CUDA (allocator peak since the last reset); on CPU the
    process's peak resident set size, which only grows — the variant column says which."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def memory_variant(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated during fit+explain"
    return "process peak RSS (CPU; cumulative over the run)"


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
