"""Result files: one atomic JSON per cell, then the published CSVs derived from them.

A cell (dataset x fold x seed x explainer) is the unit of work and of resumption: it
is written with write-to-temp + rename, so a killed run leaves either a complete cell
or none, and it keeps the row values behind its numbers. Every published file is
rebuilt from every cell on disk (:func:`publish`), so none mixes a half-finished run
with a finished one, and every aggregate is the mean over cells of values that are the
summary of rows (:func:`l2i_bench.stats.summarise`), with its interval from the same
rows (:func:`l2i_bench.stats.bootstrap_interval`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from l2i_bench.cache import temporary_path
from l2i_bench.errors import BenchError
from l2i_bench.failpoints import failpoint
from l2i_bench.stats import bootstrap_interval, stable_seed
from l2i_bench.types import RowValues

LONG_COLUMNS = [
    "dataset",
    "fold",
    "explainer",
    "explainer_version",
    "metric",
    "column",
    "value",
    "direction",
    "unit",
    "variant",
    "note",
    "n",
    "seed",
    "device",
    "classifier_sha256",
    "run_id",
    "reference",
    "ci_low",
    "ci_high",
]


@dataclass
class Score:
    metric: str
    column: str
    value: float | None
    direction: str
    unit: str = ""
    variant: str = ""
    note: str = ""
    n: int | None = None
    meta_evaluated: bool = True


PUBLISHED_CLASSIFIERS = "classifiers"
"""The folder of a results folder that holds the checkpoints its cells explain
(:func:`l2i_bench.classifier.publish_checkpoint`)."""


@dataclass
class CellResult:
    dataset: str
    fold: str
    explainer: str
    explainer_version: str
    seed: int
    config_key: str
    run_id: str
    device: str
    classifier_sha256: str
    scores: list[Score] = field(default_factory=list)
    fit: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    reference: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    """The run settings every cell of one leaderboard must share (:data:`SHARED_SETTINGS`:
    limit, dataset fingerprint, classifier config, metric versions); empty in cells
    written before l2i-bench recorded them."""
    rows: dict[str, Any] = field(default_factory=dict)
    """Per-row values behind the scores: ``{"keys": [...], "columns": {column:
    {"index": [...], "values": [...], "summary": "mean"|"median"}}}`` (see
    :func:`pack_rows`); every aggregate with rows is their summary."""

    def row_values(self, column: str) -> RowValues | None:
        """The per-row values behind ``column`` (keys prefixed by nothing), if kept."""
        spec = self.rows.get("columns", {}).get(column)
        if spec is None:
            return None
        keys = self.rows["keys"]
        return RowValues(
            tuple(keys[i] for i in spec["index"]), tuple(spec["values"]), spec["summary"]
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellResult:
        scores = [Score(**s) for s in data.pop("scores", [])]
        return cls(scores=scores, **data)


def pack_rows(values: dict[str, RowValues]) -> dict[str, Any]:
    """Store many columns' row values compactly: each row key once, columns by index."""
    keys: dict[str, int] = {}
    columns = {}
    for column, rv in values.items():
        index = [keys.setdefault(k, len(keys)) for k in rv.keys]
        columns[column] = {"index": index, "values": list(rv.values), "summary": rv.summary}
    return {"keys": list(keys), "columns": columns}


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old one or the new one, never a torn one:
    a unique temporary beside it, flushed to disk, then renamed over it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_path(path)
        handle = open(tmp, "wb")  # noqa: SIM115 - closed below, before the rename
    except OSError as err:
        raise BenchError(
            f"cannot write results under {path.parent}: {err}",
            "choose a writable folder with --out",
        ) from err
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON whole or not at all (:func:`write_bytes_atomic`)."""
    text = json.dumps(payload, indent=2, default=_json_default, allow_nan=False)
    write_bytes_atomic(path, text.encode())


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def clean_float(value: float | None) -> float | None:
    """JSON has no NaN: a non-finite value is stored as null (with a note by the caller)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def cell_path(out: Path, dataset: str, fold: str, explainer: str, seed: int = 0) -> Path:
    """``cells/fold-F/seed-S/EXPLAINER.json``: one file per (fold, seed, explainer)."""
    return Path(out) / dataset / "cells" / f"fold-{fold}" / f"seed-{seed}" / f"{explainer}.json"


