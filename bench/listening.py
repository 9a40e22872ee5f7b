"""Listening examples: a few interpretations per cell written as audio, to judge by ear.

Method: per fold, ``count`` test clips of as many different classes (the classes spread
evenly over the class list, the first clip of each in split order), and one mixture per
condition set (synth's overlap and noise) whose target class is not already heard among
the test clips. Every explainer of the fold writes the same clips, so the listening
report (:mod:`l2i_bench.report`) can lay them side by side; the inputs (the original,
and a mixture's target stem, the sound a true explanation would keep) are written once
per clip under ``listen/fold-K/_inputs/``, the interpretations under
``listen/fold-K/<explainer>/<clip>--<explained class>.wav``.

What is ours: the choice of clips (the first clips of a split are often one class, as
on synth, where they were all ``steady_tone``). Cost: a few WAV writes per cell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from l2i_bench.audio import write_audio
from l2i_bench.types import Clip, ConditionSet, ExplanationSet

INPUTS = "_inputs"


def spread_over_classes(labels: Sequence[Sequence[int]], count: int) -> list[int]:
    """Indices of up to ``count`` clips whose first labels are ``count`` different
    classes spread evenly over the classes present, the first clip of each class; with
    fewer classes than ``count``, the remaining picks are the next clips in order.
    Clips without a label (multilabel "nothing present") count as one class."""
    if count <= 0 or not labels:
        return []
    first_of: dict[int, int] = {}
    for index, clip_labels in enumerate(labels):
        first_of.setdefault(min(clip_labels) if len(clip_labels) else -1, index)
    classes = sorted(first_of)
    if count >= len(classes):
        chosen = [first_of[c] for c in classes]
    else:
        positions = np.linspace(0, len(classes) - 1, count).round().astype(int)
        chosen = [first_of[classes[p]] for p in dict.fromkeys(positions.tolist())]
    rest = [i for i in range(len(labels)) if i not in set(chosen)]
    return sorted(chosen + rest[: max(0, count - len(chosen))])


def listening_picks(
    clips: Sequence[Clip],
    explained_rows: Sequence[int],
    count: int,
    condition_targets: Mapping[str, Sequence[int]],
) -> tuple[list[int], dict[str, int]]:
    """What a cell's listening examples hold: the test clips (indices among ``clips``
    that have an explained row) and, per condition set in order, the index of the one
    mixture heard (the first whose target class is not heard yet). One rule for a scored
    cell (:func:`write_listening_examples`) and for ``run --listen-only``
    (:mod:`l2i_bench.relisten`), so both write the same clips."""
    explained = set(explained_rows)
    picks = [i for i in spread_over_classes([c.labels for c in clips], count) if i in explained]
    heard = {label for i in picks for label in clips[i].labels}
    mixtures: dict[str, int] = {}
    for name, targets in condition_targets.items():
        if not len(targets):
            continue
        fresh = [i for i, c in enumerate(targets) if c not in heard]
        mixtures[name] = fresh[0] if fresh else 0
        heard.add(int(targets[mixtures[name]]))
    return picks, mixtures


def _label(class_names: Sequence[str], index: int) -> str:
    return class_names[index].replace("/", "-")


def write_listening_examples(
    root: Path,
    explainer: str,
    clips: Sequence[Clip],
    class_names: Sequence[str],
    explained: ExplanationSet,
    test_waveform: Callable[[int], np.ndarray],
    count: int,
    conditions: dict[str, ConditionSet] | None = None,
) -> list[Path]:
    """Write the fold's listening examples for one explainer under ``root``
    (``listen/fold-K``); ``test_waveform(i)`` gives test clip ``i`` as the classifier
    heard it. Returns the interpretation files written."""
    written: list[Path] = []
    rows = explained.rows.tolist()
    condition_targets = {
        name: condition.explanations.classes.tolist()
        for name, condition in (conditions or {}).items()
        if "target" in condition.stems
    }
    picks, mixtures = listening_picks(clips, rows, count, condition_targets)
    for clip_index in picks:
        row = rows.index(clip_index)  # a multilabel clip: its first explained class
        clip = clips[clip_index]
        label = _label(class_names, int(explained.classes[row]))
        path = root / explainer / f"{clip.clip_id}--{label}.wav"
        write_audio(path, explained.waveform[row])
        written.append(path)
        write_audio(root / INPUTS / f"{clip.clip_id}--original.wav", test_waveform(clip_index))
    for name, pick in mixtures.items():
        condition = (conditions or {})[name]
        cond = condition.explanations
        batch_row = int(cond.rows[pick])
        clip_id = condition.batch.clip_ids[batch_row]
        label = _label(class_names, int(cond.classes[pick]))
        path = root / explainer / f"{clip_id}--{label}.wav"
        write_audio(path, cond.waveform[pick])
        written.append(path)
        write_audio(root / INPUTS / f"{clip_id}--original.wav", condition.batch.waveform[batch_row])
        write_audio(root / INPUTS / f"{clip_id}--target.wav", condition.stems["target"][batch_row])
    return written
