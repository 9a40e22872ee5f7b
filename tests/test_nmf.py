"""Sparse NMF: monotone objective, planted factors, agreement with scikit-learn at mu = 0,
and the training-split dictionary helpers (chunk averaging, strategies, cache)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import NMF

from l2i_bench.errors import BenchError
from l2i_bench.nmf import SparseNMF, chunk_average, frames_for_dictionary, learn_dictionary
from l2i_bench.types import AudioBatch

SKLEARN_LOSS = {1: "kullback-leibler", 2: "frobenius"}


def noisy_low_rank(seed: int = 0, F: int = 30, N: int = 120, K: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    W = torch.rand(F, K, generator=g, dtype=torch.float64) ** 4
    H = torch.rand(K, N, generator=g, dtype=torch.float64) ** 4
    return W @ H + 0.05 * torch.rand(F, N, generator=g, dtype=torch.float64)


def independent_objective(V: np.ndarray, approx: np.ndarray, beta: int) -> float:
    """The beta-divergence written out in numpy, independently of bench.nmf."""
    if beta == 1:
        return float(np.sum(V * np.log(V / approx) - V + approx))
    return float(0.5 * np.sum((V - approx) ** 2))


@pytest.mark.parametrize("beta", [1, 2])
@pytest.mark.parametrize("mu", [0.0, 0.8])
def test_objective_never_increases(beta: int, mu: float) -> None:
    V = noisy_low_rank()
    model = SparseNMF(5, beta=beta, mu=mu, max_iter=150, tol=0, seed=1).fit(V)
    history = np.array(model.objective_history_)
    assert len(history) == 150
    steps = np.diff(history)
    assert np.all(steps <= 1e-9 * np.abs(history[:-1])), steps.max()
    # the recorded value is the objective of the returned factors
    W, H = model.W_.numpy(), model.H_.numpy()
    expected = independent_objective(V.numpy(), W @ H, beta) + mu * H.sum()
    assert history[-1] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("beta", [1, 2])
def test_columns_unit_norm_and_non_negative(beta: int) -> None:
    model = SparseNMF(5, beta=beta, mu=0.8, max_iter=30, seed=2).fit(noisy_low_rank(3))
    assert torch.all(model.W_ >= 0) and torch.all(model.H_ >= 0)
    torch.testing.assert_close(model.W_.norm(dim=0), torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize("beta", [1, 2])
def test_planted_factors_recovered(beta: int) -> None:
    g = torch.Generator().manual_seed(3)
    F, N, K = 40, 150, 5
    W0 = torch.rand(F, K, generator=g, dtype=torch.float64) ** 6
    W0 /= W0.norm(dim=0)
    H0 = torch.rand(K, N, generator=g, dtype=torch.float64) ** 4
    H0 *= torch.rand(K, N, generator=g, dtype=torch.float64) < 0.4
    model = SparseNMF(K, beta=beta, mu=0.0, max_iter=500, tol=0, seed=0).fit(W0 @ H0)
    cosine = (W0.T @ model.W_).numpy()  # both unit-norm: entries are cosines
    rows, cols = linear_sum_assignment(-cosine)
    assert cosine[rows, cols].min() > 0.95


@pytest.mark.parametrize("beta", [1, 2])
def test_matches_sklearn_objective_without_sparsity(beta: int) -> None:
    V = noisy_low_rank(seed=5)
    start = SparseNMF(5, beta=beta, mu=0.0, max_iter=0, seed=4).fit(V)  # the initial factors
    ours = SparseNMF(5, beta=beta, mu=0.0, max_iter=400, tol=0, seed=4).fit(V)
    sk = NMF(5, solver="mu", beta_loss=SKLEARN_LOSS[beta], init="custom", max_iter=400, tol=0)
    Wsk = sk.fit_transform(V.numpy(), W=start.W_.numpy().copy(), H=start.H_.numpy().copy())
    theirs = independent_objective(V.numpy(), Wsk @ sk.components_, beta)
    assert ours.objective_history_[-1] == pytest.approx(theirs, rel=0.02)


def test_transform_keeps_dictionary_and_fits_activations() -> None:
    V = noisy_low_rank(seed=6)
    model = SparseNMF(5, beta=1, mu=0.0, max_iter=200, seed=0).fit(V)
    W = model.W_.clone()
    H = model.transform(V)
    torch.testing.assert_close(model.W_, W)
    rel = ((W @ H - V).norm() / V.norm()).item()
    assert rel < 0.1


def test_invalid_settings_are_bench_errors() -> None:
    with pytest.raises(BenchError, match="beta"):
        SparseNMF(3, beta=0.5)
    with pytest.raises(BenchError, match="non-negative"):
        SparseNMF(3).fit(-torch.ones(4, 4))
    with pytest.raises(BenchError, match="all zeros"):  # KL has no positive floor to use
        SparseNMF(3, beta=1).fit(torch.zeros(4, 4))


def test_chunk_average_averages_within_clips() -> None:
    clip = torch.arange(12, dtype=torch.float32).reshape(1, 12)  # F=1, T=12
    out = chunk_average(clip, 5)
    torch.testing.assert_close(out, torch.tensor([[2.0, 7.0, 10.5]]))
    batch = torch.stack([clip, clip + 100])  # (B=2, F=1, T=12)
    V = frames_for_dictionary(batch, chunk=5)
    assert V.shape == (1, 6)  # 3 per clip: a chunk never spans two clips
    assert V[0, 3].item() == pytest.approx(102.0)
    assert frames_for_dictionary(batch, chunk=1).shape == (1, 24)


class FakeSource:
    """A BatchSource of given STFTs and labels (no audio decoding needed)."""

    def __init__(self, specs: torch.Tensor, targets: torch.Tensor) -> None:
        self.specs, self.targets = specs, targets
        self.clips = [f"c{i}" for i in range(len(specs))]
        self.calls = 0

    def __len__(self) -> int:
        return len(self.specs)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0):
        self.calls += 1
        for s in range(0, len(self.specs), batch_size):
            spec = self.specs[s : s + batch_size]
            n = len(spec)
            yield AudioBatch(
                [f"c{i}" for i in range(s, s + n)],
                torch.zeros(n, 10),
                spec,
                torch.zeros(n, 1, spec.shape[-1], 128),
                self.targets[s : s + n],
            )


def pattern_source(seed: int = 0) -> tuple[FakeSource, torch.Tensor]:
    """Clips mixing one 'noise' pattern with one per-class pattern (3 classes); 4
    clips have no label (noise only)."""
    g = torch.Generator().manual_seed(seed)
    F, T = 30, 40
    patterns = torch.rand(F, 4, generator=g) ** 8
    specs, targets = [], []
    for i in range(16):
        label = i % 4  # 3 = no positive label
        acts = torch.zeros(4, T)
        acts[0] = torch.rand(T, generator=g)  # background noise pattern
        if label < 3:
            acts[1 + label] = 3 * torch.rand(T, generator=g)
        log_mag = patterns @ acts
        specs.append(torch.expm1(log_mag).to(torch.complex64))
        t = torch.zeros(3)
        if label < 3:
            t[label] = 1
        targets.append(t)
    return FakeSource(torch.stack(specs), torch.stack(targets)), patterns


def test_learn_dictionary_global_is_cached(tmp_path: Path) -> None:
    source, _ = pattern_source()
    W = learn_dictionary(
        source, 4, chunk=2, max_iter=50, cache_dir=tmp_path, cache_key="k1", show_progress=False
    )
    assert W.shape == (30, 4)
    files = list((tmp_path / "nmf").glob("*.pt"))
    assert len(files) == 1 and "k1" in files[0].name and "K4" in files[0].name
    again = learn_dictionary(
        source, 4, chunk=2, max_iter=50, cache_dir=tmp_path, cache_key="k1", show_progress=False
    )
    assert source.calls == 1  # second call read the cache, not the data
    torch.testing.assert_close(again, W)


def test_noise_then_class_learns_class_patterns() -> None:
    source, patterns = pattern_source()
    W = learn_dictionary(
        source,
        3,
        strategy="noise_then_class",
        noise_components=1,
        chunk=1,
        mu=0.0,
        max_iter=300,
        show_progress=False,
    )
    assert W.shape == (30, 3)  # one per class, noise columns not stacked (10 x 8 = 80 in A.1)
    truth = patterns / patterns.norm(dim=0)
    cos = truth.T @ W  # (4 true patterns, 3 learned)
    for c in range(3):  # block c is class c's pattern, not the noise
        assert cos[1 + c, c] > 0.9, cos
    with_noise = learn_dictionary(
        source,
        4,
        strategy="noise_then_class",
        noise_components=1,
        keep_noise=True,
        chunk=1,
        mu=0.0,
        max_iter=300,
        show_progress=False,
    )
    assert with_noise.shape == (30, 4)
    assert (truth[:, 0] @ with_noise[:, 0]).item() > 0.9


def test_noise_then_class_needs_unlabelled_clips() -> None:
    source, _ = pattern_source()
    source.targets = source.targets.clone()
    source.targets[source.targets.sum(1) == 0, 0] = 1
    with pytest.raises(BenchError, match="no positive label"):
        learn_dictionary(source, 3, strategy="noise_then_class", max_iter=5, show_progress=False)
    with pytest.raises(BenchError, match="strategy"):
        learn_dictionary(source, 3, strategy="bogus", max_iter=5, show_progress=False)


def test_runs_on_cuda_when_available() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    V = noisy_low_rank().float()
    cpu = SparseNMF(5, max_iter=20, tol=0, seed=0).fit(V)
    gpu = SparseNMF(5, max_iter=20, tol=0, seed=0, device="cuda").fit(V)
    assert gpu.W_.is_cuda
    assert math.isclose(cpu.objective_history_[-1], gpu.objective_history_[-1], rel_tol=1e-3)


# ------------------------------------------------- the updates against a plain reference


def reference_sparse_nmf(
    V: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    beta: int,
    mu: float,
    iters: int,
    *,
    n_fixed: int = 0,
    update_W: bool = True,
    tol: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Le Roux's normalisation-aware multiplicative updates written out the slow, plain
    way in float64 numpy, independently of bench.nmf: full ``Λ = W H``, gradients split
    into positive and negative parts with explicit ones-matrices, objective
    ``D_beta(V | W H) + mu * sum(H)`` after every iteration, the relative-decrease rule.
    Returns the factors of the last iteration run and the objectives."""
    floor = 1e-9
    V = V.astype(np.float64)
    if beta == 1:  # zeros of V -> its smallest positive value
        V = np.where(V > 0, V, V[V > 0].min())
    W, H = W.astype(np.float64).copy(), H.astype(np.float64).copy()
    ones = np.ones_like(V)
    history: list[float] = []
    for _ in range(iters):
        # H: the gradient of D_beta + mu * sum(H) is (positive) - (negative)
        if beta == 1:
            Lam = np.maximum(W @ H, floor)
            neg, pos = W.T @ (V / Lam), W.T @ ones + mu
        else:
            neg, pos = W.T @ V, W.T @ (W @ H) + mu
        H = H * neg / np.maximum(pos, floor)
        if update_W:
            # W: gradient through the unit-norm columns W̄ = W / ||W||
            if beta == 1:
                Lam = np.maximum(W @ H, floor)
                neg, pos = (V / Lam) @ H.T, ones @ H.T
            else:
                neg, pos = V @ H.T, (W @ H) @ H.T
            colsums = np.ones((V.shape[0], V.shape[0]))  # colsums @ X: X's column sums
            num = neg + W * (colsums @ (W * pos))
            den = pos + W * (colsums @ (W * neg))
            new = W * num / np.maximum(den, floor)
            new /= np.maximum(np.sqrt((new**2).sum(axis=0, keepdims=True)), floor)
            new[:, :n_fixed] = W[:, :n_fixed]
            W = new
        if beta == 1:
            Lam = np.maximum(W @ H, floor)
            value = float(np.sum(V * np.log(V / Lam) - V + Lam))
        else:
            value = float(0.5 * np.sum((V - W @ H) ** 2))
        history.append(value + mu * float(H.sum()))
        if tol > 0 and len(history) > 1 and history[-2] - history[-1] <= tol * abs(history[-2]):
            break
    return W, H, history


