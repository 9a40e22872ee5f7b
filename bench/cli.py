"""l2i-bench: run the grid, list plugins, download data, explain one file.

Errors a user can fix (:class:`BenchError`) are printed as two lines, the problem and
the fix, with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from l2i_bench import __version__
from l2i_bench.errors import BenchError, did_you_mean
from l2i_bench.registry import Registry, load_registry

LOCAL_OUT = Path("local-results")
"""Where a user's runs go by default: the published ``results/`` change only when asked."""


def _parse_options(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``--option l2i.epochs=5`` -> ``{"l2i": {"epochs": "5"}}``."""
    options: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        name, dot, key = target.partition(".")
        if not sep or not dot or not name or not key:
            raise BenchError(
                f"--option {item!r} is not of the form EXPLAINER.KEY=VALUE",
                "write e.g. --option l2i.epochs=5",
            )
        options.setdefault(name, {})[key] = value
    return options


def _parse_classifier(items: Sequence[str]) -> dict[str, float | int | str]:
    """``--classifier width=0.5`` -> ``{"width": 0.5}`` (numbers parsed);
    ``preset=NAME`` expands into its settings, under the explicit ones, so the run
    records (and keys its cache by) the settings themselves."""
    from l2i_bench.classifier import expand_preset

    parsed: dict[str, float | int | str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(
                f"--classifier {item!r} is not of the form KEY=VALUE",
                "write e.g. --classifier width=0.5 or --classifier epochs=20",
            )
        for cast in (int, float):
            try:
                parsed[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            parsed[key] = value
    return expand_preset(parsed)


def _int_at_least(minimum: int, what: str):
    """An argparse type for whole numbers of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} {what}")
        return value

    return parse


_positive_int = _int_at_least(1, "is not at least 1")
"""Counts that must be at least 1 (``--limit``, ``--batch-size``, ``--ray-cpus``)."""
_non_negative_int = _int_at_least(0, "is negative")
"""Counts that may be 0 (``--ray-retries``)."""


