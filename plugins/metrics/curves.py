"""Deletion and insertion curves (Petsiuk et al. 2018, RISE), on the STFT grid.

Each row's time-frequency bins are ranked by mask value (ties broken by a seeded
random order). Deletion removes the top 0 %, 10 %, ..., 100 % of bins from the clip
(binary mask set to 0 there); insertion keeps only them. Each step's input is
resynthesised with the input phase and the explained class's probability is read; the
area under that curve over the removed/kept fraction in [0, 1] (trapezoid, 11 points)
is averaged over rows. Endpoints need no resynthesis: deletion starts at the clip's
own probability and ends on silence, insertion the reverse.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from l2i_bench import scores
from l2i_bench.types import Column, Direction, Evaluation, Metric

from . import _common

STEPS = 10


def step_masks(ranks: torch.Tensor, shape: torch.Size, step: int, insert: bool) -> torch.Tensor:
    """Binary masks ``shape`` keeping (``insert``) or removing the top ``step/STEPS``
    share of bins by rank."""
    top = ranks < round(step / STEPS * ranks.shape[1])
    keep = top if insert else ~top
    return keep.float().view(shape)


def explained_curves(evaluation: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion probability curves ``(R, STEPS + 1)`` of every row."""
    ex = evaluation.explanations
    rows_total = len(ex.rows)
    p_full = _common.explained(
        _common.probabilities(evaluation, _common.original_logits(evaluation)), ex.classes
    )
    p_silent = _common.probabilities(evaluation, _common.silence_logits(evaluation))[0]
    p_silent = p_silent[ex.classes.long().cpu()]
    deletion = np.zeros((rows_total, STEPS + 1))
    insertion = np.zeros((rows_total, STEPS + 1))
    deletion[:, 0], deletion[:, STEPS] = p_full.numpy(), p_silent.numpy()
    insertion[:, 0], insertion[:, STEPS] = p_silent.numpy(), p_full.numpy()
    gen = evaluation.generator("deletion_insertion")
    chunk = _common.CHUNK
    starts = range(0, rows_total, chunk)
    for start in tqdm(starts, desc="deletion/insertion", disable=rows_total <= chunk, leave=False):
        mask = ex.mask[start : start + chunk]
        rows = ex.rows[start : start + chunk]
        classes = ex.classes[start : start + chunk]
        ranks = scores.relevance_ranks(mask, gen)
        for step in range(1, STEPS):
            for insert, curve in ((False, deletion), (True, insertion)):
                masks = step_masks(ranks, mask.shape, step, insert)
                logits = _common.masked_logits(evaluation, masks, rows)
                probs = _common.probabilities(evaluation, logits)
                curve[start : start + chunk, step] = _common.explained(probs, classes).numpy()
    return deletion, insertion


class DeletionInsertion(Metric):
    name = "deletion_insertion"
    description = "Area under the explained-class probability as top-ranked bins are removed/added"
    reference = "Petsiuk et al. 2018 (RISE) deletion/insertion, on STFT bins ranked by mask"
    _how = "11 steps of 10% of STFT bins ranked by mask value, resynthesised; trapezoid, mean"
    columns = (
        Column(
            "deletion_auc",
            Direction.LOWER,
            "probability x fraction",
            f"deletion: remove top-ranked bins; {_how}",
        ),
        Column(
            "insertion_auc",
            Direction.HIGHER,
            "probability x fraction",
            f"insertion: keep only top-ranked bins; {_how}",
        ),
    )

    def compute(self, evaluation: Evaluation) -> dict[str, float]:
        deletion, insertion = explained_curves(evaluation)
        return {
            "deletion_auc": float(scores.curve_area(deletion).mean()),
            "insertion_auc": float(scores.curve_area(insertion).mean()),
        }
