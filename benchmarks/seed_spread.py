"""How much of a leaderboard's spread is the seed and how much the fold: for a results
folder with several seeds per fold, per explainer and column, the std over seeds within
a fold (mean over folds) beside the std over folds within a seed (mean over seeds).

Reads the cell files only (no computation): the numbers behind the README's "Seeds move
the numbers as much as folds do".

    .venv/bin/python benchmarks/seed_spread.py results/5-folds/synth
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from l2i_bench.results import long_table, read_cells

COLUMNS = [
    "classifier_accuracy",
    "fidelity_top1",
    "ff_prob_drop",
    "ff_prob_drop_minus_random",
    "gt_auroc_overlap",
    "gt_precision_overlap",
    "deletion_auc",
    "insertion_auc",
]


def spread(long: pd.DataFrame, column: str, explainer: str) -> tuple[float, float, int]:
    own = long[(long["column"] == column) & (long["explainer"] == explainer)]
    table = own.pivot_table(index="fold", columns="seed", values="value").dropna()
    if table.shape[0] < 2 or table.shape[1] < 2:
        return float("nan"), float("nan"), 0
    over_seeds = table.std(axis=1, ddof=1).mean()
    over_folds = table.std(axis=0, ddof=1).mean()
    return float(over_seeds), float(over_folds), int(table.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    long = long_table(read_cells(args.results.parent, args.results.name), intervals=False)
    long["value"] = long["value"].astype(float)
    explainers = [e for e in dict.fromkeys(long["explainer"]) if e not in ("oracle", "anti-oracle")]
    print(f"{'column':<28} {'explainer':<10} {'folds':>5} {'std seeds':>10} {'std folds':>10}")
    for column in COLUMNS:
        for explainer in explainers:
            seeds, folds, n = spread(long, column, explainer)
            if n:
                print(f"{column:<28} {explainer:<10} {n:>5} {seeds:>10.3f} {folds:>10.3f}")


if __name__ == "__main__":
    main()