def _non_negative_float(text: str) -> float:
    """argparse type for resource shares (``--ray-gpus 0.5``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number of 0 or more")
    return value


def _parse_seeds(spec: str) -> list[int]:
    """``--seeds 0,1,2`` -> ``[0, 1, 2]`` (order kept, duplicates refused)."""
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise BenchError(
            f"--seeds {spec!r} is not a list of distinct non-negative integers",
            "write e.g. --seeds 0,1,2",
        )
    return seeds


def _explainer_names(spec: str, registry: Registry) -> list[str]:
    """``all``, a group (an explainer's ``family``, ``paper`` or ``attribution``, or one
    of its ``groups``, such as ``quick``; each with the reference rows), explainer
    names, or a comma-separated mix, each name once.
    ``all`` and groups list contenders first and references last."""
    names = registry.names("explainer")

    def groups_of(name: str) -> set[str]:
        cls = registry.explainer(name)
        return ({cls.family} | set(cls.groups)) - {""}

    families = set().union(*(groups_of(n) for n in names))
    items = [n.strip() for n in spec.split(",") if n.strip()]
    chosen: list[str] = []
    for item in items:
        if item == "all":
            chosen += names
        elif item in families:
            chosen += [n for n in names if item in groups_of(n)]
            chosen += [n for n in names if registry.explainer(n).reference]
        elif item not in names and families:
            raise BenchError(
                f"unknown explainer {item!r}{did_you_mean(item, [*names, *families, 'all'])}, "
                f"nor a group (explainers: {', '.join(names)}; "
                f"groups: all, {', '.join(sorted(families))})",
                "run `l2i-bench plugins` to list plugins and their groups",
            )
        else:
            registry.get("explainer", item)  # raises with the list of known names
            chosen.append(item)
    unique = list(dict.fromkeys(chosen))
    if any(item == "all" or item in families for item in items):
        contenders = [n for n in unique if not registry.explainer(n).reference]
        return contenders + [n for n in unique if registry.explainer(n).reference]
    return unique


def cmd_run(args: argparse.Namespace) -> int:
    from l2i_bench.runner import RunConfig, run_benchmark

    registry = load_registry()
    seeds = _parse_seeds(args.seeds) if args.seeds else [args.seed]
    config = RunConfig(
        dataset=args.dataset,
        explainers=_explainer_names(args.explainers, registry),
        folds=[f.strip() for f in args.folds.split(",")] if args.folds else None,
        data_dir=args.data_dir,
        device=args.device,
        seed=seeds[0],
        seeds=seeds,
        threads=args.threads,
        limit=args.limit,
        out=args.out,
        cache_dir=args.cache_dir,
        force=args.force,
        options=_parse_options(args.option),
        classifier=_parse_classifier(args.classifier),
        batch_size=args.batch_size,
        listen=args.listen,
        show_progress=not args.quiet,
        cell_timeout=args.cell_timeout,
    )
    if args.listen_only:
        return _listen_only(args, config, registry)
    executor = None
    if args.executor == "ray":
        from l2i_bench.ray_executor import RayOptions

        executor = RayOptions(
            address=args.ray_address,
            cpus=args.ray_cpus,
            gpus=args.ray_gpus,
            retries=args.ray_retries,
        )
    elif args.ray_address is not None:
        raise BenchError("--ray-address given without --executor ray", "add --executor ray")
    if args.executor == "processes":
        from l2i_bench.process_executor import ProcessOptions

        executor = ProcessOptions(workers=args.workers)
    elif args.workers is not None:
        raise BenchError("--workers given without --executor processes", "add --executor processes")
    try:
        summary = run_benchmark(config, registry, executor)
        returned = time.perf_counter()
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished cells are kept and published; run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 130
    failed = (
        f", {len(summary.failed)} FAILED (the others are published):\n"
        + "\n".join(f"  fold {f} seed {s} {name}: {error}" for f, s, name, error in summary.failed)
        if summary.failed
        else "."
    )
    published = Path("results") / config.folder
    if (
        Path(args.out).resolve() != Path("results").resolve()
        and (published / "leaderboard.csv").is_file()
    ):
        failed += (
            f"\nThe repository's published {config.folder} results in {published} are "
            f"untouched; compare yours with them: l2i-bench verify {published} --rerun "
            f"{args.out}"
        )
    print(
        f"\n{len(summary.computed)} cell(s) computed, {len(summary.skipped)} reused{failed}\n"
        f"leaderboard: {summary.leaderboard}\nlong results: {summary.results}\n"
        f"manifest:    {summary.manifest}"
    )
    from l2i_bench.profiling import profile_table, record_report
    from l2i_bench.report import build_report, read_board, terminal_table

    print("\n" + terminal_table(read_board(summary.leaderboard)))
    if not args.no_report:
        started = time.perf_counter()
        index = build_report(summary.leaderboard.parent, registry=registry)
        manifest = record_report(summary.manifest, time.perf_counter() - started, returned)
        print(f"\nreport:      {index}  (open it in a browser; all columns and audio there)")
    else:
        manifest = json.loads(summary.manifest.read_text())
    if args.profile:
        print("\n" + profile_table(manifest["profile"]))
    return 1 if summary.failed else 0


def _listen_only(args: argparse.Namespace, config, registry) -> int:
    """``run --listen-only``: the grid's listening examples, no scores."""
    from l2i_bench.relisten import write_listening_only

    if config.listen < 1:
        raise BenchError(
            "--listen-only with --listen 0 has nothing to write",
            "give --listen N (interpretations per cell, e.g. 2)",
        )
    if args.executor != "sequential" or args.force:
        raise BenchError(
            "--listen-only runs in this process and computes no cells",
            "leave out --executor and --force",
        )
    folder = Path(config.out) / config.folder
    try:
        written = write_listening_only(config, registry)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the examples written so far are in {folder / 'listen'}; run "
            "the same command again to write them all",
            file=sys.stderr,
        )
        return 130
    print(
        f"\n{len(written)} interpretation(s) written under {folder / 'listen'}; rebuild the "
        f"report to hear them: l2i-bench report {folder}"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from l2i_bench.report import build_report

    registry = load_registry()
    index = build_report(args.results, registry=registry, clips_per_fold=args.clips)
    size = sum(p.stat().st_size for p in index.parent.rglob("*") if p.is_file())
    print(f"report: {index} ({size / 1e6:.1f} MB); open it in a browser")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = load_registry()
    if args.options:
        return _print_options(registry, args.options)
    entries = [r.to_dict() for r in registry.all_registered()]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    width = max((len(e["name"]) for e in entries), default=4)
    groups = max((len(e["group"]) for e in entries), default=0)
    for e in entries:
        taps = ""
        if e["kind"] == "classifier":
            taps = (
                f" [taps {', '.join(e['taps'])}; late {', '.join(e['late_taps'])}"
                + ("" if e["trainable"] else "; load-only")
                + "]"
            )
        print(
            f"{e['kind']:<10} {e['name']:<{width}}  {e['group']:<{groups}}  {e['distribution']} "
            f"{e['distribution_version']}  ({e['plugin']})  {e['description']}{taps}"
        )
    from l2i_bench.classifier import CLASSIFIER_PRESETS, preset_text

    for preset in CLASSIFIER_PRESETS.values():
        print(
            f"{'preset':<10} {preset.name:<{width}}  {'':<{groups}}  --classifier "
            f"preset={preset.name}: {preset_text(preset)}; {preset.description}"
        )
    return 0


def _print_options(registry: Registry, name: str) -> int:
    """One explainer's options as a table: name, default (per dataset where it
    differs), meaning; then its cost per clip on each dataset."""
    from l2i_bench.options import cost_per_clip, option_rows, per_dataset

    cls = registry.explainer(name)
    datasets = [registry.dataset(d) for d in registry.names("dataset")]
    print(f"{cls.name}: {cls.description}")
    rows = option_rows(cls, datasets)
    if not rows:
        print("  no declared options")
    width = max((len(r.name) for r in rows), default=0)
    dwidth = max((len(r.default) for r in rows), default=0)
    for row in rows:
        print(f"  {row.name:<{width}}  {row.default:<{dwidth}}  {row.help}")
    if cls.passes:
        print(f"cost per clip: {per_dataset({d.name: cost_per_clip(cls, d) for d in datasets})}")
    print(f"set one with --option {cls.name}.NAME=VALUE")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    registry = load_registry()
    cls = registry.dataset(args.dataset)
    target = args.data_dir or cls.default_data_dir()
    download = getattr(cls, "download", None)
    if download is None:
        raise BenchError(
            f"dataset {args.dataset!r} has no downloader",
            "it is generated or must be placed by hand; see README",
        )
    download(Path(target))
    print(f"{args.dataset} ready in {target}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from l2i_bench.cache import folder_lock
    from l2i_bench.report import read_board, terminal_table
    from l2i_bench.results import publish, read_cells
    from l2i_bench.workspace import split_results_folder

    dataset, classifier = split_results_folder(args.dataset)
    registry = load_registry()
    registry.dataset(dataset)  # an unknown name: the list and the closest one
    registry.classifier(classifier)
    root = Path(args.out) / args.dataset
    if not (root / "cells").is_dir() or not read_cells(args.out, args.dataset):
        raise BenchError(
            f"no cells to publish under {root / 'cells'}",
            f"run `l2i-bench run --dataset {args.dataset}` first, or pass the --out folder "
            "that holds them (the published results: --out results)",
        )
    with folder_lock(root, message=f"waiting for the run that holds {root} ({{holder}}) to finish"):
        long_path, board_path = publish(args.out, args.dataset)
    print(f"rebuilt {board_path}, {long_path} and the files beside them")
    print("\n" + terminal_table(read_board(board_path)))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from l2i_bench.verify import FAILING, VerifyRequest, summary_lines, verify

    request = VerifyRequest(
        results=args.results,
        out=args.out,
        cache_dir=args.cache_dir,
        data_dir=args.data_dir,
        folds=[f.strip() for f in args.folds.split(",")] if args.folds else None,
        seeds=_parse_seeds(args.seeds) if args.seeds else None,
        limit=args.limit,
        device=args.device,
        show_progress=not args.quiet,
        rerun=args.rerun,
        published_weights=args.published_weights,
    )
    table, path = verify(request, load_registry())
    for line in summary_lines(table, published=args.results, rerun=path.parent):
        print(line)
    print(f"comparison: {path}")
    return 1 if table["status"].isin(FAILING).any() else 0


def cmd_explain(args: argparse.Namespace) -> int:
    from l2i_bench.explain_file import ExplainRequest, explain_file

    registry = load_registry()
    request = ExplainRequest(
        audio=args.audio,
        explainer=args.explainer,
        dataset=args.dataset,
        fold=args.fold,
        class_name=args.class_name,
        data_dir=args.data_dir,
        out=args.out,
        device=args.device,
        seed=args.seed,
        cache_dir=args.cache_dir,
        options=_parse_options(args.option),
        classifier=_parse_classifier(args.classifier),
        threads=args.threads,
        show_progress=not args.quiet,
    )
    result = explain_file(request, registry)
    for line in result.summary:
        print(line)
    print("written:   " + "\n           ".join(str(p) for p in result.paths))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    from l2i_bench.classifier import CLASSIFIER_PRESETS, preset_text

    parser.add_argument("--dataset", required=True, help="dataset plugin name (see `plugins`)")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data folder (default: datasets/NAME)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds data splits, classifier, explainers and metrics (default: 0)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(".cache"),
        help="trained classifiers, fitted explainers and decoded audio (default: .cache/)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="EXPLAINER.KEY=VALUE",
        help="an explainer setting, repeatable, e.g. --option l2i.epochs=5; "
        "`l2i-bench plugins --options NAME` lists them with their defaults",
    )
    parser.add_argument(
        "--classifier",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="classifier settings, repeatable: name, width, epochs, lr, patience, "
        "pretrained, or preset=NAME ("
        + "; ".join(f"{p.name}: {preset_text(p)}" for p in CLASSIFIER_PRESETS.values())
        + "; keys given beside a preset override it)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2i-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"l2i-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run explainers x folds on a dataset and publish CSVs")
    run.add_argument(
        "--explainers",
        default="all",
        help="'all', a group of explainers that share a family ('paper': the methods the "
        "L2I paper compares), or comma-separated names; groups bring the reference rows",
    )
    run.add_argument(
        "--folds",
        default=None,
        help="comma-separated folds (default: the dataset's own choice, every fold present "
        "except on synth, which runs fold 1; `--folds 1,2,3,4,5` for all five)",
    )
    run.add_argument(
        "--limit", type=_positive_int, default=None, help="at most N test clips per fold"
    )
    run.add_argument(
        "--out",
        type=Path,
        default=LOCAL_OUT,
        help=f"where results go, as OUT/DATASET/ (default: {LOCAL_OUT}/, git-ignored; the "
        "repository's published numbers live in results/ and change only with --out results)",
    )
    run.add_argument("--force", action="store_true", help="recompute finished cells")
    run.add_argument(
        "--batch-size",
        type=_positive_int,
        default=16,
        help="clips explained and scored per batch (memory, not results)",
    )
    run.add_argument(
        "--listen",
        type=int,
        default=2,
        help="interpretations per cell written as audio (first seed only)",
    )
    run.add_argument(
        "--listen-only",
        action="store_true",
        help="score nothing: write the --listen examples of every cell of the grid "
        "(explainers fitted or loaded from the cache, only the heard clips explained), "
        "e.g. for cells computed by earlier runs; then rebuild the report",
    )
    run.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds; the grid runs once per seed (overrides --seed)",
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: the cores torch sees); fixed and recorded, "
        "since the thread count changes floating-point results",
    )
    run.add_argument(
        "--cell-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail a cell that runs longer than this (default: no limit); the others go on",
    )
    run.add_argument(
        "--profile",
        action="store_true",
        help="print the seconds of each stage (audio, classifier, fit, explain, each "
        "metric, publishing, report) at the end; the manifest keeps them always",
    )
    run.add_argument(
        "--no-report",
        action="store_true",
        help="do not build the web report (results/<dataset>/report/) at the end",
    )
    scale = run.add_argument_group(
        "scale-out",
        "run folds and cells side by side: on local worker processes, or as Ray tasks "
        "(needs the extra: pip install 'l2i-bench[ray]')",
    )
    scale.add_argument(
        "--executor",
        choices=("sequential", "processes", "ray"),
        default="sequential",
        help="sequential: every cell in this process (default); processes: folds and "
        "cells on a pool of local worker processes (one GPU or many cores); ray: as Ray "
        "tasks over processes, machines and GPUs; the same numbers at the same --threads",
    )
    scale.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="worker processes of --executor processes (default: the usable cores "
        "divided by --threads, which defaults to 1 per worker)",
    )
    scale.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="join an existing Ray cluster ('auto', or HOST:PORT); default: start a "
        "local Ray instance on this machine",
    )
    scale.add_argument(
        "--ray-cpus",
        type=_positive_int,
        default=1,
        metavar="N",
        help="CPUs per task, also its torch threads unless --threads (default: 1)",
    )
    scale.add_argument(
        "--ray-gpus",
        type=_non_negative_float,
        default=0.0,
        metavar="G",
        help="GPUs per task, fractions allowed (0.5: two tasks share a GPU; default: 0)",
    )
    scale.add_argument(
        "--ray-retries",
        type=_non_negative_int,
        default=2,
        metavar="N",
        help="times a task is retried when its worker process dies (default: 2)",
    )
    _common(run)
    run.set_defaults(func=cmd_run)

    report = sub.add_parser(
        "report", help="build the web report of a results folder (leaderboard, figures, audio)"
    )
    report.add_argument("results", type=Path, help="a published folder, e.g. results/synth")
    report.add_argument(
        "--clips", type=int, default=2, help="test clips per fold in the listening gallery"
    )
    report.set_defaults(func=cmd_report)

    plugins = sub.add_parser("plugins", help="list installed plugins")
    plugins.add_argument("--json", action="store_true", help="as JSON, with every field")
    plugins.add_argument(
        "--options",
        metavar="EXPLAINER",
        default=None,
        help="list one explainer's options: name, default (per dataset where it differs), "
        "meaning, and its cost per clip",
    )
    plugins.set_defaults(func=cmd_plugins)

    download = sub.add_parser("download", help="fetch a dataset's official archive")
    download.add_argument("dataset")
    download.add_argument("--data-dir", type=Path, default=None)
    download.set_defaults(func=cmd_download)

    publish = sub.add_parser("publish", help="rebuild the CSVs from the cell files")
    publish.add_argument(
        "--dataset",
        required=True,
        help="dataset plugin name, or the results folder of another classifier on it "
        "(DATASET--CLASSIFIER, e.g. synth--cnn14)",
    )
    publish.add_argument(
        "--out",
        type=Path,
        default=LOCAL_OUT,
        help=f"the folder that holds DATASET/cells (default: {LOCAL_OUT}; the published "
        "results: --out results)",
    )
    publish.set_defaults(func=cmd_publish)

    check = sub.add_parser(
        "verify",
        help="rerun a results folder's configuration; is every column inside its interval?",
    )
    check.add_argument("results", type=Path, help="a published folder, e.g. results/synth")
    check.add_argument("--folds", default=None, help="only these folds (default: published)")
    check.add_argument("--seeds", default=None, help="only these seeds (default: published)")
    check.add_argument(
        "--limit", type=_positive_int, default=None, help="at most N test clips per fold"
    )
    check.add_argument(
        "--out", type=Path, default=Path("verify"), help="where the rerun goes (default: verify/)"
    )
    check.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="reuse trained models from here (default: a fresh cache, everything retrained)",
    )
    check.add_argument(
        "--published-weights",
        action="store_true",
        help="explain the classifiers the folder publishes (classifiers/) instead of "
        "retraining them: checks the explainers and metrics on the same weights, which "
        "another machine's retrain does not give",
    )
    check.add_argument(
        "--data-dir", type=Path, default=None, help="data folder (default: datasets/NAME)"
    )
    check.add_argument(
        "--rerun",
        type=Path,
        default=None,
        help="compare this finished rerun folder (verify/<dataset>-<stamp>) instead of rerunning",
    )
    check.add_argument("--device", default="auto")
    check.add_argument("--quiet", action="store_true", help="no progress bars")
    check.set_defaults(func=cmd_verify)

    explain = sub.add_parser("explain", help="explain one audio file of your own")
    explain.add_argument("audio", type=Path, help="a sound file (wav, flac, ogg, mp3...)")
    explain.add_argument("--explainer", required=True, help="explainer plugin name")
    explain.add_argument("--fold", default=None, help="whose classifier to use (default: first)")
    explain.add_argument(
        "--class", dest="class_name", default=None, help="class to explain (default: predicted)"
    )
    explain.add_argument(
        "--out",
        type=Path,
        default=Path("explanations"),
        help="folder for the interpretation's audio and picture (default: explanations/)",
    )
    explain.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch CPU threads (default: the cores torch sees); part of the classifier's "
        "key on a CPU, so give the --threads of the run whose classifier you want reused",
    )
    _common(explain)
    explain.set_defaults(func=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        # A piped stdout is block-buffered: flush here, inside the handler, so a reader
        # that left early is met below rather than at the interpreter's final flush.
        sys.stdout.flush()
        return code
    except BenchError as err:
        print(f"error: {err.problem}", file=sys.stderr)
        if err.fix:
            print(f"  fix: {err.fix}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`l2i-bench plugins | head`): stop quietly, and point
        # stdout at /dev/null so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
