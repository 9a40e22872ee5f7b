"""Why L2I's interpretation does or does not keep the target on synth's mixtures.

The ground-truth columns say *how much* of an interpretation is target; this script says
*where the loss comes from*, per condition set of one fold, over the clips the
classifier gets right (the rows the ground-truth metric scores):

* ``precision/recall log|linear``: the interpretation's energy precision and recall with the
  paper's log-domain mask and with the same ratio applied to ``|X|``;
* ``best atom``: median over clips of the highest target energy share among the active
  atoms, i.e. what a perfect choice of one atom could reach with this dictionary and
  these activations;
* ``chosen atoms``: mean target energy share of the atoms the relevance picks.

An atom's energy share is that of ``(w_k h_k / (W H + eps)) X``, the input filtered by
the atom's own soft mask. The script reuses the run's cache (classifier and fitted
``l2i`` under ``--cache-dir``), so after the README's main command it takes seconds:

    .venv/bin/python benchmarks/diagnose_l2i.py --dataset synth --fold 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from l2i_bench import scores
from l2i_bench.errors import BenchError
from l2i_bench.plugins.explainers.l2i import (
    MASK_EPS,
    L2IExplainer,
    component_mask,
    relevance_of,
    select_components,
)
from l2i_bench.registry import load_registry
from l2i_bench.timing import resolve_device
from l2i_bench.types import Task
from l2i_bench.workspace import FoldWorkspace, RunConfig

ACTIVE = 0.01  # an atom is active in a clip if it keeps >= 1 % of the top atom's energy


def atom_target_shares(
    W: torch.Tensor, H: torch.Tensor, spec: torch.Tensor, rho: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip and atom (B, K): the target share of the energy the atom's soft mask
    keeps, and that energy."""
    full = torch.einsum("fk,bkt->bft", W, H) + MASK_EPS
    shares, energies = [], []
    for k in range(W.shape[1]):
        mask = W[:, k, None] * H[:, k, None, :] / full
        precision, _ = scores.energy_precision_recall(mask, spec, rho)
        shares.append(torch.nan_to_num(precision, nan=0.0))
        energies.append((mask**2 * spec.abs() ** 2).sum((1, 2)))
    return torch.stack(shares, 1), torch.stack(energies, 1)


def diagnose(ws: FoldWorkspace, explainer: L2IExplainer, condition: str) -> dict[str, float]:
    clips = ws.conditions[condition]
    stems = ws.condition_stems[condition]
    batch = clips.batch(list(range(len(clips))))
    classes = torch.tensor([clip.labels[0] for clip in clips.clips], device=ws.device)
    decisions = scores.classifier_decisions(ws.condition_logits[condition], ws.dataset.task)
    decided = decisions[torch.arange(len(clips)), classes.cpu()].to(ws.device)
    rho = scores.oracle_ratio_mask(
        ws.front_end.stft(stems["target"].float()),
        ws.front_end.stft(stems["interference"].float()),
    )
    W = explainer.W
    assert W is not None  # fitted by the workspace
    H, z = explainer.activations(batch)
    theta = explainer.theta
    assert theta is not None
    chosen = select_components(
        relevance_of(z, theta.fc.weight, classes), explainer.threshold, explainer.top_k
    )
    out: dict[str, float] = {"rows": float(decided.sum())}
    for domain in ("log", "linear"):
        mask = component_mask(W, H, batch.log_magnitude, chosen, domain)
        precision, recall = scores.energy_precision_recall(mask, batch.spec, rho)
        out[f"precision {domain}"] = float(torch.nanmean(precision[decided]))
        out[f"recall {domain}"] = float(recall[decided].mean())
    share, energy = atom_target_shares(W, H, batch.spec, rho)
    active = energy >= ACTIVE * energy.amax(1, keepdim=True)
    out["best atom"] = float((share * active)[decided].amax(1).median())
    out["chosen atoms"] = float(share[decided][chosen[decided]].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synth")
    parser.add_argument("--fold", default="1")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    registry = load_registry()
    dataset = registry.dataset(args.dataset)(args.data_dir, seed=args.seed)
    if dataset.task is not Task.MULTICLASS:
        raise BenchError(
            f"{args.dataset} is multilabel; this diagnosis explains one target class per clip",
            "use a multiclass dataset with condition sets, e.g. --dataset synth",
        )
    dataset.prepare()
    config = RunConfig(
        dataset=dataset.name,
        explainers=["l2i"],
        data_dir=args.data_dir,
        device=args.device,
        seed=args.seed,
        cache_dir=args.cache_dir,
    )
    ws = FoldWorkspace(dataset, args.fold, config, resolve_device(args.device))
    if not ws.conditions:
        raise BenchError(
            f"{args.dataset} fold {args.fold} has no condition sets with stems",
            "use a dataset with overlap/noise conditions, e.g. --dataset synth",
        )
    explainer, _, _ = ws.fitted_explainer(registry.explainer("l2i"))
    assert isinstance(explainer, L2IExplainer)
    rows = {cond: diagnose(ws, explainer, cond) for cond in ws.conditions}
    names = list(next(iter(rows.values())))
    print(f"{args.dataset} fold {args.fold}: l2i on the clips the classifier gets right")
    print(f"{'':18s}" + "".join(f"{cond:>10s}" for cond in rows))
    for name in names:
        print(f"{name:18s}" + "".join(f"{rows[cond][name]:10.3f}" for cond in rows))


if __name__ == "__main__":
    main()
