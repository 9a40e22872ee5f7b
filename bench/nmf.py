"""Sparse NMF with unit-norm dictionary columns (Le Roux, Weninger & Hershey, MERL TR2015-023).

L2I explains a classifier with a *fixed* dictionary ``W`` of spectral patterns learned
beforehand on ``log(1 + |X|)`` frames of the training split (paper appendix A.1):

    minimise  D_beta(V | W̄ H) + mu * sum(H)   with   W̄ = W / ||W||_2 (per column), W, H >= 0

The L1 penalty only means something when the scale of ``W`` is pinned, hence the unit
L2 columns and Le Roux's *normalisation-aware* multiplicative updates (method notes
§2.2), which follow the gradient projected onto the unit sphere instead of renormalising
after a plain update. Everything is torch, so the dictionary is learned on the GPU when
the run has one; the loop keeps four large matrix products per iteration (as
scikit-learn's MU solver does) and uses the Gram-matrix form for beta = 2.

Our choices where the paper and code are silent (recorded here, not guessed from them):
beta = 1 (KL), mu = 0.8, 200 iterations at most with a relative-decrease tolerance of
1e-4, frames averaged in chunks of five (on by default: the appendix does it and it
divides memory by five), zeros of ``V`` replaced by its smallest positive value for
beta != 2 (as ``sparse_nmf.m`` does), floor 1e-9.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from l2i_bench.cache import discard, entry_lock, load_torch, save_torch
from l2i_bench.errors import BenchError
from l2i_bench.types import BatchSource

FLOOR = 1e-9
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
        if not torch.isfinite(V).all() or (V < 0).any():
            raise BenchError(
                "NMF input must be finite and non-negative",
                "feed log(1 + |X|) frames, not log-mel dB",
            )
        if self.beta != 2:
            # the smallest positive entry, without gathering the positives (a boolean
            # index copies them and, on CUDA, waits for the count)
            smallest = torch.where(V > 0, V, torch.inf).min()
            if not torch.isfinite(smallest):
                raise BenchError("NMF input is all zeros (silent training audio?)")
            V = torch.where(V > 0, V, smallest)
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
        scale = V.mean() / (W @ H).mean().clamp_min(FLOOR)  # start at the data's scale
        return H * scale

    def _objective(
        self,
        V: torch.Tensor,
        W: torch.Tensor,
        H: torch.Tensor,
        lam: torch.Tensor | None,
        sum_v_log_v: float | None,
        wtv: torch.Tensor | None,
        sum_v2: float | None,
    ) -> float:
        """Objective from what the iteration already computed (no extra F x N product)."""
        if self.beta == 1:
            assert lam is not None and sum_v_log_v is not None
            # sum(V log V) and sum(V) are constants of the data: one log per entry of Λ.
            v_log_lam = float(torch.log(lam).mul_(V).sum())
            data = sum_v_log_v - v_log_lam - self._sum_v + float(lam.sum())
        else:
            assert wtv is not None and sum_v2 is not None
            # 0.5 ||V - W H||^2 via the Gram form: no F x N residual materialised.
            gram_h = (W.T @ W) @ H
            data = 0.5 * (sum_v2 - 2.0 * float((H * wtv).sum()) + float((H * gram_h).sum()))
        return data + self.mu * float(H.sum())

    # --------------------------------------------------------------------- core

    def _run(
        self, V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, n_fixed: int, update_W: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alternate H and W updates; columns ``< n_fixed`` of ``W`` never change."""
        mu, beta = self.mu, self.beta
        self.objective_history_ = []
        self._sum_v = float(V.sum())
        sum_v_log_v = float((V * torch.log(V)).sum()) if beta == 1 else None
        sum_v2 = float((V * V).sum()) if beta == 2 else None
        previous = None
        lam = None
        if beta == 1:  # one F x N buffer, reused for Λ and V/Λ: no large allocation per step
            lam = torch.matmul(W, H).clamp_min_(FLOOR)
        wtv = W.T @ V if beta == 2 else None  # carried across iterations: 2 big products/it
        bar = tqdm(
            range(self.max_iter), desc="sparse NMF", unit="it", disable=not self.show_progress
        )
        for it in bar:
            if beta == 1:
                assert lam is not None
                # H update: H <- H * W̄ᵀ(V/Λ) / (colsum(W̄) + mu)
                ratio = torch.div(V, lam, out=lam)
                H = H * (W.T @ ratio) / (W.sum(0).unsqueeze(1) + mu).clamp_min(FLOOR)
                if update_W:
                    torch.matmul(W, H, out=lam).clamp_min_(FLOOR)
                    ratio = torch.div(V, lam, out=lam)
                    A = ratio @ H.T  # (F, K) negative part of the gradient
                    s = H.sum(1)  # (K,) positive part (the same in every row)
                    num = A + W * (s * W.sum(0))
                    den = s + W * (A * W).sum(0)
                    W = self._renormalise(W, num, den, n_fixed)
                torch.matmul(W, H, out=lam).clamp_min_(FLOOR)
            else:
                assert wtv is not None
                H = H * wtv / ((W.T @ W) @ H + mu).clamp_min(FLOOR)
                if update_W:
                    vht = V @ H.T
                    lht = W @ (H @ H.T)  # Λ Hᵀ without forming Λ
                    num = vht + W * (lht * W).sum(0)
                    den = lht + W * (vht * W).sum(0)
                    W = self._renormalise(W, num, den, n_fixed)
                    wtv = W.T @ V
            last = it == self.max_iter - 1
            if (it + 1) % self.eval_every == 0 or last:
                value = self._objective(V, W, H, lam, sum_v_log_v, wtv, sum_v2)
                self.objective_history_.append(value)
                bar.set_postfix(objective=f"{value:.4g}")
                converged = previous is not None and self.tol > 0
                if converged and (previous - value) <= self.tol * abs(previous):
                    self.n_iter_ = it + 1
                    break
                previous = value
            self.n_iter_ = it + 1
        bar.close()
        return W, H

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
