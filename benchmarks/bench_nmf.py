"""Seconds per iteration of our torch sparse NMF against scikit-learn's MU solver.

Same matrix (log1p of gamma noise, a stand-in for log-magnitude frames), same K, same
beta-loss, mu = 0 for ours so both solve the same problem. scikit-learn with ``tol=0``
never evaluates its objective; ours still records it every 10 iterations
(``eval_every=10``), so the comparison does not flatter ours. Best of ``--repeats``
interleaved runs, since the CPUs may be shared.

    .venv/bin/python benchmarks/bench_nmf.py --device cpu
    .venv/bin/python benchmarks/bench_nmf.py --device cuda --rows 513 --cols 100000
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning

from l2i_bench.nmf import SparseNMF

LOSSES = {1: "kullback-leibler", 2: "frobenius"}


def matrix(rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.log1p(rng.gamma(0.5, 2.0, size=(rows, cols))).astype(np.float32)


def time_ours(V: np.ndarray, K: int, beta: int, iters: int, device: str) -> float:
    X = torch.from_numpy(V).to(device)
    SparseNMF(K, beta=beta, mu=0.0, max_iter=2, tol=0, device=device).fit(X)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    model = SparseNMF(
        K, beta=beta, mu=0.0, max_iter=iters, tol=0, device=device, eval_every=10
    ).fit(X)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / model.n_iter_


def sklearn_nmf(K: int, beta: int, iters: int) -> NMF:
    """scikit-learn's multiplicative-update NMF on the same problem as ours with mu = 0;
    ``tol=0`` runs every iteration and never evaluates the objective."""
    return NMF(
        K, solver="mu", beta_loss=LOSSES[beta], init="random", max_iter=iters, tol=0, random_state=0
    )


def fit_quietly(model: NMF, V: np.ndarray) -> NMF:
    """Fit without the ConvergenceWarning that ``tol=0`` always triggers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(V)


def time_sklearn(V: np.ndarray, K: int, beta: int, iters: int) -> float:
    model = sklearn_nmf(K, beta, iters)
    start = time.perf_counter()
    fit_quietly(model, V)
    return (time.perf_counter() - start) / model.n_iter_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=513)
    parser.add_argument("--cols", type=int, default=20000)
    parser.add_argument("--components", type=int, default=100)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or cuda:N")
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs (shared CPUs)")
    parser.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn column")
    args = parser.parse_args()
    V = matrix(args.rows, args.cols, seed=0)
    print(
        f"matrix {args.rows} x {args.cols}, K={args.components}, {args.iters} iterations, "
        f"torch threads {torch.get_num_threads()}, device {args.device}"
    )
    print(f"best of {args.repeats} runs")
    print(f"{'beta':>4} | {'ours s/it':>10} | {'sklearn s/it':>12} | {'speed-up':>8}")
    for beta in (1, 2):
        ours, theirs = float("inf"), float("inf")
        for _ in range(args.repeats):  # interleaved, so load changes hit both columns
            ours = min(ours, time_ours(V, args.components, beta, args.iters, args.device))
            if not args.no_sklearn:
                theirs = min(theirs, time_sklearn(V, args.components, beta, args.iters))
        theirs = float("nan") if args.no_sklearn else theirs
        print(f"{beta:>4} | {ours:>10.4f} | {theirs:>12.4f} | {theirs / ours:>7.1f}x")


if __name__ == "__main__":
    main()
