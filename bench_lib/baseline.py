"""``effbench baseline``: the nightly gate's reference runs, one per GPU model, changed only on purpose.

Baselines live in ``results/baselines/<slug>.json`` where the slug names the GPU model
(``nvidia-h200`` from "NVIDIA H200"), or for CPU runs the CPU and its usable cores
(``cpu-intel-xeon-2c``). A baseline is an ordinary run file, copied as it is.

- ``effbench baseline path RUN.json``: print the baseline file this run is judged against.
- ``effbench baseline promote RUN.json``: make this run its machine's baseline. Refused for runs that
  cannot serve as one (no environment record, not the ``full`` profile, cases that errored, timed out or
  crashed, measured cases without raw samples) unless ``--force``; what it replaces is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from bench_lib.runfile import BadInput, Run, load_run

DEFAULT_DIR = Path("results") / "baselines"
GATE_PROFILE = "full"


def slug(text: str) -> str:
    """Lower-case words joined by '-': the rule of ``env.slug``, repeated so this module needs no torch."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def baseline_slug(run: Run) -> str:
    """``nvidia-h200`` for a CUDA run (GPU model only: one baseline per model), ``cpu-...`` for a CPU run."""
    env = run.environment
    if not env:
        raise BadInput(f"{run.path} has no effbench environment record (machine_info['effbench']): "
                       "only effbench runs can be baselines")
    gpu = env.get("gpu") or {}
    if env.get("device") == "cuda" and gpu.get("name"):
        return slug(gpu["name"])
    if env.get("device") == "cuda":
        raise BadInput(f"{run.path}: a CUDA run without a GPU name in its environment record")
    return env.get("machine_slug") or "cpu-" + slug((env.get("cpu") or {}).get("model") or "unknown")


def baseline_path(run: Run, directory: Path = DEFAULT_DIR) -> Path:
    return Path(directory) / f"{baseline_slug(run)}.json"


def promotion_problems(run: Run) -> list[str]:
    """Why this run should not become a baseline (empty: fit to promote)."""
    problems = []
    profile = run.environment.get("profile")
    if profile != GATE_PROFILE:
        problems.append(f"profile is {profile!r}; the nightly gate runs {GATE_PROFILE!r}, so its cases would not match")
    cases = run.by_id or {}
    failed = sorted(k for k, c in cases.items() if c.outcome in ("error", "timeout", "crashed"))
    if failed:
        shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        problems.append(f"{len(failed)} case(s) failed ({shown}): a baseline with failures hides regressions there")
    no_samples = sorted(k for k, c in cases.items() if c.outcome == "ok" and not c.samples_s)
    if no_samples:
        problems.append(f"{len(no_samples)} measured case(s) have no raw samples ({no_samples[0]}, ...): "
                        "compare could not test them")
    if not any(c.outcome == "ok" for c in cases.values()):
        problems.append("no case was measured")
    return problems


def promote(run_path: str, directory: Path = DEFAULT_DIR, force: bool = False) -> Path:
    run = load_run(run_path)
    target = baseline_path(run, directory)
    problems = promotion_problems(run)
    if problems and not force:
        raise BadInput(f"not promoting {run_path}:\n  " + "\n  ".join(problems) + "\n(--force to promote anyway)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(run_path, tmp)
    os.replace(tmp, target)  # readers see the old baseline or the new one, never half of one
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="baseline_command", required=True)
    p = sub.add_parser("promote", help="make RUN its GPU's baseline (a deliberate act: commit the result)")
    p.add_argument("run", help="run file (.json) from the full profile")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"baseline folder (default {DEFAULT_DIR})")
    p.add_argument("--force", action="store_true", help="promote even a run with failures or another profile")
    p = sub.add_parser("path", help="print the baseline file RUN is compared with (it may not exist yet)")
    p.add_argument("run", help="run file (.json)")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"baseline folder (default {DEFAULT_DIR})")


def main(args: argparse.Namespace) -> int:
    try:
        if args.baseline_command == "path":
            print(baseline_path(load_run(args.run), args.dir))
            return 0
        target = baseline_path(load_run(args.run), args.dir)
        replaced = target.exists()
        if args.force:
            for problem in promotion_problems(load_run(args.run)):
                print(f"effbench baseline: warning: {problem}", file=sys.stderr)
        promote(args.run, args.dir, args.force)
    except BadInput as exc:
        print(f"effbench baseline: {exc}", file=sys.stderr)
        return 2
    print(f"{'replaced' if replaced else 'created'} baseline {target} from {args.run}; commit it to make it the "
          "nightly reference")
    return 0
