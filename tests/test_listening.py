"""Which clips a cell writes as audio, and where (l2i_bench.listening)."""

from __future__ import annotations

from pathlib import Path

import torch

from l2i_bench.listening import INPUTS, spread_over_classes, write_listening_examples
from l2i_bench.report.gallery import collect
from l2i_bench.types import AudioBatch, Clip, ConditionSet, ExplanationSet


def test_picks_spread_over_the_classes_not_the_first_clips():
    # Split order as on synth: eight clips of class 0 first, then the other classes.
    labels = [(0,)] * 8 + [(1,), (1,), (2,), (3,), (3,), (4,)]
    assert spread_over_classes(labels, 2) == [0, 13]  # classes 0 and 4, the ends
    assert spread_over_classes(labels, 3) == [0, 10, 13]  # classes 0, 2, 4
    assert spread_over_classes(labels, 5) == [0, 8, 10, 11, 13]  # one of each
    # More picks than classes: one per class, then the next clips in order.
    assert spread_over_classes(labels, 7) == [0, 1, 2, 8, 10, 11, 13]
    assert spread_over_classes(labels, 0) == []


def test_multilabel_clips_count_by_first_label_and_unlabelled_as_one_class():
    labels = [(), (2, 5), (), (0,), (5,)]
    assert spread_over_classes(labels, 4) == [0, 1, 3, 4]  # classes -1 (none), 0, 2, 5


def _explanations(rows, classes, length=64) -> ExplanationSet:
    n = len(rows)
    return ExplanationSet(
        rows=torch.tensor(rows),
        classes=torch.tensor(classes),
        mask=torch.zeros(n, 3, 2),
        relevance=None,
        waveform=torch.full((n, length), 0.25) * torch.arange(1, n + 1)[:, None],
    )


def test_every_explainer_writes_the_same_clips_and_the_inputs_once(tmp_path: Path):
    clips = [Clip(f"c{i}", Path(f"c{i}.wav"), (lab,)) for i, lab in enumerate([0, 0, 0, 1, 2])]
    names = ["tone", "chirp", "a/b"]
    explained = _explanations([0, 1, 2, 3, 4], [0, 0, 0, 1, 2])
    mixture = AudioBatch(
        clip_ids=["m0-overlap", "m1-overlap"],
        waveform=torch.ones(2, 64),
        spec=torch.zeros(2, 3, 2, dtype=torch.complex64),
        logmel=torch.zeros(2, 1, 2, 4),
        targets=torch.zeros(2, 3),
    )
    condition = ConditionSet(
        name="overlap",
        batch=mixture,
        stems={"target": torch.full((2, 64), 0.5)},
        explanations=_explanations([0, 1], [0, 1]),
        classifier_logits=torch.zeros(2, 3),
    )
    for explainer in ("l2i", "random"):
        written = write_listening_examples(
            tmp_path,
            explainer,
            clips,
            names,
            explained,
            lambda i: torch.full((64,), float(i)),
            2,
            {"overlap": condition},
        )
        # Classes 0 and 2 (the ends of the class list); the mixture of the class not yet
        # heard (class 1, the second mixture), not the first mixture's class 0 again.
        assert [p.name for p in written] == ["c0--tone.wav", "c4--a-b.wav", "m1-overlap--chirp.wav"]
    inputs = sorted(p.name for p in (tmp_path / INPUTS).iterdir())
    assert inputs == [
        "c0--original.wav",
        "c4--original.wav",
        "m1-overlap--original.wav",
        "m1-overlap--target.wav",
    ]
    assert sorted(p.name for p in (tmp_path / "l2i").iterdir()) == sorted(
        p.name for p in (tmp_path / "random").iterdir()
    )
    # The report's gallery reads this layout: one clip per input, both explainers on it.
    gallery = collect(tmp_path.parent, ["l2i", "random"], clips_per_fold=5)
    assert gallery == []  # tmp_path is not named fold-*: nothing is taken from it
    fold = tmp_path.parent / "fold-1"
    tmp_path.rename(fold)
    gallery = collect(tmp_path.parent, ["l2i", "random"], clips_per_fold=5)
    assert [(c.clip_id, [i.explainer for i in c.interpretations]) for c in gallery] == [
        ("c0", ["l2i", "random"]),
        ("c4", ["l2i", "random"]),
        ("m1-overlap", ["l2i", "random"]),
    ]
    assert gallery[2].target == fold / INPUTS / "m1-overlap--target.wav"