def with_a_zero(V: torch.Tensor) -> torch.Tensor:
    V = V.clone()
    V[3, 7] = 0.0  # exercises the zero replacement for KL
    return V


@pytest.mark.parametrize("beta", [1, 2])
@pytest.mark.parametrize("mu", [0.0, 0.8])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_updates_match_plain_reference(beta, mu, dtype) -> None:
    """Five iterations from the same start equal the written-out update rules: W, H and
    every evaluated objective (float64: to ~1e-10; float32: to float32 rounding)."""
    V = with_a_zero(noisy_low_rank(seed=7)).to(dtype)
    start = SparseNMF(5, beta=beta, mu=mu, max_iter=0, seed=2).fit(V)
    W0, H0 = start.W_.double().numpy(), start.H_.double().numpy()
    assert start.objective_history_ == [] and start.n_iter_ == 0
    # the start: unit columns, H at the data's scale (mean of W H = mean of V)
    np.testing.assert_allclose(np.linalg.norm(W0, axis=0), 1.0, rtol=1e-6)
    assert (W0 @ H0).mean() == pytest.approx(float(V.double().mean()), rel=1e-6)

    model = SparseNMF(5, beta=beta, mu=mu, max_iter=5, tol=0, seed=2, eval_every=2).fit(V)
    W, H, history = reference_sparse_nmf(V.numpy(), W0, H0, beta, mu, 5)
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    assert model.W_.dtype == dtype and model.n_iter_ == 5
    np.testing.assert_allclose(model.W_.double().numpy(), W, rtol=rtol, atol=rtol * W.max())
    np.testing.assert_allclose(model.H_.double().numpy(), H, rtol=rtol, atol=rtol * H.max())
    # evaluated after iterations 2, 4 and the last (5)
    np.testing.assert_allclose(model.objective_history_, [history[i] for i in (1, 3, 4)], rtol=rtol)


