"""How much of a result survives a rerun: the same seed, the same data, with the thread
count changed (the variation left once seeds are fixed).

Trains the fold's classifier (the published configuration of ``synth``) from scratch,
in a fresh cache each time: twice with ``--threads`` A (run-to-run on one machine) and
once with B (what another machine's core count does), and prints for each pair whether
the checkpoints are bit-identical, the largest weight difference, the largest test-logit
difference and the test accuracies. Every later number of a cell depends on these
weights, so a difference here moves the leaderboard.

    .venv/bin/python benchmarks/reproducibility.py --threads 2 1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from l2i_bench.determinism import apply_determinism
from l2i_bench.registry import load_registry
from l2i_bench.workspace import FoldWorkspace, RunConfig


def train(dataset_name: str, fold: str, threads: int, seed: int, data_dir):
    apply_determinism(threads)
    registry = load_registry()
    dataset = registry.dataset(dataset_name)(data_dir, seed=seed)
    dataset.prepare()
    with tempfile.TemporaryDirectory() as cache:
        config = RunConfig(
            dataset=dataset_name,
            explainers=[],
            seed=seed,
            cache_dir=Path(cache),
            show_progress=False,
        )
        ws = FoldWorkspace(dataset, fold, config, torch.device("cpu"))
        state = {k: v.detach().clone() for k, v in ws.model.state_dict().items()}
        return ws.classifier.checkpoint_sha256, state, ws.test_logits.clone(), ws.quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synth")
    parser.add_argument("--fold", default="1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, nargs=2, default=[2, 1], metavar=("A", "B"))
    args = parser.parse_args()
    a, b = args.threads
    runs = {
        f"{a} threads, run 1": train(args.dataset, args.fold, a, args.seed, args.data_dir),
        f"{a} threads, run 2": train(args.dataset, args.fold, a, args.seed, args.data_dir),
        f"{b} threads": train(args.dataset, args.fold, b, args.seed, args.data_dir),
    }
    for name, (_, _, _, quality) in runs.items():
        print(f"{name:<18} test accuracy {quality.get('accuracy', float('nan')):.4f}")
    names = list(runs)
    for first, second in ((names[0], names[1]), (names[0], names[2])):
        sha1, w1, l1, _ = runs[first]
        sha2, w2, l2, _ = runs[second]
        weight = max(float((w1[k].double() - w2[k].double()).abs().max()) for k in w1)
        logit = float((l1 - l2).abs().max())
        top = float((l1.argmax(1) != l2.argmax(1)).float().mean())
        print(
            f"{first} vs {second}: identical checkpoint {sha1 == sha2}, max |dw| {weight:.3g}, "
            f"max |d logit| {logit:.3g}, top-1 changed on {100 * top:.1f} % of test clips"
        )


if __name__ == "__main__":
    main()
