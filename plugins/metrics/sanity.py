"""Model-randomisation sanity check: does the explanation depend on the classifier?

Method (Adebayo et al. 2018, "Sanity checks for saliency maps", NeurIPS, §3 cascading
randomisation): re-initialise the trained classifier's parameters from the top layer
down (:mod:`l2i_bench.randomise`), explain the same (clip, class) rows again, and
compare each row's mask with the mask on the trained classifier by

* the **Spearman** rank correlation of the flattened ``(F, T)`` masks (ties get their
  average rank; a constant mask has no ranking, and its row is NaN and left out), and
* the **SSIM** of the masks as images (Wang et al. 2004, "Image quality assessment:
  from error visibility to structural similarity"): Gaussian 11x11 window, sigma 1.5,
  data range 1 (masks lie in ``[0, 1]``), ``C1 = 0.01^2``, ``C2 = 0.03^2``, no
  sample-covariance correction, mean over the windows that fit inside the mask (no
  padding), which is what ``skimage.metrics.structural_similarity(...,
  gaussian_weights=True, use_sample_covariance=False, data_range=1)`` computes.

Lower is better: an explanation of a trained classifier must change when the
classifier's knowledge is destroyed. Masks are in ``[0, 1]``, so no absolute value is
taken (Adebayo et al. rank ``|saliency|`` of signed gradient maps); the comparison is in
the mask's own domain (both masks come from the same explainer).

Explainers that fit to the classifier (L2I's and FLINT's interpreters, VIBI, ...) are
refitted on each randomised classifier with the same options, budget and seed by the
runner's ``Evaluation.refit_explainer(classifier, tag)``; the explained class is the
one explained on the trained classifier.

What is ours:

* **One level by default**, ``head``, of the two this module defines, because every
  level costs a refit of a learned explainer with its full budget (two levels triple
  the fitting time of L2I, FLINT and VIBI on every fold, over the suite's budget of
  +50 % for the checks); ``head`` is the stricter test (an explanation that follows the
  decision also changes when every layer is randomised).
  A subclass with ``levels = LEVELS`` computes both: ``head`` (only L2I's classification head randomised; the
  backbone's B4-B6 features, which the interpreters read, keep their trained values):
  does the explanation depend on the *decision*, or only on features any network
  computes?; and ``full`` (every layer randomised): does it depend on the *model* at
  all, or only on the input (an edge or energy detector passes the first and fails
  this one, as in Adebayo et al.'s Figure 2)? Intermediate levels interpolate
  between the two and are left to :func:`l2i_bench.randomise.cascade_levels` users.
* **Rows**: the first :data:`SANITY_ROWS` explained rows of the test set only.
* **BatchNorm**: re-initialised BN layers re-estimate their running statistics under the
  random weights on up to :data:`CALIBRATION_CLIPS` test clips spread over the test set
  (only the BN statistics of the randomised layers: no label is read); without it a
  fully randomised network answers the same logits for every clip and the check would
  pass vacuously (see :mod:`l2i_bench.randomise`).
* Seeds: the randomised weights are drawn from the evaluation's seed per level.
* Cells without ``refit_explainer`` (unit tests without a runner; explainers or
  datasets where a refit is not possible) or with a classifier that declares no
  randomisation ``levels`` get NaN in every column.

Cost per cell: for each level, a copy of the classifier, one forward pass
over <= 64 calibration clips, one refit of the explainer (the dominant term: for a
learned explainer about its original fit time, cached by the runner under ``tag``;
nothing for explainers with nothing to fit) and the explanation of 16 rows; the
scores themselves are a sort and two separable 11-tap convolutions per row.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from l2i_bench.randomise import cascade_levels, randomised_copy
from l2i_bench.types import Column, Direction, Evaluation, Metric, RowValues

from . import _common

SANITY_ROWS = 16
"""Explained test rows re-explained per randomisation level (one explain batch)."""
CALIBRATION_CLIPS = 64
"""Test clips, spread over the test set, for the randomised BN layers' statistics."""
LEVELS: tuple[tuple[str, str], ...] = (("head", "top"), ("full", "bottom"))
"""(column suffix, level randomised through): the classifier's top level (its head)
only, and its bottom level (every layer); the levels are the classifier plugin's own
(:attr:`l2i_bench.types.Classifier.levels`)."""
DEFAULT_LEVELS: tuple[tuple[str, str], ...] = LEVELS[:1]
"""What a run computes: the ``head`` level only (see the module docstring: cost)."""
EXPLAIN_BATCH = 16