@pytest.mark.parametrize("beta", [1, 2])
def test_fixed_columns_and_transform_match_plain_reference(beta) -> None:
    V = with_a_zero(noisy_low_rank(seed=8))
    fixed = torch.rand(30, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    kwargs = dict(beta=beta, mu=0.5, seed=3, fixed_W=fixed, tol=0)
    start = SparseNMF(3, max_iter=0, **kwargs).fit(V)
    W0, H0 = start.W_.numpy(), start.H_.numpy()
    model = SparseNMF(3, max_iter=4, **kwargs).fit(V)
    W, H, history = reference_sparse_nmf(V.numpy(), W0, H0, beta, 0.5, 4, n_fixed=2)
    assert model.W_.shape == (30, 5)
    np.testing.assert_allclose(model.W_.numpy(), W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.W_[:, :2].numpy(), W0[:, :2], rtol=0, atol=0)
    np.testing.assert_allclose(model.H_.numpy(), H, rtol=1e-10, atol=1e-12)
    assert model.objective_history_[-1] == pytest.approx(history[-1], rel=1e-10)

    # transform: H updates only, W held fixed, from the same start as with max_iter = 0
    model.max_iter = 0
    H0 = model.transform(V).numpy()
    model.max_iter = 6
    H_t = model.transform(V).numpy()
    _, H_ref, history_t = reference_sparse_nmf(V.numpy(), W, H0, beta, 0.5, 6, update_W=False)
    np.testing.assert_allclose(H_t, H_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.objective_history_, history_t, rtol=1e-10)


@pytest.mark.parametrize("beta", [1, 2])
def test_stopping_rule_matches_plain_reference(beta) -> None:
    """The relative-decrease rule stops at the same iteration, with that iteration's
    factors (not one more), in the fit and in transform."""
    V = noisy_low_rank(seed=10)
    start = SparseNMF(4, beta=beta, mu=0.3, max_iter=0, seed=5).fit(V)
    model = SparseNMF(4, beta=beta, mu=0.3, max_iter=100, tol=3e-3, seed=5).fit(V)
    W, H, history = reference_sparse_nmf(
        V.numpy(), start.W_.numpy(), start.H_.numpy(), beta, 0.3, 100, tol=3e-3
    )
    assert 2 < len(history) < 100  # the rule fired
    assert model.n_iter_ == len(history)
    np.testing.assert_allclose(model.objective_history_, history, rtol=1e-10)
    np.testing.assert_allclose(model.W_.numpy(), W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.H_.numpy(), H, rtol=1e-10, atol=1e-12)
