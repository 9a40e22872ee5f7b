"""Speed of the shared hot paths, with pytest-benchmark (not part of the test run).

    .venv/bin/pytest benchmarks/test_speed.py --benchmark-enable

It runs on CUDA when torch sees a device, else on the CPU.

Every timed call ends with a device synchronisation, so CUDA work is measured, not
just launched. Groups compare like with like: our sparse NMF against scikit-learn's
multiplicative-update NMF on the same matrix and loss.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bench_nmf import NAMES, fit_quietly, matrix, sklearn_nmf  # this folder's CLI benchmark

from l2i_bench.audio import SAMPLE_RATE, FrontEnd
from l2i_bench.nmf import SparseNMF
from l2i_bench.plugins.classifiers.kumar import KumarCNN
from l2i_bench.timing import synchronize
from l2i_bench.types import Task


@pytest.fixture(scope="module")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _synced(fn, device):
    def run():
        out = fn()
        synchronize(device)
        return out

    return run


@pytest.fixture(scope="module")
def clips(device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return (0.1 * torch.randn(16, 5 * SAMPLE_RATE, generator=gen)).to(device)


@pytest.mark.benchmark(group="front end: 16 clips of 5 s")
def test_features(benchmark, clips, device):
    front_end = FrontEnd(device)
    benchmark.extra_info["device"] = str(device)
    benchmark(_synced(lambda: front_end.logmel(clips), device))


@pytest.mark.benchmark(group="classifier forward: 16 clips of 5 s")
@pytest.mark.parametrize("width", [0.25, 1.0])
def test_classifier_forward(benchmark, clips, device, width):
    model = KumarCNN(50, Task.MULTICLASS, width=width).to(device).eval()
    logmel = FrontEnd(device).logmel(clips)
    benchmark.extra_info["device"] = str(device)
    with torch.no_grad():
        benchmark(_synced(lambda: model(logmel), device))


NMF_SHAPE = (513, 5000)


@pytest.fixture(scope="module")
def nmf_matrix() -> np.ndarray:
    return matrix(*NMF_SHAPE, seed=0)


def _nmf_group(beta: int) -> str:
    return f"NMF 513x5000, K=100, {NAMES[beta]}, 20 iterations"


@pytest.mark.parametrize("beta", [1, 2])
def test_sparse_nmf_ours(benchmark, nmf_matrix, device, beta):
    V = torch.from_numpy(nmf_matrix).to(device)
    model = SparseNMF(100, beta=beta, mu=0.0, max_iter=20, tol=0, device=device, eval_every=10)
    benchmark.group = _nmf_group(beta)
    benchmark.extra_info["device"] = str(device)
    benchmark.pedantic(_synced(lambda: model.fit(V), device), rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("beta", [1, 2])
def test_sparse_nmf_sklearn(benchmark, nmf_matrix, beta):
    model = sklearn_nmf(100, beta=beta, iters=20)
    benchmark.group = _nmf_group(beta)
    benchmark.extra_info["device"] = "cpu"
    benchmark.pedantic(lambda: fit_quietly(model, nmf_matrix), rounds=3, warmup_rounds=1)
