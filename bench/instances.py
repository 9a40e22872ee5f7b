"""Per-instance records: every row value behind every published number, in one file.

As lm-eval's ``--log_samples`` and HELM's ``per_instance_stats``, a results folder keeps
what its aggregates are made of, so that any of them can be recomputed, re-tested or
audited without rerunning anything. ``instances.parquet`` has one record per explained
row of a cell: ``dataset, seed, fold, explainer, set, clip_id, class_index, class`` and
one float column per stored column name (``ff_prob_drop``; ``ff_prob_drop@overlap`` for
the references' extra mixture rows kept for metric validity). A column's published
number in a cell is :func:`l2i_bench.stats.summarise` of that cell's non-missing values
of the column, in file order, with the summary recorded in the file's metadata
(:data:`SUMMARY_KEY`): :func:`cell_values` does exactly that, and a test checks it
against every published value. The cell JSON files remain the unit of work and
resumption; this file is rebuilt from them at every publish. Cost: a few MB and a
second per 10^5 records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from l2i_bench.cache import temporary_path
from l2i_bench.errors import BenchError
from l2i_bench.stats import summarise

SUMMARY_KEY = b"l2i_bench.summaries"
ID_COLUMNS = ["dataset", "seed", "fold", "explainer", "set", "clip_id", "class_index", "class"]


def split_key(key: str) -> tuple[str, str, int]:
    """``"<set>/<clip_id>/<class>"`` -> (set, clip_id, class index); clip ids may hold
    slashes, set names and class indices do not."""
    set_name, rest = key.split("/", 1)
    clip_id, class_index = rest.rsplit("/", 1)
    return set_name, clip_id, int(class_index)


def instance_table(
    cells: Sequence, class_names: Sequence[str] | None = None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The records of every cell (wide, one per explained row) and each column's summary."""
    records: list[dict[str, object]] = []
    summaries: dict[str, str] = {}
    for cell in cells:
        by_key: dict[str, dict[str, object]] = {}
        for name in cell.rows.get("columns", {}):
            rv = cell.row_values(name)
            summaries[name] = rv.summary
            for key, value in zip(rv.keys, rv.values, strict=True):
                record = by_key.get(key)
                if record is None:
                    set_name, clip_id, class_index = split_key(key)
                    record = by_key[key] = {
                        "dataset": cell.dataset,
                        "seed": int(cell.seed),
                        "fold": str(cell.fold),
                        "explainer": cell.explainer,
                        "set": set_name,
                        "clip_id": clip_id,
                        "class_index": class_index,
                        "class": _class_name(class_names, class_index),
                    }
                record[name] = value
        records.extend(by_key.values())
    columns = ID_COLUMNS + sorted(summaries)
    return pd.DataFrame.from_records(records, columns=columns), summaries


def _class_name(names: Sequence[str] | None, index: int) -> str:
    return names[index] if names is not None and 0 <= index < len(names) else str(index)


def write_instances(frame: pd.DataFrame, summaries: dict[str, str], path: Path) -> None:
    """Parquet (pyarrow), written to a temporary name and renamed: whole or absent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[SUMMARY_KEY] = json.dumps(summaries, sort_keys=True).encode()
    table = table.replace_schema_metadata(meta)
    tmp = temporary_path(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def read_instances(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """The records and each column's summary, as :func:`write_instances` wrote them."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:
        raise BenchError(
            f"cannot read per-instance records {path}: {err}",
            "rebuild them from the cells with `l2i-bench publish --dataset NAME`",
        ) from err
    meta = table.schema.metadata or {}
    summaries = json.loads(meta.get(SUMMARY_KEY, b"{}"))
    frame = table.to_pandas()
    frame["fold"] = frame["fold"].astype(str)
    return frame, summaries


def cell_values(frame: pd.DataFrame, summaries: dict[str, str]) -> pd.DataFrame:
    """Every cell's number of every column with records, recomputed from the records:
    columns ``seed, fold, explainer, column, value, n``."""
    out = []
    for (seed, fold, explainer), group in frame.groupby(["seed", "fold", "explainer"], sort=True):
        for column, how in summaries.items():
            if column not in group:
                continue
            values = group[column].dropna().to_numpy()
            if values.size:
                out.append(
                    {
                        "seed": int(seed),
                        "fold": str(fold),
                        "explainer": explainer,
                        "column": column,
                        "value": summarise(values, how),
                        "n": int(values.size),
                    }
                )
    return pd.DataFrame(out, columns=["seed", "fold", "explainer", "column", "value", "n"])
