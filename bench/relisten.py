"""Listening examples of a grid without scoring it: ``l2i-bench run --listen-only``.

Why: ``listen/`` is not published in git, and a run writes listening examples only for
the cells it computes. A board assembled from cells computed at different times, or a
fresh clone extended by one explainer, hears only the newest cells in its report's
gallery, and recomputing a cell to hear two of its clips costs the whole cell (SLIME on
ESC-50: an hour at one thread, for two five-second clips).

Method (ours): per fold, on the first seed (the one a scored run writes examples for),
each explainer is fitted or loaded from the cache exactly as its cell would be, on the
same classifier (refused when the folder's cells explain another classifier or were
made under another configuration), and explains only the clips
:func:`l2i_bench.listening.listening_picks` chooses (the rule a scored cell uses) and,
per condition set, the one mixture heard;
:func:`l2i_bench.listening.write_listening_examples` writes them where a cell would.
Explainers that need ground-truth stems are skipped on a dataset without them, as a
scored run skips their cells. No cell, manifest or CSV is written.

What differs from a scored cell: the clips are explained in a batch of their own, so an
explainer that draws random numbers (random, SmoothGrad, GradientSHAP, SLIME, VIBI's
sampling, ...) draws other numbers than the cell beside it did, and a batch of other
make-up rounds convolutions differently (about 1e-8); a deterministic explainer gives
the cell's audio. Cost: one fit (or cache load) per explainer and fold, then the picked
clips' explanations.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from l2i_bench.errors import BenchError
from l2i_bench.grid import GridPlan, cell_config_key, fold_facts
from l2i_bench.listening import listening_picks, write_listening_examples
from l2i_bench.registry import Registry
from l2i_bench.results import PUBLISHED_CLASSIFIERS, CellResult, read_cells
from l2i_bench.runner import RunConfig, explain_condition, explain_set, prepared_grid
from l2i_bench.types import Explainer
from l2i_bench.workspace import FoldWorkspace, seed_everything


def write_listening_only(config: RunConfig, registry: Registry) -> list[Path]:
    """Write the listening examples of every (fold, explainer) of ``config``'s grid under
    ``<out>/<folder>/listen``; returns the interpretation files written."""
    listen_root = Path(config.out) / config.folder / "listen"
    written: list[Path] = []
    with prepared_grid(config, registry, keep_cells=False) as plan:
        first_seed = replace(config, seed=config.grid_seeds[0])
        cells = read_cells(config.out, config.folder)
        for fold in plan.folds:
            ws = FoldWorkspace(plan.dataset, fold, first_seed, plan.device, plan.architecture)
            _refuse_cells_made_otherwise(ws, plan, cells)
            for cls in plan.explainers:
                if cls.needs_stems and not ws.has_stems:
                    continue  # not applicable here, as in a scored run (no cell either)
                if config.show_progress:
                    tqdm.write(f"listening: fold {fold} {cls.name}")
                written += listen_to_cell(ws, cls, listen_root / f"fold-{fold}")
    return written


def _refuse_cells_made_otherwise(
    ws: FoldWorkspace, plan: GridPlan, cells: list[CellResult]
) -> None:
    """The cells beside which examples are written must be the ones this configuration
    would compute (the key a scored run resumes by, which holds the classifier's sha256):
    another classifier (a retrain on other arithmetic, no published checkpoint) would
    be another model's explanations, another ``--limit`` draws other test clips, other
    options or an explainer's new version explain differently. The classifier is named
    apart, since its fix differs (and is checked first)."""
    stored = {
        cell.explainer: cell
        for cell in cells
        if cell.fold == ws.fold and int(cell.seed) == ws.config.seed
    }
    listened = [cls for cls in plan.explainers if cls.name in stored]
    where = Path(ws.config.out) / ws.config.folder
    sha = ws.classifier.checkpoint_sha256
    other_classifier = [
        stored[cls.name] for cls in listened if stored[cls.name].classifier_sha256 != sha
    ]
    if other_classifier:
        names = ", ".join(sorted(c.explainer for c in other_classifier))
        raise BenchError(
            f"fold {ws.fold} seed {ws.config.seed}: the classifier here (sha256 {sha[:10]}) "
            f"is not the one the cells of {names} explain "
            f"({other_classifier[0].classifier_sha256[:10]}), so their listening examples "
            "cannot be written from it",
            f"put that classifier's published checkpoint in {where / PUBLISHED_CLASSIFIERS} "
            "(or the cache), or leave those explainers out",
        )
    facts = fold_facts(ws, plan.explainers)
    made_otherwise = [
        stored[cls.name]
        for cls in listened
        if stored[cls.name].config_key
        != cell_config_key(ws.config, plan.dataset, facts, cls, plan.metrics)
    ]
    if made_otherwise:
        names = ", ".join(c.explainer for c in made_otherwise)
        raise BenchError(
            f"fold {ws.fold} seed {ws.config.seed}: the cells of {names} in {where} were "
            "made under another configuration (--limit, --option, explainer or metric "
            "versions, data), so examples written now would not be theirs",
            "give --listen-only the flags of the run that made them (their settings are "
            "in the cell files and runs/ manifests), or leave those explainers out",
        )


def listen_to_cell(ws: FoldWorkspace, cls: type[Explainer], root: Path) -> list[Path]:
    """One cell's listening examples under ``root`` (``listen/fold-K``), explaining only
    the clips they hold."""
    config = ws.config
    explainer, _, _ = ws.fitted_explainer(cls)
    seed_everything(explainer.context.seed)
    rows, classes = ws.explained_rows(ws.test_logits)
    targets = {
        name: [clip.labels[0] for clip in clips.clips]
        for name, clips in ws.conditions.items()
        if "target" in ws.condition_stems[name]
    }
    explained_rows = rows.tolist()
    picks, mixtures = listening_picks(ws.test.clips, explained_rows, config.listen, targets)
    keep = [explained_rows.index(pick) for pick in picks]  # a clip's first explained class
    explained, _ = explain_set(
        explainer,
        ws.test,
        rows[keep],
        classes[keep],
        batch_size=config.batch_size,
        device=ws.device,
        desc=cls.name,
        show_progress=False,
    )
    conditions = {
        name: explain_condition(
            ws, explainer, name, torch.tensor([pick]), torch.tensor([targets[name][pick]]), False
        )
        for name, pick in mixtures.items()
    }
    return write_listening_examples(
        root,
        cls.name,
        ws.test.clips,
        ws.dataset.class_names,
        explained,
        ws.test.waveform,
        config.listen,
        conditions,
    )
