"""The ``effbench`` command: run, env, report, compare, plan, fit, baseline."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from bench_lib import __version__

# subcommand -> module exposing add_arguments(parser) and main(args) -> int
DELEGATED = {
    "report": ("bench_lib.report.cli", "render a report (HTML, Markdown, PNG, CSV) from run files"),
    "compare": ("bench_lib.gate.compare", "noise-aware regression verdict: baseline run(s) vs a candidate (exit 1 on regression)"),
    "plan": ("bench_lib.planner.plan", "predict fine-tune memory and which GPUs fit it"),
    "fit": ("bench_lib.planner.fit", "find the largest sequence length or batch that fits a memory budget"),
    "baseline": ("bench_lib.gate.baseline", "promote same-code runs to the per-GPU baseline folder, deliberately"),
    "ab": ("bench_lib.gate.ab", "two environments (venvs or git refs) interleaved in one job: paired verdict, exit 1 on regression"),
    "sensitivity": ("bench_lib.gate.sensitivity", "false-alarm rate and smallest caught slowdown on same-code runs"),
}

# modules whose import registers the registries that `effbench env` lists
SUITE_MODULES = ("bench_lib.suites.calibration", "bench_lib.suites.attention", "bench_lib.suites.quant", "bench_lib.suites.finetune")


# the same as bench_lib.harness.device.DEVICE_CHOICES, spelled here so `effbench compare` etc. need not import torch
DEVICE_CHOICES = ("auto", "cpu", "cuda")


RUN_EXITS = """exit status: 0 every case ok, unsupported or oom; 1 a case ended error, timeout or crashed, or the disk
filled up (free space, then --resume); 2 bad arguments, or an output or journal that cannot be used (nothing
is run or overwritten); 130 interrupted (SIGINT/SIGTERM: continue with --resume)."""


def _add_run(sub):
    from bench_lib.harness import profiles, resume

    p = sub.add_parser("run", help="run the suite supervised (crash-safe, resumable), then render a report",
                       epilog=RUN_EXITS)
    p.add_argument("--profile", default="quick", choices=profiles.PROFILE_CHOICES)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--output", help="run file PATH.json (journal PATH.jsonl beside it); default results/<machine>/<time>.json")
    p.add_argument("--resume", metavar="PATH.json", help="continue an interrupted run without repeating finished cases")
    p.add_argument("--allow-different-machine", action="store_true",
                   help="with --resume: continue a journal started on other hardware (its cases keep that machine)")
    p.add_argument("--results-dir", default="results", help="where default outputs go")
    p.add_argument("--benchmarks", nargs="+", help="benchmark paths (default: benchmarks)")
    p.add_argument("--case-timeout", type=resume.case_timeout_s, default=None, metavar="S",
                   help="per-case limit in seconds, above 0 (default: the profile's)")
    p.add_argument("--model", default=None, help="a real checkpoint (local path or hub id) for quality numbers")
    p.add_argument("--no-report", action="store_true", help="do not render a report at the end")
    p.add_argument("--report-dir", default=None,
                   help="folder to put the report's folder <run name>/ in (default: beside the run file given by "
                        "--output or --resume, as <run name>-report/; reports/<run name>/ for the default output)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: extra pytest arguments, e.g. -- -k attention")


def _run(args) -> int:
    from bench_lib.harness import supervisor

    if args.pytest_args and args.pytest_args[0] == "--":
        args.pytest_args = args.pytest_args[1:]
    from bench_lib.harness import shard

    info = shard.torchrun()
    if info is not None:  # under torchrun: this rank's share, merged by rank 0 (bench_lib/harness/shard.py)
        rc, output = shard.run_sharded(args, info)
        if output is not None and not args.no_report:
            render_report(output, report_dir(args, output))
        return rc
    rc, output = supervisor.run_from_args(args)
    if output is not None and not args.no_report:
        render_report(output, report_dir(args, output))
    return rc


def report_dir(args, output: Path) -> Path:
    """Where ``effbench run`` renders its report: --report-dir, else beside a run file the user named."""
    if args.report_dir:
        return Path(args.report_dir) / output.stem
    if args.output or args.resume:
        return output.parent / f"{output.stem}-report"
    return Path("reports") / output.stem  # the default run file lives under results/: its report does not


def render_report(run_json: Path, out_dir: Path) -> None:
    try:
        from bench_lib.report import cli as report_cli
    except ImportError as exc:
        print(f"effbench run: report not rendered ({exc}); install effbench[report]", file=sys.stderr)
        return
    try:
        report_cli.render([str(run_json)], out_dir)
        print(f"report: {out_dir / 'index.html'}")
    except Exception as exc:  # the run is safe on disk; a report failure must not hide it
        print(f"effbench run: report failed ({type(exc).__name__}: {exc}); the run file is intact", file=sys.stderr)


def _add_env(sub):
    p = sub.add_parser("env", help="this machine's record, and what can run here and why not")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--format", default="text", choices=("text", "json"))


def _env(args) -> int:
    from bench_lib.harness import device, env, registry

    try:
        dev = device.resolve(args.device)
    except (ValueError, RuntimeError) as exc:  # --device cuda on a machine without one: as `run` says it
        print(f"effbench env: {exc}", file=sys.stderr)
        return 2
    missing = []
    for name in SUITE_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append(f"{name}: {exc}")
    rec = env.record(dev, profile=None)
    support = {kind: dict(reg.support_table(dev)) for kind, reg in registry.ALL.items()}
    if args.format == "json":
        print(json.dumps({"environment": rec, "support": support, "not_loaded": missing}, indent=1, default=str))
        return 0
    print(json.dumps(rec, indent=1, default=str))
    for kind, table in support.items():
        print(f"\n{kind}:")
        for id_, reason in table.items():
            print(f"  {id_:<16} {'ok' if reason is None else 'no: ' + reason}")
    for line in missing:
        print(f"\nnot loaded: {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="effbench", description="Measure what LLM efficiency techniques buy on this machine.")
    parser.add_argument("--version", action="version", version=f"effbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_env(sub)
    for name, (module, help_text) in DELEGATED.items():
        p = sub.add_parser(name, help=help_text)
        try:
            importlib.import_module(module).add_arguments(p)
        except ImportError as exc:
            p.set_defaults(_unavailable=f"effbench {name} is not available: {exc}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_unavailable", None):
        print(args._unavailable, file=sys.stderr)
        return 2
    if args.command == "run":
        return _run(args)
    if args.command == "env":
        return _env(args)
    return int(importlib.import_module(DELEGATED[args.command][0]).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
