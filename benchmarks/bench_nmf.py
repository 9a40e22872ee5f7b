"""Seconds per iteration of our torch sparse NMF against scikit-learn's MU solver.

Same matrix (log1p of gamma noise, a stand-in for log-magnitude frames), same K, same
beta-loss, same iteration count, mu = 0 for ours so both solve the same problem. Each
timed fit starts after a 2-iteration warm-up fit of the same solver, and seconds per
iteration are the whole fit's time (set-up included) over its iterations, for both;
``--marginal`` also fits twice as many iterations and reports ``(t(2n) - t(n)) / n``,
the cost of an iteration without the set-up (what a 200-iteration L2I fit approaches).
scikit-learn with ``tol=0`` never evaluates its objective; ours still records it every
10 iterations (``eval_every=10``), so the comparison does not flatter ours.

Both run on ``--threads`` CPU threads (torch's intra-op pool, and scikit-learn's BLAS
and OpenMP pools through threadpoolctl; default 1, the fair and reproducible setting on
a shared machine). The repeats are interleaved (ours, scikit-learn, ours, ...), so a
change of load hits both columns; the table gives the best and the median of the
repeats, and the load average before and after. On CUDA our fits are timed between
device synchronisations (scikit-learn stays on the CPU).

    .venv/bin/python benchmarks/bench_nmf.py --device cpu
    .venv/bin/python benchmarks/bench_nmf.py --device cuda --threads 16 --cols 100000 --marginal
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from functools import partial

import numpy as np
import sklearn
import torch
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from l2i_bench.nmf import SparseNMF

LOSSES = {1: "kullback-leibler", 2: "frobenius"}
NAMES = {1: "KL", 2: "Frobenius"}


def matrix(rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.log1p(rng.gamma(0.5, 2.0, size=(rows, cols))).astype(np.float32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ours(V: np.ndarray, K: int, beta: int, iters: int, device: str) -> float:
    """Seconds of a whole fit of ``iters`` iterations (set-up included), after a warm-up."""
    dev = torch.device(device)
    X = torch.from_numpy(V).to(dev)
    SparseNMF(K, beta=beta, mu=0.0, max_iter=2, tol=0, device=dev).fit(X)  # warm-up
    _sync(dev)
    start = time.perf_counter()
    model = SparseNMF(K, beta=beta, mu=0.0, max_iter=iters, tol=0, device=dev, eval_every=10)
    model.fit(X)
    _sync(dev)
    assert model.n_iter_ == iters
    return time.perf_counter() - start


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
    """Seconds of a whole fit of ``iters`` iterations, after a warm-up as for ours."""
    fit_quietly(sklearn_nmf(K, beta, 2), V)
    model = sklearn_nmf(K, beta, iters)
    start = time.perf_counter()
    fit_quietly(model, V)
    assert model.n_iter_ == iters
    return time.perf_counter() - start


def device_name(device: str) -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(dev)})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"cpu ({cpu}, {os.cpu_count()} cores)"


def load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=513)
    parser.add_argument("--cols", type=int, default=20000)
    parser.add_argument("--components", type=int, default=100)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both solvers")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed runs")
    parser.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn column")
    parser.add_argument(
        "--marginal",
        action="store_true",
        help="also fit 2 x --iters and report the marginal seconds per iteration, "
        "(t(2n) - t(n)) / n, which leaves out each solver's set-up",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    V = matrix(args.rows, args.cols, seed=0)
    print(
        f"sparse NMF vs scikit-learn MU: matrix {args.rows} x {args.cols} float32, "
        f"K={args.components}, {args.iters} iterations, mu=0\n"
        f"ours on {device_name(args.device)}; scikit-learn on cpu\n"
        f"torch {torch.__version__}, scikit-learn {sklearn.__version__}, numpy {np.__version__}; "
        f"{args.threads} CPU thread(s) each\n"
        f"{args.repeats} interleaved repeats; before: {load()}"
    )
    header = (
        f"{'loss':>10} | {'ours best':>9} | {'ours med':>9} | {'sk best':>9} | "
        f"{'sk med':>9} | {'speed-up best':>13} | {'speed-up med':>12}"
    )
    n = args.iters
    rows: dict[str, list[str]] = {"whole": [], "marginal": []}
    with threadpool_limits(limits=args.threads):
        for beta in (1, 2):
            whole: dict[str, list[float]] = {"ours": [], "sk": []}
            marginal: dict[str, list[float]] = {"ours": [], "sk": []}
            solvers = {"ours": partial(time_ours, V, args.components, beta, device=args.device)}
            if not args.no_sklearn:
                solvers["sk"] = partial(time_sklearn, V, args.components, beta)
            for _ in range(args.repeats):  # interleaved, so load changes hit both columns
                for name, fit_seconds in solvers.items():
                    once = fit_seconds(n)
                    whole[name].append(once / n)
                    if args.marginal:
                        marginal[name].append((fit_seconds(2 * n) - once) / n)
            rows["whole"].append(_row(NAMES[beta], whole))
            if args.marginal:
                rows["marginal"].append(_row(NAMES[beta], marginal))
    print("seconds per iteration: a whole fit's time over its iterations")
    print(header)
    print("-" * len(header))
    print("\n".join(rows["whole"]))
    if args.marginal:
        print(f"marginal seconds per iteration: (t({2 * n} it) - t({n} it)) / {n}")
        print(header)
        print("-" * len(header))
        print("\n".join(rows["marginal"]))
    print(f"after: {load()}")


def _row(loss: str, seconds: dict[str, list[float]]) -> str:
    """One table row; a marginal time at or below zero (the extra iterations cost less
    than the set-up's spread between fits) gets no ratio, not a negative one."""
    ours, theirs = seconds["ours"], seconds["sk"]
    o_best, o_med = min(ours), statistics.median(ours)
    t_best = min(theirs) if theirs else float("nan")
    t_med = statistics.median(theirs) if theirs else float("nan")

    def ratio(them: float, us: float, width: int) -> str:
        return f"{them / us:>{width}.2f}x" if us > 0 else f"{'(spread)':>{width + 1}}"

    return (
        f"{loss:>10} | {o_best:>9.4f} | {o_med:>9.4f} | {t_best:>9.4f} | "
        f"{t_med:>9.4f} | {ratio(t_best, o_best, 12)} | {ratio(t_med, o_med, 11)}"
    )


if __name__ == "__main__":
    main()
