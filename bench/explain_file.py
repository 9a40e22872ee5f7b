"""``l2i-bench explain``: hear and see what an explainer says about one's own file.

The file is brought to the dataset's clip length: a longer file is cut to its loudest
window of that length (the first seconds of a recording are often silence), a shorter
one is zero-padded; other sample rates are resampled. It is classified by the fold's
classifier and explained by the chosen explainer fitted on that fold's training split
(both trained once, then cached). What was done to the file, what the classifier
decided and with what probability, which class was explained, and whether the file is
one the classifier was trained on (its score then says little) are printed and kept in
the JSON beside the audio and the figure.

Cost: the first call per fold trains the classifier and fits the explainer; what it
will train, and how long that should take on this device, is said before it starts
(:mod:`l2i_bench.preflight`), with the cached classifiers of other settings it could
reuse instead and ``--classifier preset=fast`` as the quick choice. Later calls reuse
both and take seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2i_bench import perturb
from l2i_bench.audio import SAMPLE_RATE, fit_length, read_audio, write_audio
from l2i_bench.cache import file_digest
from l2i_bench.classifier import classifier_name, expand_preset
from l2i_bench.data import ClipSet
from l2i_bench.determinism import apply_determinism
from l2i_bench.errors import BenchError
from l2i_bench.magnitude import complex_magnitude
from l2i_bench.options import check_options
from l2i_bench.preflight import classifier_lines, explainer_line, training_lines
from l2i_bench.registry import Registry
from l2i_bench.timing import resolve_device, stopwatch
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
    """``--classifier`` settings; ``preset=NAME`` expands (:func:`expand_preset`)."""
    threads: int | None = None
    """Torch CPU threads; part of the classifier's key on a CPU (as for a run)."""
    show_progress: bool = True
    say: Callable[[str], None] | None = None
    """Where the up-front lines go (what is loaded or trained, the estimates); None:
    standard error."""


@dataclass
class ExplainResult:
    paths: list[Path]  # interpretation audio, extra audio, figure, JSON
    summary: list[str]  # what the CLI prints: the decision, what was explained, warnings
    record: dict[str, Any]


