"""Sparse NMF with unit-norm dictionary columns (Le Roux, Weninger & Hershey, MERL TR2015-023).

L2I explains a classifier with a *fixed* dictionary ``W`` of spectral patterns learned
beforehand on ``log(1 + |X|)`` frames of the training split (paper appendix A.1):

    minimise  D_beta(V | W̄ H) + mu * sum(H)   with   W̄ = W / ||W||_2 (per column), W, H >= 0

The L1 penalty only means something when the scale of ``W`` is pinned, hence the unit
L2 columns and Le Roux's *normalisation-aware* multiplicative updates (method notes
§2.2), which follow the gradient projected onto the unit sphere instead of renormalising
after a plain update. Everything is torch, so the dictionary is learned on the GPU when
the run has one. An iteration costs what scikit-learn's MU solver spends on the same
loss (four F x N x K products for beta = 1; two plus the Gram form for beta = 2), done
in one fused pass over column blocks of ``V``: on the CPU each block of ``W H`` is
floored, divided and multiplied while it is still in cache, and the objective reuses
what the pass computed (no extra F x N product, no F x N temporary).

Our choices where the paper and code are silent (recorded here, not guessed from them):
beta = 1 (KL), mu = 0.8, 200 iterations at most with a relative-decrease tolerance of
1e-4, frames averaged in chunks of five (on by default: the appendix does it and it
divides memory by five), zeros of ``V`` replaced by its smallest positive value for
beta != 2 (as ``sparse_nmf.m`` does), floor 1e-9.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from l2i_bench.cache import discard, entry_lock, load_torch, save_torch
from l2i_bench.errors import BenchError
from l2i_bench.types import BatchSource

FLOOR = 1e-9
# Elements of V (and of the Λ scratch block) per thread in one block of the CPU pass:
# 2 MiB of float32. Measured on a 2-core Xeon (2 MiB L2 per core), 1 thread, 513 x 20000,
# K = 100: blocks of 1022 and 2044 columns were fastest, 255 about 10% slower (KL).
_CPU_BLOCK_ELEMENTS = 1 << 19
STRATEGIES = ("global", "noise_then_class")


def beta_objective(V: torch.Tensor, approx: torch.Tensor, beta: float) -> float:
    """``D_beta(V | approx)`` summed over entries (KL for 1, half squared error for 2),
    the same losses scikit-learn's ``NMF(beta_loss=...)`` reports."""
    approx = approx.clamp_min(FLOOR)
    if beta == 1:
        return float((V * torch.log(V.clamp_min(FLOOR) / approx) - V + approx).sum())
    if beta == 2:
        return float(0.5 * ((V - approx) ** 2).sum())
    raise ValueError(f"beta must be 1 or 2, got {beta}")


def _total(x: torch.Tensor) -> torch.Tensor:
    """Sum of a matrix as a float64 scalar tensor: rows summed in their own dtype, the row
    sums in float64 (``sum(dtype=float64)`` over a whole float32 matrix is ~15x slower on
    the CPU). No device sync."""
    return x.sum(-1).sum(dtype=torch.float64)


