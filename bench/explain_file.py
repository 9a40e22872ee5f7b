"""``l2i-bench explain``: hear and see what an explainer says about one's own file.

The file is brought to the dataset's clip length (cropped or zero-padded, and the
JSON says which), classified by the fold's cached classifier, and explained by the
chosen explainer fitted on that fold's training split (trained once, then cached).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2i_bench import perturb
from l2i_bench.audio import SAMPLE_RATE, fit_length, read_audio, write_audio
from l2i_bench.data import ClipSet
from l2i_bench.errors import BenchError
from l2i_bench.registry import Registry
from l2i_bench.timing import resolve_device
from l2i_bench.types import Clip, Task
from l2i_bench.workspace import FoldWorkspace, RunConfig


@dataclass
class ExplainRequest:
    audio: Path
    explainer: str
    dataset: str
    fold: str | None = None
    class_name: str | None = None
    data_dir: Path | None = None
    out: Path = Path("explanations")
    device: str = "auto"
    seed: int = 0
    cache_dir: Path = Path(".cache")
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    classifier: dict[str, Any] = field(default_factory=dict)
    show_progress: bool = True


def explain_file(request: ExplainRequest, registry: Registry) -> list[Path]:
    """Write the interpretation audio, a spectrogram figure and a JSON; return the paths."""
    explainer_cls = registry.explainer(request.explainer)
    dataset = registry.dataset(request.dataset)(request.data_dir, seed=request.seed)
    dataset.prepare()
    fold = request.fold or dataset.default_folds()[0]
    if fold not in dataset.folds():
        raise BenchError(
            f"fold {fold!r} not in dataset {dataset.name!r} (available: {', '.join(dataset.folds())})",
            "pick one with --fold",
        )
    num_samples = round(dataset.clip_seconds * SAMPLE_RATE)
    raw = read_audio(request.audio)
    wave = fit_length(raw, num_samples)
    if not np.any(wave):
        raise BenchError(
            f"{request.audio} is silent over its first {dataset.clip_seconds:g} s",
            "explain a file with sound in it",
        )
    device = resolve_device(request.device)
    config = RunConfig(
        dataset=dataset.name,
        explainers=[explainer_cls.name],
        data_dir=request.data_dir,
        device=request.device,
        seed=request.seed,
        cache_dir=request.cache_dir,
        options=request.options,
        classifier=request.classifier,
        limit=1,
        show_progress=request.show_progress,
    )
    ws = FoldWorkspace(dataset, fold, config, device)
    explainer, _, _ = ws.fitted_explainer(explainer_cls)

    clip = Clip(clip_id=request.audio.stem, path=request.audio, labels=())
    clips = ClipSet([clip], wave[None, :], dataset.num_classes, ws.front_end)
    batch = clips.batch([0])
    with torch.no_grad():
        logits = ws.model(batch.logmel).float()
    probs = ws.model.probabilities(logits)[0].cpu()
    target = _target_class(request.class_name, dataset.class_names, probs, dataset.task)
    explanation = explainer.explain(batch, torch.tensor([target], device=device))
    interpretation = explanation.waveform
    if interpretation is None:
        interpretation = ws.front_end.apply_mask(
            batch.spec, explanation.mask, num_samples, explanation.mask_domain
        )

    out = Path(request.out)
    stem = f"{request.audio.stem}--{explainer_cls.name}--{dataset.class_names[target]}"
    wav_path = out / f"{stem}.wav"
    write_audio(wav_path, interpretation[0])
    extra_audio = {}
    for name, value in explanation.extra.items():
        if value.dim() == 2 and value.shape[-1] == num_samples:  # (B, L): listenable output
            extra_path = out / f"{stem}--{name}.wav"
            write_audio(extra_path, value[0])
            extra_audio[name] = str(extra_path)
    fig_path = out / f"{stem}.png"
    _figure(
        fig_path,
        batch.spec[0].abs(),
        perturb.kept_magnitude(batch.spec[0].abs(), explanation.mask[0], explanation.mask_domain),
        dataset.class_names[target],
    )
    record = {
        "audio": str(request.audio),
        "length_handling": (
            f"cropped from {len(raw) / SAMPLE_RATE:.2f} s"
            if len(raw) > num_samples
            else f"zero-padded from {len(raw) / SAMPLE_RATE:.2f} s"
            if len(raw) < num_samples
            else "unchanged"
        )
        + f" to the dataset's {dataset.clip_seconds:g} s",
        "dataset": dataset.name,
        "fold": fold,
        "classifier_sha256": ws.classifier.checkpoint_sha256,
        "explainer": explainer_cls.name,
        "explained_class": dataset.class_names[target],
        "class_probabilities": {
            n: float(p) for n, p in zip(dataset.class_names, probs, strict=True)
        },
        "relevance_unit": explainer_cls.unit,
        "relevance": None
        if explanation.relevance is None
        else explanation.relevance[0].detach().float().cpu().tolist(),
        "mask_mean": float(explanation.mask[0].float().mean()),
        "mask_domain": str(explanation.mask_domain),
        "interpretation_audio": str(wav_path),
        "figure": str(fig_path),
        "extra_audio": extra_audio,
    }
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(record, indent=2))
    return [wav_path, *map(Path, extra_audio.values()), fig_path, json_path]


def _target_class(requested: str | None, names: list[str], probs: torch.Tensor, task: Task) -> int:
    if requested is None:
        return int(probs.argmax())
    if requested in names:
        return names.index(requested)
    if requested.isdigit() and int(requested) < len(names):
        return int(requested)
    raise BenchError(
        f"class {requested!r} is not a class of this dataset",
        f"use a name or index from: {', '.join(names)}",
    )


def _figure(path: Path, magnitude: torch.Tensor, kept: torch.Tensor, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mag = magnitude.detach().float().cpu()
    kept = kept.detach().float().cpu().numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    extent = (0, mag.shape[1] * 512 / SAMPLE_RATE, 0, SAMPLE_RATE / 2000)
    top = 20 * np.log10(mag.max().item() + 1e-6)  # one colour scale for both panels
    for ax, data, title in (
        (axes[0], mag.numpy(), "input"),
        (axes[1], kept, f"interpretation ({label})"),
    ):
        ax.imshow(
            20 * np.log10(data + 1e-6),
            origin="lower",
            aspect="auto",
            extent=extent,
            vmin=top - 80,
            vmax=top,
            cmap="magma",
        )
        ax.set_title(title)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("frequency (kHz)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
