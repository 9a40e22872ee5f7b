"""The listening report: a results folder as a static web site to read and to hear.

``l2i-bench report results/<dataset>`` (and every ``run`` unless ``--no-report``) writes
``results/<dataset>/report/``: ``index.html`` (provenance, the classifier explained,
the headline leaderboard, figures), ``full.html`` (every column, sortable),
``gallery.html`` (interpretations side by side, with spectrograms) and one page per
explainer (description, the settings its cells were made with, cost, the method's
reference). Everything is relative links to files in that folder, no CDN and no
script fetched at run time, so it opens from ``file://`` as from any static server.

The pages are rendered by jinja2 from ``templates/``; the numbers come from the
published CSVs only, parsed once in :mod:`l2i_bench.report.board`; figures in
:mod:`l2i_bench.report.figures`; audio and spectrograms in
:mod:`l2i_bench.report.gallery`; run facts in :mod:`l2i_bench.report.provenance`.

Cost: dominated by the gallery (about 30 ms per audio file) and the figures (a few
tenths of a second each); ``benchmarks/bench_report.py`` measures it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from l2i_bench.classifier import DEFAULT_CLASSIFIER
from l2i_bench.errors import BenchError
from l2i_bench.options import cost_per_clip
from l2i_bench.report import figures, gallery
from l2i_bench.report.board import Board, format_number, read_board, terminal_table
from l2i_bench.report.provenance import classifier_quality, read_runs
from l2i_bench.results import read_cells

__all__ = ["build_report", "read_board", "terminal_table"]

HERE = Path(__file__).parent


def build_report(
    results: Path,
    *,
    registry: Any = None,
    clips_per_fold: int = 2,
    max_audio_seconds: float = 400.0,
    out: Path | None = None,
) -> Path:
    """Write the report of the results folder ``results`` (``results/<dataset>``) to
    ``out`` (default ``results/report``) and return its ``index.html``. ``registry``
    (optional) supplies each explainer's module docstring and cost in passes; without
    it the pages use what the manifests recorded. The gallery takes ``clips_per_fold``
    test clips (and the mixtures) per fold, whole folds in order while its interpretations hold at
    most ``max_audio_seconds`` of audio (:func:`gallery.within_budget`)."""
    results = Path(results)
    board_path = results / "leaderboard.csv"
    if not board_path.is_file():
        raise BenchError(
            f"{board_path} not found: {results} is not a published results folder",
            f"run `l2i-bench publish --dataset {results.name} --out {results.parent}` "
            "or point at a folder with leaderboard.csv",
        )
    final = Path(out) if out is not None else results / "report"
    # Built beside the old one and swapped in at the end: an interrupted build leaves
    # the previous report whole, and a rebuild keeps no media of clips no longer listed.
    report = final.with_name(f".{final.name}.building-{os.getpid()}")
    shutil.rmtree(report, ignore_errors=True)
    (report / "figures").mkdir(parents=True)
    (report / "explainers").mkdir()
    shutil.copytree(HERE / "assets", report / "assets")

    board = read_board(board_path)
    runs = read_runs(results)
    quality = classifier_quality(results)
    cells = read_cells(results.parent, results.name)
    headline = board.headline()

    figure_paths = _figures(board, headline, report)
    clips = gallery.collect(results / "listen", board.explainers, clips_per_fold)
    clips, omitted = gallery.within_budget(clips, max_audio_seconds)
    if clips:
        gallery.render(clips, report)
    else:
        # listen/ is not in git: on a fresh clone the published report's own media and
        # gallery.json are the listening material, so a rebuild carries them over.
        clips, omitted = gallery.carry_over(final, report)
    gallery.save(clips, report, omitted)

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    classifier_name = next(
        (str(r.classifier["name"]) for r in reversed(runs) if r.classifier.get("name")),
        DEFAULT_CLASSIFIER,
    )
    common = {
        "dataset": _dataset_name(results, cells),
        "classifier_name": classifier_name,
        "runs": runs,
        "seeds": sorted({s for r in runs for s in r.seeds}),
        "board": board,
    }
    pages = {
        "index.html": (
            "index.html.j2",
            {
                "headline": headline,
                "quality": _quality_rows(quality),
                "figures": figure_paths,
                "failing": [c for c in board.columns if c.fails_validity],
                "root": "",
            },
        ),
        "full.html": ("full.html.j2", {"columns": board.columns, "root": ""}),
        "gallery.html": ("gallery.html.j2", {"clips": clips, "omitted": omitted, "root": ""}),
    }
    for name, (template, context) in pages.items():
        (report / name).write_text(env.get_template(template).render(**common, **context))
    for name in board.explainers:
        page = _explainer_page(name, board, runs, cells, registry)
        (report / "explainers" / f"{name}.html").write_text(
            env.get_template("explainer.html.j2").render(**common, **page, root="../")
        )
    if final.exists():
        shutil.rmtree(final)
    report.rename(final)
    return final / "index.html"


def _dataset_name(results: Path, cells: list) -> str:
    """The dataset the cells were computed on (the folder may have been copied or renamed)."""
    return str(cells[0].dataset) if cells else results.name


def _figures(board: Board, headline: list, report: Path) -> list[dict[str, str]]:
    made = []
    for column in headline:
        path = figures.bar_chart(board, column, report / "figures" / f"{column.name}.png")
        made.append({"path": path.relative_to(report).as_posix(), "caption": column.label})
    ff = board.column("ff_prob_drop_minus_random")
    where = board.column("gt_auroc_overlap")
    cost = board.column("explain_ms_median")
    if ff is not None and where is not None:
        path = figures.scatter(board, where, ff, report / "figures" / "ff-vs-localisation.png")
        made.append(
            {"path": path.relative_to(report).as_posix(), "caption": "faithfulness vs localisation"}
        )
    if ff is not None and cost is not None:
        path = figures.scatter(board, cost, ff, report / "figures" / "ff-vs-cost.png", log_x=True)
        made.append(
            {
                "path": path.relative_to(report).as_posix(),
                "caption": "faithfulness vs cost per clip",
            }
        )
    return made


def _quality_rows(quality: pd.DataFrame) -> list[dict[str, str]]:
    rows = []
    for record in quality.to_dict("records"):
        rows.append(
            {k: (format_number(v) if isinstance(v, float) else str(v)) for k, v in record.items()}
        )
    return rows


def _explainer_page(name: str, board: Board, runs: list, cells: list, registry: Any) -> dict:
    own_cells = [c for c in cells if c.explainer == name]
    plugin = next((r.plugins[name] for r in reversed(runs) if name in r.plugins), {})
    options: dict[str, str] = {}
    for run in runs:
        options.update(run.options.get(name, {}))
    doc, passes = "", ""
    if registry is not None:
        try:
            cls = registry.explainer(name)
            doc = (sys.modules[cls.__module__].__doc__ or "").strip()
            dataset = cells[0].dataset if cells else None
            dataset_cls = (
                registry.dataset(dataset) if dataset in registry.names("dataset") else None
            )
            passes = cost_per_clip(cls, dataset_cls) if cls.passes else ""
        except Exception:
            doc = ""
    fits = [c.fit for c in own_cells if c.fit]
    return {
        "name": name,
        "description": plugin.get("description", ""),
        "plugin": plugin,
        "doc": doc,
        "passes": passes,
        "options": options,
        "fit": {
            k: v for k, v in (fits[0] if fits else {}).items() if not isinstance(v, (list, dict))
        },
        "cells": own_cells,
        "values": [(c, board.value(name, c)) for c in board.columns],
        "reference": board.is_reference(name),
    }
