"""The whole path on the real ESC-50 fold 4 (../shared/data/esc50-fold4), kept small:
a narrow classifier trained briefly, a short L2I fit, 40 test clips."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from l2i_bench.registry import load_registry
from l2i_bench.runner import FoldWorkspace, RunConfig, run_benchmark

pytestmark = pytest.mark.integration


def test_l2i_and_random_on_the_real_fold(real_esc50_fold, tmp_path):
    config = RunConfig(
        dataset="esc50",
        explainers=["l2i", "random"],
        data_dir=real_esc50_fold,
        device="cpu",
        limit=40,
        out=tmp_path / "results",
        cache_dir=tmp_path / "cache",
        classifier={"width": 0.125, "epochs": 4, "patience": 4},
        options={"l2i": {"epochs": "6", "lr": "2e-3", "components": "40", "nmf_iter": "60"}},
        listen=1,
        show_progress=False,
    )
    registry = load_registry()
    summary = run_benchmark(config, registry)
    manifest = json.loads(summary.manifest.read_text())
    fold = manifest["dataset"]["folds"]["4"]
    assert "within" in fold["protocol"].lower()  # only fold 4 is present: stated split
    assert fold["test"] == 40 and fold["train"] > fold["valid"] > 0
    # The published accuracy, recomputed from scratch: the cached classifier (the run's
    # checkpoint, same hash) on the same 40 test clips, argmax against the labels.
    dataset = registry.dataset("esc50")(real_esc50_fold, seed=config.seed)
    dataset.prepare()
    ws = FoldWorkspace(dataset, "4", config, torch.device("cpu"))
    assert ws.classifier.reused
    assert ws.classifier.checkpoint_sha256 == manifest["classifier"]["4/seed-0"]["sha256"]
    batch = next(ws.test.batches(len(ws.test)))
    assert len(batch) == 40
    with torch.no_grad():
        logits = ws.model(batch.logmel)
    labels = batch.targets.argmax(1)
    accuracy = (logits.argmax(1) == labels).double().mean().item()
    top3 = (logits.topk(3, dim=1).indices == labels[:, None]).any(1).double().mean().item()
    quality = summary.classifier_quality["4/seed-0"]
    assert quality["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert quality["top3_accuracy"] == pytest.approx(top3, abs=1e-12)
    table = pd.read_csv(summary.leaderboard.parent / "classifier.csv", dtype={"fold": str})
    assert table.set_index("fold").loc["4", "accuracy"] == pytest.approx(accuracy, abs=1e-9)

    board = pd.read_csv(summary.leaderboard).set_index("explainer")
    assert list(board.index) == ["l2i", "random"]
    # The interpreter is trained to agree with the classifier; the control guesses.
    assert board.loc["l2i", "fidelity_top1 ↑"] > board.loc["random", "fidelity_top1 ↑"] + 0.1
    long = pd.read_csv(summary.results)
    assert (long["dataset"] == "esc50").all() and set(long["fold"].astype(str)) == {"4"}

    # --listen-only on the same folder: a stem-less dataset skips the oracle (as the
    # scored grid does) and writes the control's one example where its cell wrote it.
    from dataclasses import replace

    from l2i_bench.relisten import write_listening_only

    listen = summary.leaderboard.parent / "listen" / "fold-4"
    scored = sorted(p.name for p in (listen / "random").glob("*.wav"))
    assert len(scored) == 1
    written = write_listening_only(
        replace(config, explainers=["random", "oracle"], options={}), registry
    )
    assert [p.relative_to(listen).as_posix() for p in written] == [f"random/{scored[0]}"]
    assert not (listen / "oracle").exists()
