"""Seconds per cell of the perturbation metrics, against an earlier commit's code.

Deletion/insertion and faithfulness rebuild many perturbed inputs per explained row
(14 and 4 resyntheses + classifier passes); issue 19 asks that both together run at
least 3x faster per cell than before, with the same values. This script measures it
side by side: the same evaluation (ESC-50's shape: 5 s clips at 44.1 kHz, 50 classes,
Kumar's CNN at width 0.25 with its batch-norm statistics estimated on the clips, smooth
random masks in both mask domains) scored by this checkout and by ``--against REV``
(its ``bench/`` and ``plugins/`` extracted by ``against.py`` and imported ahead of the
installed package in a subprocess), interleaved, best of ``--repeats``. It prints
seconds per cell, the ratio, and the largest difference of any published value or row
value between the two.

    .venv/bin/python benchmarks/bench_metrics.py --against d50f3a4
    .venv/bin/python benchmarks/bench_metrics.py --device cuda --rows 50

Clips are synthetic (noise with tone bursts), so no data is needed; ``--rows`` sets the
explained rows per cell (the published ESC-50 board explains 50).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from against import code_versions, run_json

METRICS = ("deletion_insertion", "faithfulness")


def build_evaluation(rows: int, device: str, domain: str):
    """A deterministic ESC-50-shaped evaluation (imports the l2i_bench on the path)."""
    import torch

    from l2i_bench.audio import SAMPLE_RATE, FrontEnd
    from l2i_bench.plugins.classifiers.kumar import KumarCNN
    from l2i_bench.types import AudioBatch, Evaluation, ExplanationSet, Task, Timing

    classes = 50
    gen = torch.Generator().manual_seed(0)
    length = 5 * SAMPLE_RATE
    t = torch.arange(length) / SAMPLE_RATE
    wave = 0.02 * torch.randn(rows, length, generator=gen)
    for r in range(rows):  # two tone bursts per clip at clip-specific pitches and times
        for _ in range(2):
            f0 = float(200 + 4000 * torch.rand(1, generator=gen))
            start = float(4 * torch.rand(1, generator=gen))
            burst = ((t > start) & (t < start + 0.6)).float()
            wave[r] += 0.3 * burst * torch.sin(2 * torch.pi * f0 * t)
    front_end = FrontEnd(device)
    spec = front_end.stft(wave).cpu()
    logmel = front_end.logmel_from_magnitude(spec.abs()).cpu()
    torch.manual_seed(0)
    model = KumarCNN(classes, Task.MULTICLASS, width=0.25)
    for module in model.modules():  # batch-norm statistics of these clips: input-sensitive
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(logmel)
    model = model.eval().to(device)
    with torch.no_grad():
        logits = model(logmel.to(device)).float().cpu()
    smooth = torch.nn.functional.avg_pool2d(
        torch.rand(rows, 1, spec.shape[1], spec.shape[2], generator=gen), 9, 1, 4
    )[:, 0]
    mask = ((smooth - smooth.mean()) * 8 + 0.5).clamp(0, 1)
    targets = torch.nn.functional.one_hot(torch.arange(rows) % classes, classes).float()
    explanations = ExplanationSet(
        rows=torch.arange(rows),
        classes=logits.argmax(dim=1),
        mask=mask,
        relevance=None,
        waveform=wave,
        mask_domain=domain,
    )
    return Evaluation(
        dataset="bench",
        fold="1",
        task=Task.MULTICLASS,
        class_names=[str(i) for i in range(classes)],
        explainer_name="bench",
        explainer_has_surrogate=False,
        classifier=model,
        front_end=front_end,
        device=torch.device(device),
        seed=0,
        test=AudioBatch([f"c{i}" for i in range(rows)], wave, spec, logmel, targets),
        classifier_logits=logits,
        decision_thresholds=None,
        surrogate_logits=None,
        explanations=explanations,
        conditions={},
        timing=Timing(1.0, [1.0] * rows, 1.0, device),
        show_progress=False,
    )


def worker(rows: int, device: str, threads: int) -> dict:
    """Time each metric once per mask domain; return seconds and every value."""
    import torch

    from l2i_bench.plugins.metrics import curves, faithfulness
    from l2i_bench.timing import synchronize

    torch.set_num_threads(threads)
    out: dict = {"seconds": {}, "values": {}}
    for domain in ("linear", "log1p"):
        evaluation = build_evaluation(rows, device, domain)
        for metric in (curves.DeletionInsertion(), faithfulness.Faithfulness()):
            synchronize(torch.device(device))
            start = time.perf_counter()
            values = metric.compute(evaluation)
            synchronize(torch.device(device))
            out["seconds"].setdefault(metric.name, 0.0)
            out["seconds"][metric.name] += time.perf_counter() - start
            for column, value in values.items():
                rows_of = getattr(value, "values", None)
                numbers = [float(v) for v in rows_of] if rows_of is not None else []
                out["values"][f"{domain}/{column}"] = [float(value), *numbers]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--against", metavar="REV", help="commit to compare with")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.rows, args.device, args.threads)))
        return
    worker_args = ["--worker", "--rows", str(args.rows), "--device", args.device]
    worker_args += ["--threads", str(args.threads)]
    with code_versions(args.against) as modes:
        best: dict[str, dict] = {}
        for _ in range(args.repeats):  # interleaved: both see the same load
            for name, path in modes.items():
                result = run_json(__file__, worker_args, path, args.threads)
                seconds = ", ".join(f"{m} {s:.2f} s" for m, s in result["seconds"].items())
                print(f"  {name}: {seconds}", file=sys.stderr, flush=True)  # kept on a timeout
                if name not in best:
                    best[name] = result
                for metric, secs in result["seconds"].items():
                    best[name]["seconds"][metric] = min(best[name]["seconds"][metric], secs)
    print(
        f"{args.rows} rows x 2 mask domains, 5 s clips at 44.1 kHz, device {args.device}, "
        f"{args.threads} thread(s), {platform.processor() or platform.machine()}, "
        f"load {os.getloadavg()[0]:.1f}; best of {args.repeats}"
    )
    names = list(modes)
    header = f"{'metric':24}" + "".join(f"{n[:16]:>18}" for n in names)
    if len(names) == 2:
        header += f"{'speed-up':>10}{'max |diff|':>12}"
    print(header)
    for metric in (*METRICS, "together"):

        def secs(name: str, metric: str = metric) -> float:
            s = best[name]["seconds"]
            return sum(s.values()) if metric == "together" else s[metric]

        line = f"{metric:24}" + "".join(f"{secs(n):>16.2f} s" for n in names)
        if len(names) == 2:
            old, new = names
            line += f"{secs(old) / secs(new):>9.2f}x"
            if metric != "together":
                line += f"{_max_diff(best[old], best[new], metric):>12.1e}"
        print(line)


def _max_diff(old: dict, new: dict, metric: str) -> float:
    prefixes = ("deletion", "insertion") if metric == "deletion_insertion" else ("ff_",)
    diffs = [
        abs(a - b)
        for key, values in old["values"].items()
        if key.split("/", 1)[1].startswith(prefixes)
        for a, b in zip(values, new["values"][key], strict=True)
    ]
    return max(diffs) if diffs else float("nan")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
