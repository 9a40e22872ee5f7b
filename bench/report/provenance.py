"""How a results folder was made, as the report states it on every page: the runs
(from their manifests in ``runs/``) and the classifier explained (``classifier.csv``).

A page whose numbers cannot be traced to the code, versions, device and seeds that made
them is an opinion; this module turns the manifests the runner already writes into the
few lines a reader needs, and keeps the explainer settings each run actually used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    status: str
    git: str
    device: str
    seeds: list[int]
    versions: dict[str, str]
    command: str
    wall_minutes: float | None
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    classifier: dict[str, Any] = field(default_factory=dict)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_runs(results: Path) -> list[RunRecord]:
    """Every manifest in ``results/runs``, oldest first; unreadable ones are skipped
    (the runner never leaves a partial one, an edited one is not ours to trust)."""
    records = []
    for path in sorted((results / "runs").glob("*.json")):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        env = manifest.get("environment", {})
        git = env.get("git") or {}
        sha = str(git.get("sha") or "unknown")
        config = manifest.get("config", {})
        wall = manifest.get("wall_seconds")
        records.append(
            RunRecord(
                run_id=str(manifest.get("run_id", path.stem)),
                status=str(manifest.get("status", "unknown")),
                git=sha[:12] + (" (dirty)" if git.get("dirty") else ""),
                device=str(env.get("device_name", env.get("device", "unknown"))),
                seeds=list(manifest.get("seeds") or [config.get("seed", 0)]),
                versions=dict(env.get("packages", {})),
                command=" ".join(env.get("command", [])),
                wall_minutes=None if wall is None else float(wall) / 60.0,
                options=dict(config.get("options") or {}),
                classifier=dict(config.get("classifier") or {}),
                plugins={
                    p["name"]: p
                    for p in manifest.get("plugins", [])
                    if isinstance(p, dict) and p.get("kind") == "explainer" and "name" in p
                },
            )
        )
    return records


def classifier_quality(results: Path) -> pd.DataFrame:
    """``classifier.csv``: the explained classifier's test quality per fold and seed
    (empty when the folder has none)."""
    path = results / "classifier.csv"
    if not path.is_file():
        return pd.DataFrame()
    return pd.read_csv(path, dtype={"fold": str})
