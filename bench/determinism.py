"""Run-to-run determinism: what the suite fixes, and a record of it for the manifest.

Seeds make a run's random draws repeat (:func:`l2i_bench.workspace.seed_everything`,
:func:`l2i_bench.workspace.derived_seed`); what remains is floating-point order. On CPU
a matrix product or a convolution sums in an order set by the number of threads, so the
same seed trained with 2 threads and with 16 gives different weights, which then move
every later number (the README's "Reproducibility" section states by how much). The
suite therefore fixes the thread count (``--threads``, default: the cores torch sees)
and records it, asks torch for deterministic kernels where they exist
(``torch.use_deterministic_algorithms(True, warn_only=True)``: ops without a
deterministic kernel warn instead of failing), turns off cuDNN's autotuner and sets
``CUBLAS_WORKSPACE_CONFIG`` so that cuBLAS repeats on CUDA. Cost: none measurable on
CPU; on CUDA a few kernels are slower.
"""

from __future__ import annotations

import os
from typing import Any

import torch

CUBLAS_WORKSPACE = ":4096:8"


def apply_determinism(threads: int | None = None) -> dict[str, Any]:
    """Fix the settings above for this process; returns what was set (manifest)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return determinism_record()


def determinism_record() -> dict[str, Any]:
    """The process's current determinism settings, as the manifest records them."""
    return {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