SSIM_K1, SSIM_K2 = 0.01, 0.03
GAUSSIAN_SIGMA, GAUSSIAN_RADIUS = 1.5, 5  # an 11x11 window (skimage: truncate 3.5)
UNIFORM_SIZE = 7

_LEVEL_TEXT = {
    "head": "classification head (head_conv, fc) re-initialised, backbone trained",
    "full": "every layer re-initialised (B1-B6, F1, head)",
}


# ------------------------------------------------------------------------- scores


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks ``1..N`` along the last axis of ``(R, N)`` values, ties given the mean of
    the ranks they span (float64)."""
    x = values.detach().double().cpu()
    rows, n = x.shape
    ordered, order = torch.sort(x, dim=1, stable=True)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = torch.cumsum(starts, dim=1) - 1 + torch.arange(rows)[:, None] * n
    group = group.flatten()
    position = torch.arange(1, n + 1, dtype=torch.float64).repeat(rows)
    total = torch.zeros(rows * n, dtype=torch.float64).index_add_(0, group, position)
    count = torch.zeros(rows * n, dtype=torch.float64).index_add_(
        0, group, torch.ones_like(position)
    )
    ranked = (total[group] / count[group]).view(rows, n)
    return torch.empty_like(ranked).scatter_(1, order, ranked)


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rho between ``a[i]`` and ``b[i]`` flattened, per row ``(R,)``
    (float64). NaN for a row where either side is constant or not finite."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    x, y = a.detach().flatten(1).double().cpu(), b.detach().flatten(1).double().cpu()
    finite = torch.isfinite(x).all(dim=1) & torch.isfinite(y).all(dim=1)
    x, y = torch.nan_to_num(x), torch.nan_to_num(y)
    rx, ry = average_ranks(x), average_ranks(y)
    rx = rx - rx.mean(dim=1, keepdim=True)
    ry = ry - ry.mean(dim=1, keepdim=True)
    den = torch.sqrt((rx * rx).sum(dim=1) * (ry * ry).sum(dim=1))
    rho = (rx * ry).sum(dim=1) / den
    rho = torch.where((den > 0) & finite, rho, torch.full_like(rho, math.nan))
    return rho.clamp(-1.0, 1.0)


def _window(kind: str) -> torch.Tensor:
    """The 1-D factor of the separable SSIM window (sums to 1, float64)."""
    if kind == "gaussian":
        t = torch.arange(-GAUSSIAN_RADIUS, GAUSSIAN_RADIUS + 1, dtype=torch.float64)
        w = torch.exp(-(t**2) / (2 * GAUSSIAN_SIGMA**2))
    elif kind == "uniform":
        w = torch.ones(UNIFORM_SIZE, dtype=torch.float64)
    else:
        raise ValueError(f"unknown SSIM window {kind!r}; expected 'gaussian' or 'uniform'")
    return w / w.sum()


def ssim_rows(
    a: torch.Tensor, b: torch.Tensor, *, window: str = "gaussian", data_range: float = 1.0
) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) of images ``a[i]`` and ``b[i]`` ``(R, H, W)``, per
    row ``(R,)`` (float64), over every window position inside the image.

    ``window``: ``"gaussian"`` (11x11, sigma 1.5, as Wang et al.) or ``"uniform"``
    (7x7). Local statistics are window-weighted means, variances and covariance without
    sample correction; ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = data_range``.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"expected two (R, H, W) images, got {tuple(a.shape)}, {tuple(b.shape)}")
    w = _window(window)
    size = w.numel()
    if a.shape[1] < size or a.shape[2] < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size}, got {tuple(a.shape[1:])}")
    x = a.detach().double().cpu()[:, None]
    y = b.detach().double().cpu()[:, None]

    def local_mean(img: torch.Tensor) -> torch.Tensor:
        img = F.conv2d(img, w.view(1, 1, size, 1))
        return F.conv2d(img, w.view(1, 1, 1, size))

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x * mu_x
    var_y = local_mean(y * y) - mu_y * mu_y
    cov = local_mean(x * y) - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (num / den).flatten(1).mean(dim=1)


# ------------------------------------------------------------------------- metric


def _columns(levels: tuple[tuple[str, str], ...] = DEFAULT_LEVELS) -> tuple[Column, ...]:
    cols = []
    for suffix, _ in levels:
        where = f"{_LEVEL_TEXT[suffix]}; first {SANITY_ROWS} explained test rows"
        cols.append(
            Column(
                f"sanity_spearman_{suffix}",
                Direction.LOWER,
                "rho",
                f"Spearman of trained vs randomised-classifier mask (F x T flattened, ties "
                f"averaged; constant masks left out), mean; {where}",
                meta_evaluated=False,
            )
        )
        cols.append(
            Column(
                f"sanity_ssim_{suffix}",
                Direction.LOWER,
                "SSIM",
                f"SSIM of trained vs randomised-classifier mask (Gaussian 11x11 sigma 1.5, "
                f"data range 1, C1=0.01^2, C2=0.03^2), mean; {where}",
                meta_evaluated=False,
            )
        )
    return tuple(cols)


def calibration_rows(n: int, limit: int = CALIBRATION_CLIPS) -> torch.Tensor:
    """Up to ``limit`` clip indices spread evenly over ``0..n-1`` (both ends included)."""
    if n <= limit:
        return torch.arange(n)
    return torch.linspace(0, n - 1, limit, dtype=torch.float64).round().long().unique()


class SanityCheck(Metric):
    """Adebayo et al.'s model-randomisation test: masks on the trained classifier
    against masks on the classifier randomised through ``levels`` (the head only by
    default; a subclass with ``levels = LEVELS, columns = _columns(LEVELS)`` adds the
    fully randomised one)."""

    name = "sanity"
    description = (
        "Similarity of explanations on the trained and on a randomised classifier "
        "(lower: the explanation depends on the model)"
    )
    reference = "Adebayo et al. 2018, Sanity checks for saliency maps (cascading randomisation)"
    levels: ClassVar[tuple[tuple[str, str], ...]] = DEFAULT_LEVELS
    columns = _columns(DEFAULT_LEVELS)

    def not_applicable(self, evaluation: Evaluation) -> str | None:
        reason = super().not_applicable(evaluation)
        if reason is None and evaluation.refit_explainer is None:
            return "no way to refit the explainer on a randomised classifier in this evaluation"
        if reason is None and not getattr(evaluation.classifier, "levels", ()):
            return "the classifier declares no randomisation levels (Classifier.levels)"
        return reason

    def compute(self, evaluation: Evaluation) -> dict[str, float | RowValues]:
        nan = {c.name: math.nan for c in self.columns}
        ex = evaluation.explanations
        n = min(SANITY_ROWS, len(ex.rows))
        refit = evaluation.refit_explainer
        model = evaluation.classifier
        if refit is None or n == 0 or not getattr(model, "levels", ()):
            return nan
        if len(evaluation.test) < 2:
            return nan  # the randomised BatchNorm layers need two clips to calibrate
        levels = cascade_levels(model)  # levels that do not cover the model fail loudly here
        ends = {"top": levels[0], "bottom": levels[-1]}
        rows = ex.rows[:n].long().cpu()
        classes = ex.classes[:n].long().cpu()
        trained = ex.mask[:n].detach().float().cpu()
        keys = _common.row_keys(evaluation)[:n]
        batch = evaluation.test.select(rows)
        calibration = evaluation.test.logmel[calibration_rows(len(evaluation.test))]
        out: dict[str, float | RowValues] = {}
        for suffix, end in self.levels:
            through = ends.get(end, end)
            randomised = randomised_copy(model, through, evaluation.seed, calibration=calibration)
            explainer = refit(randomised, f"sanity-{suffix}")
            masks = []
            for start in range(0, n, EXPLAIN_BATCH):
                part = batch.select(range(start, min(start + EXPLAIN_BATCH, n)))
                explanation = explainer.explain(
                    part.to(evaluation.device),
                    classes[start : start + EXPLAIN_BATCH].to(evaluation.device),
                )
                masks.append(explanation.mask.detach().float().cpu())
            mask = torch.cat(masks)
            if mask.shape != trained.shape:
                raise ValueError(
                    f"sanity: the refitted explainer's masks have shape {tuple(mask.shape)}, "
                    f"the trained classifier's {tuple(trained.shape)}"
                )
            out[f"sanity_spearman_{suffix}"] = RowValues.of(keys, spearman_rows(trained, mask))
            out[f"sanity_ssim_{suffix}"] = RowValues.of(keys, ssim_rows(trained, mask))
            del randomised, explainer
        return out