class SparseNMF:
    """Sparse NMF ``V ≈ W̄ H`` with unit-L2 columns of ``W̄``; a scikit-learn-like API.

    ``fit(V)`` learns ``W_`` (F, K, unit columns) and ``H_`` (K, N); ``transform(V)`` fits
    ``H`` with ``W_`` fixed. ``objective_history_`` holds ``D_beta + mu * sum(H)`` after
    each evaluated iteration (every ``eval_every`` iterations and at the last one).
    ``fixed_W`` (F, K0) pins the first ``K0`` columns (A.1's noise components) and learns
    ``n_components`` more, so ``W_`` then has ``K0 + n_components`` columns.
    """

    def __init__(
        self,
        n_components: int,
        beta: float = 1,
        mu: float = 0.8,
        max_iter: int = 200,
        tol: float = 1e-4,
        seed: int = 0,
        *,
        device: torch.device | str | None = None,
        eval_every: int = 1,
        fixed_W: torch.Tensor | None = None,
        show_progress: bool = False,
    ) -> None:
        if beta not in (1, 2):
            raise BenchError(
                f"sparse NMF supports beta 1 (KL) or 2 (Euclidean), got {beta}",
                "set the l2i option nmf_beta to 1 or 2",
            )
        if n_components < 1:
            raise BenchError(
                f"sparse NMF needs at least one component, got {n_components}",
                "set the l2i option components to a positive integer",
            )
        if mu < 0:
            raise BenchError(f"sparse NMF needs mu >= 0, got {mu}", "set nmf_mu >= 0")
        self.n_components = int(n_components)
        self.beta = beta
        self.mu = float(mu)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.seed = int(seed)
        self.device = torch.device(device) if device is not None else None
        self.eval_every = max(1, int(eval_every))
        self.fixed_W = fixed_W
        self.show_progress = show_progress
        self.W_: torch.Tensor | None = None
        self.H_: torch.Tensor | None = None
        self.objective_history_: list[float] = []
        self.n_iter_ = 0

    # ------------------------------------------------------------------ helpers

    def _prepare(self, V: torch.Tensor) -> torch.Tensor:
        if V.dim() != 2:
            raise BenchError(f"NMF expects a (F, N) matrix, got shape {tuple(V.shape)}")
        device = self.device if self.device is not None else V.device
        dtype = V.dtype if V.dtype in (torch.float32, torch.float64) else torch.float32
        V = V.detach().to(device=device, dtype=dtype)
        # One pass for both checks: NaN propagates to both ends, an infinity reaches one.
        lo, hi = (float(x) for x in torch.aminmax(V)) if V.numel() else (0.0, 0.0)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0:
            raise BenchError(
                "NMF input must be finite and non-negative",
                "feed log(1 + |X|) frames, not log-mel dB",
            )
        if self.beta != 2 and lo == 0:
            smallest = float(V.masked_fill(V == 0, math.inf).amin())
            if not math.isfinite(smallest):
                raise BenchError("NMF input is all zeros (silent training audio?)")
            V = V.clamp_min(smallest)  # zeros -> smallest positive value, the rest unchanged
        return V.contiguous()

    def _generator_rand(
        self, shape: tuple[int, ...], like: torch.Tensor, offset: int
    ) -> torch.Tensor:
        """Uniform noise drawn on the CPU from a seeded generator, so a CPU and a GPU run
        start from the same factors."""
        g = torch.Generator().manual_seed(self.seed * 7919 + offset)
        return torch.rand(shape, generator=g, dtype=torch.float64).to(like.device, like.dtype)

    def _init_H(self, V: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        H = self._generator_rand((W.shape[1], V.shape[1]), V, offset=1) + 0.01
        # mean(W H) = colsum(W) . rowsum(H) / (F N): start at the data's scale, no F x N product
        mean_wh = (W.sum(0) @ H.sum(1)) / max(1, V.shape[0] * V.shape[1])
        scale = V.mean() / mean_wh.clamp_min(FLOOR)
        return H * scale

    @staticmethod
    def _block_columns(V: torch.Tensor) -> int:
        """Columns of ``V`` per block of the fused pass. On the CPU a block of ``Λ`` stays
        in the core's cache between its product and the element-wise work on it (and the
        products run on cache-resident operands); a GPU takes the whole matrix at once."""
        F, N = V.shape
        if V.device.type != "cpu":
            return max(1, N)
        per_thread = max(64, _CPU_BLOCK_ELEMENTS // max(1, F))
        return max(1, min(N, per_thread * torch.get_num_threads()))

    def _record(self, value: float, bar) -> bool:
        """Append an evaluated objective; True when it fell by at most ``tol`` (relative)
        since the previous evaluation, the stopping rule."""
        history = self.objective_history_
        previous = history[-1] if history else None
        history.append(value)
        bar.set_postfix(objective=f"{value:.4g}")
        return (
            previous is not None and self.tol > 0 and previous - value <= self.tol * abs(previous)
        )

    def _evaluated(self, it: int) -> bool:
        return (it + 1) % self.eval_every == 0 or it == self.max_iter - 1

    # --------------------------------------------------------------------- core

    def _run(
        self, V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, n_fixed: int, update_W: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alternate H and W updates; columns ``< n_fixed`` of ``W`` never change."""
        self.objective_history_ = []
        self.n_iter_ = 0
        if self.max_iter <= 0:
            return W, H
        bar = tqdm(
            total=self.max_iter, desc="sparse NMF", unit="it", disable=not self.show_progress
        )
        try:
            if self.beta == 1:
                return self._run_kl(V, W, H, n_fixed, update_W, bar)
            if update_W:
                return self._run_euclidean(V, W, H, n_fixed, bar)
            return W, self._run_euclidean_fixed_W(V, W, H, bar)
        finally:
            bar.close()

    def _run_kl(
        self, V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, n_fixed: int, update_W: bool, bar
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """beta = 1. One fused pass over column blocks of ``V`` per iteration: for block j,
        ``Λ_j = W H_j`` gives ``H_j``'s update, then ``Λ'_j = W H'_j`` gives block j's
        share of ``W``'s gradient (``H`` is column-separable and ``W`` only changes after
        the pass): one block-sized scratch buffer, no F x N intermediate.

        The objective of iteration t needs ``Λ = W_t H_t``, which iteration t+1's pass
        computes first anyway: it is read there (lazily) and the updated ``H`` goes to a
        second buffer, dropped if iteration t met the stopping rule. The last iteration's
        objective takes one product-only pass."""
        mu = self.mu
        b = self._block_columns(V)
        scratch = V.new_empty(V.shape[0] * min(b, V.shape[1]))  # Λ, V/Λ, V log(V/Λ) in turn
        H_next = torch.empty_like(H)
        sum_v = _total(V)
        A = W.new_empty(W.shape) if update_W else None
        pending = False  # does this pass evaluate the previous iteration?
        for it in range(self.max_iter):
            h_den = (W.sum(0).unsqueeze(1) + mu).clamp_min(FLOOR)
            data = self._kl_pass(V, W, H, b, scratch, pending, H_next, h_den, A)
            if pending:
                assert data is not None
                value = float(data - sum_v + mu * _total(H))
                if self._record(value, bar):
                    self.n_iter_ = it  # iteration it - 1 met the rule: return its factors
                    return W, H
            H, H_next = H_next, H
            if A is not None:
                s = H.sum(1)  # (K,) positive part of W's gradient (the same in every row)
                num = A + W * (s * W.sum(0))
                den = s + W * (A * W).sum(0)
                W = self._renormalise(W, num, den, n_fixed)
            self.n_iter_ = it + 1
            bar.update(1)
            pending = self._evaluated(it)
        if pending:  # the last iteration
            data = self._kl_pass(V, W, H, b, scratch, True)
            assert data is not None
            self._record(float(data - sum_v + mu * _total(H)), bar)
        return W, H

    @staticmethod
    def _kl_pass(
        V: torch.Tensor,
        W: torch.Tensor,
        H: torch.Tensor,
        b: int,
        scratch: torch.Tensor,
        objective: bool,
        H_out: torch.Tensor | None = None,
        h_den: torch.Tensor | None = None,
        A: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """One pass over column blocks. ``H_out <- H * Wᵀ(V/Λ) / h_den`` (Λ = W H, floored),
        ``A <- (V/Λ') H_outᵀ`` (Λ' = W H_out) when ``A`` is given, and, with ``objective``,
        returns ``sum(V log(V/Λ) + Λ)`` (float64) for the factors passed in."""
        F, N = V.shape
        total = V.new_zeros((), dtype=torch.float64) if objective else None
        if A is not None:
            A.zero_()
        for start in range(0, N, b):
            stop = min(N, start + b)
            Vj, Hj = V[:, start:stop], H[:, start:stop]
            L = scratch[: F * (stop - start)].view(F, stop - start)
            torch.mm(W, Hj, out=L).clamp_min_(FLOOR)  # Λ_j
            if total is not None:
                total += L.sum()
            R = torch.div(Vj, L, out=L)  # V/Λ, in place
            if H_out is not None:
                assert h_den is not None
                Hn = H_out[:, start:stop]
                torch.mm(W.T, R, out=Hn).mul_(Hj).div_(h_den)
            if total is not None:
                total += torch.log(R, out=R).mul_(Vj).sum()  # V log(V/Λ); R is spent
            if A is not None:
                torch.mm(W, Hn, out=L).clamp_min_(FLOOR)  # Λ'_j with the new H_j
                A.addmm_(torch.div(Vj, L, out=L), Hn.T)
        return total

    def _run_euclidean(
        self, V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, n_fixed: int, bar
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """beta = 2 with W learned, Gram form. Per column block: ``Wᵀ V_j``, the H update
        (``H_j <- H_j * Wᵀ V_j / (WᵀW H_j + mu)``, in place), then ``V_j H_jᵀ`` into W's
        gradient while ``V_j`` is still in cache. The objective after the W update needs
        no large product: ``sum(H * WᵀV) = sum(W * VHᵀ)`` and
        ``sum(H * WᵀW H) = sum(WᵀW * HHᵀ)``."""
        mu = self.mu
        N, K = V.shape[1], W.shape[1]
        b = self._block_columns(V)
        scratch = V.new_empty(2 * K * min(b, N))  # Wᵀ V_j and WᵀW H_j
        sum_v2 = sum(_total(V[:, s : s + b].square()) for s in range(0, N, b))
        hvt = W.new_empty(W.shape[::-1])  # H Vᵀ, accumulated as (K, F): faster than V Hᵀ here
        gram = W.T @ W
        for it in range(self.max_iter):
            hvt.zero_()
            for start in range(0, N, b):
                stop = min(N, start + b)
                n = stop - start
                Vj, Hj = V[:, start:stop], H[:, start:stop]
                wtv = torch.mm(W.T, Vj, out=scratch[: K * n].view(K, n))
                den = torch.mm(gram, Hj, out=scratch[K * n : 2 * K * n].view(K, n))
                if mu:
                    den.add_(mu)
                Hj.mul_(wtv).div_(den.clamp_min_(FLOOR))
                hvt.addmm_(Hj, Vj.T)
            vht = hvt.T
            hht = H @ H.T
            lht = W @ hht  # Λ Hᵀ without forming Λ
            num = vht + W * (lht * W).sum(0)
            den_w = lht + W * (vht * W).sum(0)
            W = self._renormalise(W, num, den_w, n_fixed)
            gram = W.T @ W
            self.n_iter_ = it + 1
            bar.update(1)
            if self._evaluated(it):
                cross, fit = _total(W * vht), _total(gram * hht)
                value = 0.5 * (sum_v2 - 2.0 * cross + fit) + mu * _total(H)
                if self._record(float(value), bar):
                    break
        return W, H

    def _run_euclidean_fixed_W(
        self, V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, bar
    ) -> torch.Tensor:
        """beta = 2 with W fixed (``transform``): ``WᵀV`` and ``WᵀW`` are constants."""
        mu = self.mu
        sum_v2 = _total(V.square())
        wtv = W.T @ V
        gram = W.T @ W
        den = torch.empty_like(H)
        for it in range(self.max_iter):
            torch.mm(gram, H, out=den).add_(mu).clamp_min_(FLOOR)
            H.mul_(wtv).div_(den)
            self.n_iter_ = it + 1
            bar.update(1)
            if self._evaluated(it):
                cross, fit = _total(H * wtv), _total(H * (gram @ H))
                value = 0.5 * (sum_v2 - 2.0 * cross + fit) + mu * _total(H)
                if self._record(float(value), bar):
                    break
        return H

    @staticmethod
    def _renormalise(
        W: torch.Tensor, num: torch.Tensor, den: torch.Tensor, n_fixed: int
    ) -> torch.Tensor:
        new = W * num / den.clamp_min(FLOOR)
        new = new / new.norm(dim=0, keepdim=True).clamp_min(FLOOR)
        if n_fixed:
            new[:, :n_fixed] = W[:, :n_fixed]
        return new

    # ------------------------------------------------------------------- public

    def fit(self, V: torch.Tensor) -> SparseNMF:
        """Learn ``W_`` and ``H_`` from ``V`` (F, N), non-negative."""
        V = self._prepare(V)
        W = self._generator_rand((V.shape[0], self.n_components), V, offset=0) + 0.01
        n_fixed = 0
        if self.fixed_W is not None:
            fixed = self.fixed_W.to(V.device, V.dtype)
            if fixed.shape[0] != V.shape[0]:
                raise BenchError(f"fixed_W has {fixed.shape[0]} rows, V has {V.shape[0]}")
            fixed = fixed / fixed.norm(dim=0, keepdim=True).clamp_min(FLOOR)
            W = torch.cat([fixed, W], dim=1)
            n_fixed = fixed.shape[1]
        W = W / W.norm(dim=0, keepdim=True)
        H = self._init_H(V, W)
        self.W_, self.H_ = self._run(V, W, H, n_fixed, update_W=True)
        return self

    def transform(self, V: torch.Tensor) -> torch.Tensor:
        """Activations ``H`` (K, N) of ``V`` with the learned dictionary held fixed."""
        if self.W_ is None:
            raise BenchError("SparseNMF.transform called before fit")
        V = self._prepare(V)
        W = self.W_.to(V.device, V.dtype)
        _, H = self._run(V, W, self._init_H(V, W), W.shape[1], update_W=False)
        return H

    def fit_transform(self, V: torch.Tensor) -> torch.Tensor:
        self.fit(V)
        assert self.H_ is not None
        return self.H_


# --------------------------------------------------------------- training frames


def chunk_average(log_magnitude: torch.Tensor, chunk: int = 5) -> torch.Tensor:
    """Frames ``(F, ceil(T/chunk))`` of one clip ``(F, T)``, each the mean of ``chunk``
    consecutive frames (the last chunk averages what is left). Chunks never span clips."""
    if chunk <= 1:
        return log_magnitude
    F_, T = log_magnitude.shape
    whole = (T // chunk) * chunk
    parts = []
    if whole:
        parts.append(log_magnitude[:, :whole].reshape(F_, whole // chunk, chunk).mean(-1))
    if whole < T:
        parts.append(log_magnitude[:, whole:].mean(-1, keepdim=True))
    return torch.cat(parts, dim=1)


def frames_for_dictionary(*log_magnitude_batches: torch.Tensor, chunk: int = 5) -> torch.Tensor:
    """Concatenate ``log(1+|X|)`` batches ``(B, F, T)`` into the NMF matrix ``(F, N)``.

    Averaging in chunks of five is the appendix's choice (A.1, after Bisot et al.) and our
    default: it cuts the ESC-50 training matrix from ~690k to ~138k frames (~280 MB in
    float32), which keeps the dictionary learnable on one GPU. ``chunk=1`` disables it.
    """
    columns = [chunk_average(clip, chunk) for batch in log_magnitude_batches for clip in batch]
    if not columns:
        raise BenchError("no training frames for the NMF dictionary (empty training split?)")
    return torch.cat(columns, dim=1)


def _collect_frames(
    train: BatchSource, chunk: int, batch_size: int, show_progress: bool
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-clip chunk-averaged frames (CPU) and the clips' multi-hot targets."""
    per_clip: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    n_batches = (len(train) + batch_size - 1) // batch_size
    for batch in tqdm(
        train.batches(batch_size),
        total=n_batches,
        desc="NMF frames",
        unit="batch",
        disable=not show_progress,
    ):
        for clip in batch.log_magnitude:
            per_clip.append(chunk_average(clip, chunk).float().cpu())
        targets.append(batch.targets.float().cpu())
    if not per_clip:
        raise BenchError("the training split is empty: no frames to learn the NMF dictionary")
    return per_clip, torch.cat(targets)


def dictionary_cache_file(
    cache_dir: Path,
    cache_key: str,
    K: int,
    beta: float,
    mu: float,
    strategy: str,
    chunk: int,
    max_iter: int,
    seed: int,
) -> Path:
    """Where a dictionary lives: the run's data+classifier key plus every NMF setting."""
    tag = f"K{K}_beta{beta:g}_mu{mu:g}_{strategy}_chunk{chunk}_it{max_iter}_seed{seed}"
    safe_key = (
        cache_key
        if cache_key.replace("-", "").replace("_", "").isalnum()
        else (hashlib.sha256(cache_key.encode()).hexdigest()[:16])
    )
    return Path(cache_dir) / "nmf" / f"dictionary_{safe_key}_{tag}.pt"


def _split_counts(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def learn_dictionary(
    train: BatchSource,
    K: int,
    *,
    beta: float = 1,
    mu: float = 0.8,
    strategy: str = "global",
    chunk: int = 5,
    max_iter: int = 200,
    tol: float = 1e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    noise_components: int = 10,
    clips_per_class: int = 700,
    keep_noise: bool = False,
    cache_dir: Path | None = None,
    cache_key: str | None = None,
    show_progress: bool = True,
) -> torch.Tensor:
    """The dictionary ``W`` (F, K), unit-norm columns, from the TRAINING split only.

    ``strategy="global"``: one sparse NMF on all training frames (ESC-50 in A.1).
    ``strategy="noise_then_class"`` (SONYC-UST in A.1): ``noise_components`` learned from
    clips with no positive label; then, per class, ``K // C`` components (the remainder
    spread over the first classes) learned from at most ``clips_per_class`` randomly
    drawn positive clips with the noise components held fixed; the class components are
    stacked into ``W``. The paper's count (10 x 8 = 80 for 10 noise components) says the
    noise columns are not part of ``W``; ``keep_noise=True`` prepends them (``K`` then
    includes them).

    With ``cache_dir`` and ``cache_key`` the result is cached and reused (an entry with a
    checked integrity record, :mod:`l2i_bench.cache`).
    """
    if strategy not in STRATEGIES:
        raise BenchError(
            f"unknown NMF dictionary strategy {strategy!r}",
            f"use one of {', '.join(STRATEGIES)} (l2i option strategy)",
        )

    def learn() -> torch.Tensor:
        return _learn(
            train, K, beta, mu, strategy, chunk, max_iter, tol, seed, device,
            batch_size, noise_components, clips_per_class, keep_noise, show_progress,
        )  # fmt: skip

    if cache_dir is not None and cache_key is not None:
        tag = strategy
        if strategy == "noise_then_class":  # its extra settings change the result too
            tag += f"-n{noise_components}-c{clips_per_class}" + ("-keep" if keep_noise else "")
        cache_file = dictionary_cache_file(
            cache_dir, cache_key, K, beta, mu, tag, chunk, max_iter, seed
        )
        with entry_lock(cache_file):
            W = load_torch(cache_file, cache_file.stem)
            if isinstance(W, torch.Tensor) and W.ndim == 2 and W.shape[1] == K:
                return W
            if W is not None:
                discard(
                    cache_file,
                    f"it holds {type(W).__name__} {getattr(W, 'shape', '')}, not (F, {K})",
                )
            W = learn()
            save_torch(cache_file, W, cache_file.stem)
            return W
    return learn()


def _learn(
    train: BatchSource,
    K: int,
    beta: float,
    mu: float,
    strategy: str,
    chunk: int,
    max_iter: int,
    tol: float,
    seed: int,
    device: torch.device | str,
    batch_size: int,
    noise_components: int,
    clips_per_class: int,
    keep_noise: bool,
    show_progress: bool,
) -> torch.Tensor:
    """The dictionary itself (what :func:`learn_dictionary` caches)."""
    per_clip, targets = _collect_frames(train, chunk, batch_size, show_progress)

    def nmf(
        n: int, frames: Sequence[torch.Tensor], offset: int, fixed: torch.Tensor | None = None
    ) -> SparseNMF:
        V = torch.cat(list(frames), dim=1).to(device)
        return SparseNMF(
            n,
            beta=beta,
            mu=mu,
            max_iter=max_iter,
            tol=tol,
            seed=seed + offset,
            device=device,
            fixed_W=fixed,
            show_progress=show_progress,
        ).fit(V)

    if strategy == "global":
        model = nmf(K, per_clip, 0)
        assert model.W_ is not None
        W = model.W_
    else:
        W = _noise_then_class(
            per_clip, targets, K, nmf, noise_components, clips_per_class, keep_noise, seed
        )
    return W.float().cpu().contiguous()


def _noise_then_class(
    per_clip: list[torch.Tensor],
    targets: torch.Tensor,
    K: int,
    nmf,
    noise_components: int,
    clips_per_class: int,
    keep_noise: bool,
    seed: int,
) -> torch.Tensor:
    num_classes = targets.shape[1]
    negatives = [c for c, t in zip(per_clip, targets, strict=True) if t.sum() == 0]
    if not negatives:
        raise BenchError(
            "strategy noise_then_class needs training clips with no positive label "
            "to learn the noise components, and this training split has none",
            "use the l2i option strategy=global for this dataset",
        )
    class_total = K - noise_components if keep_noise else K
    if class_total < num_classes:
        raise BenchError(
            f"K={K} leaves fewer than one component per class ({num_classes})",
            "raise the l2i option components",
        )
    noise = nmf(noise_components, negatives, 0).W_
    assert noise is not None
    g = torch.Generator().manual_seed(seed)
    blocks = [noise] if keep_noise else []
    for c, n_c in enumerate(_split_counts(class_total, num_classes)):
        positive = torch.nonzero(targets[:, c] > 0).flatten()
        if positive.numel() == 0:
            raise BenchError(
                f"class {c} has no positive training clip: cannot learn its NMF components",
                "use the l2i option strategy=global",
            )
        pick = positive[torch.randperm(positive.numel(), generator=g)[:clips_per_class]]
        model = nmf(n_c, [per_clip[i] for i in sorted(pick.tolist())], 1 + c, fixed=noise)
        assert model.W_ is not None
        blocks.append(model.W_[:, noise.shape[1] :])
    return torch.cat(blocks, dim=1)