def legacy_cell_path(out: Path, dataset: str, fold: str, explainer: str) -> Path:
    """Where cells lived before seeds were a grid axis (``cells/fold-F/EXPLAINER.json``);
    still read, and removed when the same (fold, seed, explainer) is rewritten."""
    return Path(out) / dataset / "cells" / f"fold-{fold}" / f"{explainer}.json"


def read_cell(path: Path) -> CellResult | None:
    """A cell file, or None if it is unreadable (treated as not done, recomputed)."""
    try:
        return CellResult.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def read_cells(out: Path, dataset: str) -> list[CellResult]:
    """Every readable cell of a dataset, one per (fold, seed, explainer); a cell in the
    seed folders wins over a legacy one of the same key."""
    root = Path(out) / dataset / "cells"
    found: dict[tuple[str, int, str], CellResult] = {}
    for pattern in ("fold-*/*.json", "fold-*/seed-*/*.json"):  # legacy first, then current
        for path in sorted(root.glob(pattern)):
            cell = read_cell(path)
            if cell is not None:
                found[(cell.fold, int(cell.seed), cell.explainer)] = cell
    return [found[k] for k in sorted(found, key=lambda k: (k[0], k[1], k[2]))]


def long_table(cells: list[CellResult], *, intervals: bool = True) -> pd.DataFrame:
    """One row per cell and column: the cell's value, ``n`` and its 95 % bootstrap
    interval over the cell's rows (empty for columns without rows, and when
    ``intervals`` is False)."""
    rows = []
    for cell in cells:
        for s in cell.scores:
            low, high = _cell_interval(cell, s) if intervals else (None, None)
            rows.append(
                {
                    "dataset": cell.dataset,
                    "fold": cell.fold,
                    "explainer": cell.explainer,
                    "explainer_version": cell.explainer_version,
                    "metric": s.metric,
                    "column": s.column,
                    "value": s.value,
                    "direction": s.direction,
                    "unit": s.unit,
                    "variant": s.variant,
                    "note": s.note,
                    "n": s.n,
                    "seed": cell.seed,
                    "device": cell.device,
                    "classifier_sha256": cell.classifier_sha256,
                    "run_id": cell.run_id,
                    "reference": cell.reference,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def _cell_interval(cell: CellResult, score: Score) -> tuple[float | None, float | None]:
    rv = cell.row_values(score.column)
    if score.value is None or rv is None or not len(rv) or score.direction == "neutral":
        return None, None
    low, high = bootstrap_interval(
        [np.asarray(rv.values)],
        rv.summary,
        seed=stable_seed(cell.seed, cell.fold, cell.explainer, score.column),
    )
    return low, high


def interval_over_cells(cells: list[CellResult], column: str) -> tuple[float, float]:
    """The 95 % interval of a leaderboard mean: rows resampled within each cell (fold x
    seed) that has a value; NaN when one of them kept no rows (a set-level column)."""
    arrays, how = [], "mean"
    for cell in cells:
        score = next((s for s in cell.scores if s.column == column), None)
        if score is None or score.value is None:
            continue
        rv = cell.row_values(column)
        if rv is None or not len(rv):
            return float("nan"), float("nan")
        arrays.append(np.asarray(rv.values))
        how = rv.summary
    if not arrays:
        return float("nan"), float("nan")
    names = sorted({c.explainer for c in cells})
    return bootstrap_interval(arrays, how, seed=stable_seed(*names, column))


ARROWS = {"higher": "↑", "lower": "↓", "neutral": "·"}


FAILS_VALIDITY = "✗"
"""Appended to the header of a column that failed the metric validity check."""

UNITLESS = frozenset(
    {"", "fraction", "probability", "energy share", "AUC", "AP", "AUPRC", "index"}
    | {"probability x step"}
)
"""Units of numbers in [0, 1] that need no label; every other unit (``%``, ``logit``,
``ms``, ``s``, ``MB``, ``nats``, ``rows``) is written in the header, ``lmac_ai ↑ [%]``,
so that a percentage is never read as a fraction beside it."""


def leaderboard(
    cells: list[CellResult],
    failing: set[str] | frozenset[str] = frozenset(),
    ranks: dict[str, dict[str, int]] | None = None,
) -> pd.DataFrame:
    """One row per explainer: per column the mean over cells (folds x seeds) under a
    header carrying the direction (``fidelity_top1 ↑``, with ``✗`` for a column in
    ``failing``), then ``<column>_std`` (over cells), ``<column>_ci_low`` and
    ``<column>_ci_high`` (95 % bootstrap over rows within cells; directed columns with
    rows) and ``<column>_rank`` (tied ranks, :mod:`l2i_bench.significance`). ``folds``,
    ``seeds`` and ``cells`` say what each row averages. Reference rows (oracle,
    anti-oracle, random, loudest) come last. Columns empty for every explainer (e.g.
    multilabel AUPRC on a multiclass dataset) are left out; the long CSV keeps them."""
    long = long_table(cells, intervals=False)
    if long.empty:
        return pd.DataFrame(columns=["explainer", "reference", "folds", "seeds", "cells"])
    ranks = ranks or {}
    columns = list(dict.fromkeys(long["column"]))
    direction = dict(zip(long["column"], long["direction"], strict=False))
    unit = dict(zip(long["column"], long["unit"].fillna(""), strict=False))
    explainers = list(dict.fromkeys(long["explainer"]))
    records = []
    for name in explainers:
        own = long[long["explainer"] == name]
        own_cells = [c for c in cells if c.explainer == name]
        rec: dict[str, object] = {
            "explainer": name,
            "reference": bool(own["reference"].astype(bool).any()),
            "folds": own["fold"].nunique(),
            "seeds": own["seed"].nunique(),
            "cells": len(own_cells),
        }
        for column in columns:
            values = own.loc[own["column"] == column, "value"].astype(float).dropna()
            header = _header(column, direction[column], column in failing, unit[column])
            rec[header] = values.mean() if len(values) else np.nan
            rec[f"{column}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
            if direction[column] != "neutral" and len(values):
                rec[f"{column}_ci_low"], rec[f"{column}_ci_high"] = interval_over_cells(
                    own_cells, column
                )
            rank = ranks.get(column, {}).get(name)
            rec[f"{column}_rank"] = np.nan if rank is None else rank
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    # Columns empty for every explainer say nothing here; the long CSV keeps them.
    table = table.dropna(axis=1, how="all")
    shown = {c.split(" ")[0] for c in table.columns}
    table["notes"] = [row_notes(long, cells, name, shown) for name in table["explainer"]]
    refs = table["reference"].astype(bool)
    return pd.concat([table[~refs], table[refs]], ignore_index=True)


def _header(column: str, direction: str, failing: bool, unit: str = "") -> str:
    header = f"{column} {ARROWS.get(direction, '')}".rstrip()
    if unit not in UNITLESS:
        header += f" [{unit}]"
    return f"{header} {FAILS_VALIDITY}" if failing else header


def row_notes(long: pd.DataFrame, cells: list[CellResult], explainer: str, shown: set[str]) -> str:
    """Why a row's shown columns are empty (``fidelity_top1, fidelity_top3: explainer
    has no surrogate model``), and whether its fit came from the cache (``fit_seconds``
    is then the original fit's time, not this run's), where a reader of the board sees
    it rather than only in ``results.csv``."""
    own = long[(long["explainer"] == explainer) & long["value"].isna()]
    own = own[own["column"].isin(shown)]
    notes = []
    for note, group in own.groupby("note", sort=False):
        if str(note).strip():
            notes.append(f"{', '.join(dict.fromkeys(group['column']))}: {note}")
    reused = [c for c in cells if c.explainer == explainer and c.fit.get("reused_cache")]
    if reused:
        notes.append(
            f"fit reused from the cache in {len(reused)} of "
            f"{sum(c.explainer == explainer for c in cells)} cell(s): fit_seconds is the "
            "original fit's time"
        )
    return "; ".join(notes)


def value_columns(board: pd.DataFrame) -> list[str]:
    """The leaderboard's value columns (the ones with a direction arrow), in order."""
    return [c for c in board.columns if any(f" {a}" in c for a in ARROWS.values())]


def stage_csv(frame: pd.DataFrame, path: Path, *, exact: bool = False) -> Path:
    """Write a CSV to a temporary beside ``path`` and return it (renamed by the caller);
    ``exact`` keeps every float's shortest exact repr (the long CSV, whose values an
    audit recomputes to the last bit), otherwise 6 significant digits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        frame.to_csv(tmp, index=False, float_format=None if exact else "%.6g")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_csv_atomic(frame: pd.DataFrame, path: Path, *, exact: bool = False) -> None:
    """Write a CSV whole or not at all (see :func:`stage_csv`)."""
    tmp = stage_csv(frame, path, exact=exact)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


JOURNAL = ".publish-journal.json"
"""Staged files of a publish not yet all in place; see :func:`commit_together`."""


def commit_together(root: Path, staged: list[tuple[Path, Path]]) -> None:
    """Rename staged files into place as one step: the list is journalled first, so a
    kill between two renames is completed by the next :func:`recover_publish` and a
    reader never meets a ``leaderboard.csv`` from one publish beside a ``results.csv``
    from another for longer than the interrupted process lived."""
    journal = root / JOURNAL
    write_json_atomic(journal, [[str(tmp), str(final)] for tmp, final in staged])
    interrupted: BaseException | None = None
    for i, (tmp, final) in enumerate(staged):
        try:
            os.replace(tmp, final)
            if i == 0:
                failpoint("publish")
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: finish the set, then stop
            interrupted = err
    journal.unlink()
    if interrupted is not None:
        raise interrupted


def recover_publish(root: Path) -> bool:
    """Finish a publish that was killed between its renames (see
    :func:`commit_together`); returns whether there was one."""
    journal = Path(root) / JOURNAL
    if not journal.is_file():
        return False
    try:
        staged = json.loads(journal.read_text())
    except (OSError, ValueError):
        staged = []
    for tmp, final in staged:
        if Path(tmp).is_file():
            os.replace(tmp, final)
    journal.unlink(missing_ok=True)
    return True


SHARED_SETTINGS = ("limit", "dataset_fingerprint", "classifier_config", "metrics")
"""Settings that must be equal across the cells of one leaderboard."""


def check_one_configuration(cells: list[CellResult], where: Path) -> None:
    """Refuse to aggregate cells made under different settings: another ``--limit``, a
    changed dataset, classifier or metric version, or (within one fold and seed)
    another trained classifier. A leaderboard mixing them averages numbers that do not
    measure the same thing."""
    conflicts: list[str] = []
    for name in SHARED_SETTINGS:
        seen: dict[str, list[CellResult]] = {}
        for cell in cells:
            if name in cell.settings:
                seen.setdefault(json.dumps(cell.settings[name], sort_keys=True), []).append(cell)
        if len(seen) > 1:
            parts = [
                f"{name} {value} ({len(group)} cells, e.g. {_cell_name(group[0])})"
                for value, group in seen.items()
            ]
            conflicts.append(" vs ".join(parts))
    by_fold_seed: dict[tuple[str, int], dict[str, CellResult]] = {}
    for cell in cells:
        by_fold_seed.setdefault((cell.fold, int(cell.seed)), {}).setdefault(
            cell.classifier_sha256, cell
        )
    for (fold, seed), classifiers in sorted(by_fold_seed.items()):
        if len(classifiers) > 1:
            examples = ", ".join(f"{sha[:10]} ({_cell_name(c)})" for sha, c in classifiers.items())
            conflicts.append(f"fold {fold} seed {seed} explains several classifiers: {examples}")
    if conflicts:
        raise BenchError(
            f"the cells under {where} were made under different settings, so one "
            "leaderboard cannot average them:\n  " + "\n  ".join(conflicts),
            "rerun the stale explainers with the current settings (l2i-bench run ... "
            "--explainers NAMES --force), or write this run to another --out",
        )


def _cell_name(cell: CellResult) -> str:
    return f"fold {cell.fold} seed {cell.seed} {cell.explainer}"


def publish(out: Path, dataset: str) -> tuple[Path, Path]:
    """Rebuild every published file of a dataset from its cells: ``classifier.csv`` (the
    quality of the classifiers they explain), ``results.csv`` (long, with per-cell
    intervals), ``instances.parquet`` (the rows behind them),
    ``metric_validity.csv``, ``significance.csv`` (paired tests, tied ranks),
    ``agreement.csv`` (rank agreement between columns) and ``leaderboard.csv``; all
    staged, then renamed together (:func:`commit_together`). Refuses cells of mixed
    settings (:func:`check_one_configuration`)."""
    from l2i_bench.agreement import agreement
    from l2i_bench.instances import instance_table, write_instances
    from l2i_bench.significance import significance
    from l2i_bench.validity import failing_columns, metric_validity

    root = Path(out) / dataset
    recover_publish(root)
    cells = read_cells(out, dataset)
    check_one_configuration(cells, root / "cells")
    long_path, board_path = root / "results.csv", root / "leaderboard.csv"
    validity = metric_validity(cells)
    tests, ranks = significance(cells, validity)
    instances_path = root / "instances.parquet"
    instances_tmp = temporary_path(instances_path)
    staged: list[tuple[Path, Path]] = []
    try:
        write_instances(*instance_table(cells, _class_names(root)), instances_tmp)
        staged.append((instances_tmp, instances_path))
        for frame, path, exact in (
            (classifier_table(cells, root / "runs"), root / "classifier.csv", False),
            (long_table(cells), long_path, True),
            (validity, root / "metric_validity.csv", False),
            (tests, root / "significance.csv", False),
            (agreement(cells, validity), root / "agreement.csv", False),
            (leaderboard(cells, failing_columns(validity), ranks), board_path, False),
        ):
            staged.append((stage_csv(frame, path, exact=exact), path))
        commit_together(root, staged)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        instances_tmp.unlink(missing_ok=True)
    (root / "comparisons.csv").unlink(missing_ok=True)  # superseded by significance.csv
    return long_path, board_path


def classifier_table(cells: list[CellResult], runs: Path) -> pd.DataFrame:
    """The test quality of every classifier the cells explain, one row per (fold, seed),
    read from the run manifest in ``runs`` that trained or reloaded it, matched by the
    weights' sha256: the runs that made these cells before any other, and among them the
    one that trained the weights (a board resumed by a later run names where its
    classifier came from), else the newest. Derived from the cells like every published
    file, so that cells copied in from another run's folder cannot be shown beside
    another classifier's quality. A classifier no manifest records keeps its row,
    quality empty and a note saying which manifest to copy into ``runs/``."""
    records: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # sha256 -> (run id, record)
    for path in sorted(Path(runs).glob("*.json")):  # run ids sort by time: oldest first
        try:
            manifest = json.loads(path.read_text())
            for record in manifest.get("classifier", {}).values():
                if isinstance(record, dict) and record.get("sha256"):
                    run_id = str(manifest.get("run_id", path.stem))
                    records.setdefault(record["sha256"], []).append((run_id, record))
        except (OSError, ValueError, AttributeError):
            continue
    made_by: dict[tuple[str, int, str], set[str]] = {}
    for c in cells:
        made_by.setdefault((c.fold, int(c.seed), c.classifier_sha256), set()).add(c.run_id)
    rows = []
    for fold, seed, sha in sorted(made_by, key=lambda k: (fold_order(k[0]), k[1], k[2])):
        row: dict[str, Any] = {"fold": fold, "seed": seed}
        candidates = records.get(sha, [])
        own = [c for c in candidates if c[0] in made_by[(fold, seed, sha)]]
        pool = own or candidates
        trained = [c for c in pool if c[1].get("reused") is False]
        run_id, record = (trained or pool or [("", {})])[-1]
        quality = record.get("test_quality") or {}
        row.update({k: float(v) for k, v in quality.items()})
        row["classifier_sha256"] = sha[:12]
        row["run"] = run_id
        row["note"] = (
            ""
            if quality
            else "no manifest in runs/ records this classifier's quality: copy in the "
            "manifest of the run that trained it"
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["fold", "seed", "classifier_sha256", "run", "note"])
    ends = ["classifier_sha256", "run", "note"]
    return frame[[c for c in frame.columns if c not in ends] + ends]


def fold_order(fold: str) -> tuple[int, str]:
    """Sort key of fold names: numbered folds in numeric order (2 before 10), named
    folds after them."""
    return (int(fold), fold) if fold.isdigit() else (1 << 30, fold)


def _class_names(root: Path) -> list[str] | None:
    """The dataset's class names, from its newest run manifest (None if there is none)."""
    manifests = sorted((root / "runs").glob("*.json"))
    for path in reversed(manifests):
        try:
            return list(json.loads(path.read_text())["dataset"]["classes"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None