def explain_file(request: ExplainRequest, registry: Registry) -> ExplainResult:
    """Write the interpretation audio, a figure and a JSON; return them with a summary.
    What will be loaded or trained, and how long training should take here, is said
    first (:mod:`l2i_bench.preflight`), while the user can still stop and choose."""
    started = time.perf_counter()
    explainer_cls = registry.explainer(request.explainer)
    dataset_cls = registry.dataset(request.dataset)
    # an unknown name is refused before any work
    architecture = registry.classifier(classifier_name(expand_preset(request.classifier)))
    check_options(
        request.options,
        [explainer_cls],
        dataset_cls,
        known_explainers=registry.names("explainer"),
    )
    raw, source_rate = _read_own_file(request.audio)
    dataset = dataset_cls(request.data_dir, seed=request.seed)
    dataset.show_progress = request.show_progress
    dataset.prepare()
    fold = request.fold or dataset.default_folds()[0]
    if fold not in dataset.folds():
        raise BenchError(
            f"fold {fold!r} not in dataset {dataset.name!r} (available: {', '.join(dataset.folds())})",
            "pick one with --fold",
        )
    num_samples = round(dataset.clip_seconds * SAMPLE_RATE)
    wave, length_handling = loudest_window(raw, num_samples)
    if not np.any(wave):
        raise BenchError(
            f"{request.audio} is silent over its loudest {dataset.clip_seconds:g} s",
            "explain a file with sound in it",
        )
    apply_determinism(request.threads)  # as a run does: the same classifier key
    device = resolve_device(request.device)
    config = RunConfig(
        dataset=dataset.name,
        explainers=[explainer_cls.name],
        data_dir=request.data_dir,
        device=request.device,
        seed=request.seed,
        threads=request.threads,
        cache_dir=request.cache_dir,
        options=request.options,
        classifier=expand_preset(request.classifier),
        limit=1,
        show_progress=request.show_progress,
    )
    say = request.say or _to_stderr
    for line in classifier_lines(dataset, fold, config, device, architecture.trainable):
        say(line)

    def before_training(ws: FoldWorkspace) -> None:
        for line in training_lines(ws):
            say(line)

    ws = FoldWorkspace(dataset, fold, config, device, architecture, before_training)
    line = explainer_line(ws, explainer_cls)
    if line is not None:
        say(line)
    with stopwatch(device) as fitting:
        explainer, _, _ = ws.fitted_explainer(explainer_cls)
    seen = training_clip(request.audio, ws.split)

    clip = Clip(clip_id=request.audio.stem, path=request.audio, labels=())
    clips = ClipSet([clip], wave[None, :], dataset.num_classes, ws.front_end)
    batch = clips.batch([0])
    with torch.no_grad():
        logits = ws.model(batch.logmel).float()
    probs = ws.model.probabilities(logits)[0].cpu()
    target = _target_class(request.class_name, dataset.class_names, probs, dataset.task)
    with stopwatch(device) as explaining:
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
        complex_magnitude(batch.spec[0]),
        explanation.mask[0],
        perturb.kept_magnitude(
            complex_magnitude(batch.spec[0]), explanation.mask[0], explanation.mask_domain
        ),
        str(explanation.mask_domain),
        dataset.class_names,
        probs,
        target,
    )
    record = {
        "audio": str(request.audio),
        "length_handling": length_handling,
        "source_sample_rate": source_rate,
        "resampled": source_rate != SAMPLE_RATE,
        "training_clip": seen,
        "dataset": dataset.name,
        "fold": fold,
        "classifier_sha256": ws.classifier.checkpoint_sha256,
        "explainer": explainer_cls.name,
        "explained_class": dataset.class_names[target],
        "predicted_class": dataset.class_names[int(probs.argmax())],
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
        "seconds": {
            "audio": round(ws.profile["audio"], 3),
            "classifier": round(ws.profile["classifier"], 3),
            "classifier_reused": ws.classifier.reused,
            "fit": round(fitting[0], 3),
            "explain": round(explaining[0], 3),
            "total": round(time.perf_counter() - started, 3),
        },
    }
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(record, indent=2))
    paths = [wav_path, *map(Path, extra_audio.values()), fig_path, json_path]
    return ExplainResult(paths, summary_lines(record, dataset.task), record)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def summary_lines(record: dict[str, Any], task: Task) -> list[str]:
    """The decision and what was explained, in the words a user reads first."""
    probs = record["class_probabilities"]
    predicted = record["predicted_class"]
    explained = record["explained_class"]
    word = "probability" if task is Task.MULTICLASS else "score (sigmoid)"
    lines = [
        f"input:     {record['audio']}: {record['length_handling']}"
        + (f"; resampled from {record['source_sample_rate']} Hz" if record["resampled"] else ""),
        f"predicted: {predicted} ({word} {probs[predicted]:.3f})",
        f"explained: {explained} ({word} {probs[explained]:.3f}) by {record['explainer']}"
        + (" (asked with --class)" if explained != predicted else ""),
    ]
    if record["training_clip"]:
        lines.append(
            f"warning:   this file is {record['training_clip']}: the classifier learned "
            "from it, so its confidence says little about new sounds; explain a test "
            "clip or a recording of your own"
        )
    return lines


def _read_own_file(path: Path) -> tuple[np.ndarray, int]:
    """The user's file at the suite's rate, and its own rate; errors speak of the file,
    not of a dataset download."""
    import soundfile as sf

    fix = (
        "pass a readable audio file (wav, flac, ogg, mp3); convert others with e.g. "
        f"`ffmpeg -i {path} {Path(path).with_suffix('.wav').name}`"
    )
    try:
        rate = int(sf.info(str(path)).samplerate)
        wave = read_audio(path)
    except BenchError as err:
        raise BenchError(err.problem, fix) from None
    except (sf.LibsndfileError, RuntimeError) as err:
        if not Path(path).is_file():
            raise BenchError(f"no such file: {path}", "check the path") from None
        raise BenchError(f"cannot decode {path}: {err}", fix) from None
    return wave, rate


