"""Result files: one atomic JSON per cell, then the published CSVs derived from them.

A cell (dataset x fold x explainer) is the unit of work and of resumption: it is
written with write-to-temp + rename, so a killed run leaves either a complete cell
or none. The long CSV and the leaderboard are always rebuilt from every cell on disk,
so they never mix a half-finished run with a finished one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from l2i_bench.errors import BenchError
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


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never a torn one."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise BenchError(
            f"cannot write results under {path.parent}: {err}",
            "choose a writable folder with --out",
        ) from err
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, default=_json_default, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def long_table(cells: list[CellResult]) -> pd.DataFrame:
    rows = []
    for cell in cells:
        for s in cell.scores:
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
                }
            )
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


ARROWS = {"higher": "↑", "lower": "↓", "neutral": "·"}


FAILS_VALIDITY = "✗"
"""Appended to the header of a column that failed the metric validity check."""


def leaderboard(
    long: pd.DataFrame, failing: set[str] | frozenset[str] = frozenset()
) -> pd.DataFrame:
    """One row per explainer; per column the mean over folds and its std, the column
    header carrying the direction (``fidelity_top1 ↑``) and, for a column in
    ``failing`` (metric validity), a ``✗``. Reference rows (oracle, anti-oracle,
    random, loudest) come last, marked in the ``reference`` column. Empty cells stay
    empty."""
    if long.empty:
        return pd.DataFrame(columns=["explainer", "reference", "folds"])
    long = long.copy()
    long["header"] = long["column"] + " " + long["direction"].map(ARROWS).fillna("")
    bad = long["column"].isin(failing)
    long.loc[bad, "header"] = long.loc[bad, "header"] + " " + FAILS_VALIDITY
    order = list(dict.fromkeys(long["header"]))
    grouped = long.groupby(["explainer", "header"], sort=False)["value"]
    mean = grouped.mean().unstack("header")
    std = grouped.std(ddof=1).unstack("header")
    reference = long.groupby("explainer")["reference"].agg(lambda v: bool(pd.Series(v).any()))
    parts: dict[str, pd.Series] = {
        "reference": reference,
        "folds": long.groupby("explainer")["fold"].nunique(),
    }
    for header in order:
        parts[header] = mean[header]
        parts[f"{header} std"] = std[header]
    table = pd.DataFrame(parts).reindex(mean.index)
    # Columns empty for every explainer (e.g. multilabel AUPRC on a multiclass dataset)
    # say nothing here; the long CSV keeps them with the reason.
    table = table.dropna(axis=1, how="all").reset_index()
    refs = table["reference"].astype(bool)
    return pd.concat([table[~refs], table[refs]], ignore_index=True)


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_csv(tmp, index=False, float_format="%.6g")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish(out: Path, dataset: str) -> tuple[Path, Path]:
    """Rebuild ``results.csv`` (long), ``metric_validity.csv``, ``comparisons.csv``
    (contenders against the controls) and ``leaderboard.csv`` (wide, failing columns
    flagged) from every cell."""
    from l2i_bench.comparisons import versus_controls
    from l2i_bench.validity import failing_columns, metric_validity

    cells = read_cells(out, dataset)
    long = long_table(cells)
    root = Path(out) / dataset
    long_path, board_path = root / "results.csv", root / "leaderboard.csv"
    validity = metric_validity(cells)
    write_csv_atomic(long, long_path)
    write_csv_atomic(validity, root / "metric_validity.csv")
    write_csv_atomic(versus_controls(cells, validity), root / "comparisons.csv")
    write_csv_atomic(leaderboard(long, failing_columns(validity)), board_path)
    return long_path, board_path