def loudest_window(wave: np.ndarray, num_samples: int) -> tuple[np.ndarray, str]:
    """``num_samples`` of ``wave``: the window of highest energy (on a 0.1 s grid) when
    the file is longer, zero-padded at the end when shorter; and what was done, in words."""
    seconds = len(wave) / SAMPLE_RATE
    target = num_samples / SAMPLE_RATE
    if len(wave) == num_samples:
        return wave, f"unchanged ({target:g} s, the dataset's clip length)"
    if len(wave) < num_samples:
        return fit_length(wave, num_samples), (
            f"zero-padded from {seconds:.2f} s to the dataset's {target:g} s"
        )
    hop = SAMPLE_RATE // 10
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    starts = np.arange(0, len(wave) - num_samples + 1, hop)
    window = energy[starts + num_samples] - energy[starts]
    start = int(starts[int(np.argmax(window))])
    return wave[start : start + num_samples], (
        f"cropped from {seconds:.2f} s to its loudest {target:g} s "
        f"({start / SAMPLE_RATE:.2f}-{(start + num_samples) / SAMPLE_RATE:.2f} s), the "
        "dataset's clip length"
    )


def training_clip(path: Path, split) -> str:
    """``"a training clip of this fold (1-100038-A-14)"`` when the file is one of the
    clips the classifier trained or was selected on (same bytes: only files of the same
    size are hashed), else ``""``."""
    try:
        size = os.path.getsize(path)
        digest = None
        for role, clips in (("a training clip", split.train), ("a validation clip", split.valid)):
            for clip in clips:
                try:
                    if os.path.getsize(clip.path) != size:
                        continue
                except OSError:
                    continue
                digest = digest or file_digest(path)
                if file_digest(clip.path) == digest:
                    return f"{role} of this fold ({clip.clip_id})"
    except OSError:
        return ""
    return ""


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


def _figure(
    path: Path,
    magnitude: torch.Tensor,
    mask: torch.Tensor,
    kept: torch.Tensor,
    domain: str,
    class_names: list[str],
    probs: torch.Tensor,
    target: int,
) -> None:
    """Input, mask and interpretation on one dB scale with colour bars, and the
    classifier's top classes: what was heard, what the explainer kept, and why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mag = magnitude.detach().float().cpu().numpy()
    kept = kept.detach().float().cpu().numpy()
    mask = mask.detach().float().cpu().numpy()
    fig, axes = plt.subplots(
        1, 4, figsize=(17, 4), gridspec_kw={"width_ratios": [1, 1, 1, 0.8]}, layout="constrained"
    )
    extent = (0, mag.shape[1] * 512 / SAMPLE_RATE, 0, SAMPLE_RATE / 2000)
    top = 20 * np.log10(mag.max() + 1e-6)  # one colour scale for input and interpretation
    panels = (
        (axes[0], 20 * np.log10(mag + 1e-6), "input", "magma", (top - 80, top), "|STFT| (dB)"),
        (axes[1], mask, f"mask ({domain} domain)", "viridis", (0.0, 1.0), "mask value"),
        (
            axes[2],
            20 * np.log10(kept + 1e-6),
            f"interpretation of {class_names[target]}",
            "magma",
            (top - 80, top),
            "|STFT| (dB)",
        ),
    )
    for ax, data, title, cmap, (low, high), unit in panels:
        image = ax.imshow(
            data, origin="lower", aspect="auto", extent=extent, vmin=low, vmax=high, cmap=cmap
        )
        ax.set_title(title)
        ax.set_xlabel("time (s)")
        fig.colorbar(image, ax=ax, label=unit, pad=0.01)
    axes[0].set_ylabel("frequency (kHz)")
    order = np.argsort(-probs.numpy())[:5][::-1]
    bars = axes[3].barh(
        [class_names[i] for i in order],
        [float(probs[i]) for i in order],
        color=["tab:orange" if i == target else "tab:gray" for i in order],
    )
    axes[3].bar_label(bars, fmt="%.3f", padding=2)
    axes[3].set_xlim(0, 1.15)
    axes[3].set_title("classifier: top classes")
    axes[3].set_xlabel("probability")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
