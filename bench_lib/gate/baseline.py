"""``effbench baseline``: the nightly gate's reference runs, one per GPU model, changed only on purpose.

A baseline is a folder ``results/baselines/<slug>/`` of ordinary run files, copied as they are, where the
slug names the GPU model (``nvidia-h200`` from "NVIDIA H200"), or for CPU runs the CPU and its usable cores
(``cpu-intel-xeon-2c``). Several runs of the same code let compare measure each case's run-to-run drift
(:mod:`bench_lib.gate.drift`); one run is allowed, and then compare cannot tell drift from change.

- ``effbench baseline path RUN.json``: print the baseline folder this run is judged against.
- ``effbench baseline promote RUN.json [RUN.json ...]``: make these runs their machine's baseline,
  replacing the folder's runs. Refused for runs that cannot serve (no environment record, not the ``full``
  profile, cases that errored, timed out or crashed beyond ``--max-failed N`` (those tolerated are listed),
  measured cases without raw samples, runs of different code or machines) unless ``--force``; what it
  replaces is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from bench_lib.harness.runfile import BadInput, Run, load_run

DEFAULT_DIR = Path("results") / "baselines"
GATE_PROFILE = "full"


# A baseline folder's name comes from the run file. A value read from a file becomes a path component only
# when it matches this pattern: lower-case letters, digits and single dashes, no dots, no separators, so
# ``../../victim``, ``/etc`` or an empty name can never move the folder out of ``--dir``.
SLUG_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_SLUG_LENGTH = 100


def slug(text: str) -> str:
    """Lower-case words joined by '-': the rule of ``env.slug``, repeated so this module needs no torch."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _checked_slug(run: Run, field: str, value) -> str:
    """``value`` as a folder name, or :class:`BadInput` naming the field: it must match :data:`SLUG_PATTERN`."""
    if not isinstance(value, str) or len(value) > MAX_SLUG_LENGTH or not SLUG_PATTERN.fullmatch(value):
        raise BadInput(f"{run.path}: {field} {str(value)[:80]!r} cannot name a baseline folder: it must be "
                       f"lower-case letters, digits and single dashes (at most {MAX_SLUG_LENGTH} characters), "
                       "as effbench writes it; is the run file edited or corrupt?")
    return value


def baseline_slug(run: Run) -> str:
    """``nvidia-h200`` for a CUDA run (GPU model only: one baseline per model), ``cpu-...`` for a CPU run."""
    env = run.environment
    if not env:
        raise BadInput(f"{run.path} has no effbench environment record (machine_info['effbench']): "
                       "only effbench runs can be baselines")
    gpu = env.get("gpu") if isinstance(env.get("gpu"), dict) else {}
    if env.get("device") == "cuda" and isinstance(gpu.get("name"), str) and gpu["name"]:
        return _checked_slug(run, "gpu.name", slug(gpu["name"]))
    if env.get("device") == "cuda":
        raise BadInput(f"{run.path}: a CUDA run without a GPU name in its environment record")
    if env.get("machine_slug") is not None:
        return _checked_slug(run, "machine_slug", env["machine_slug"])
    cpu = env.get("cpu") if isinstance(env.get("cpu"), dict) else {}
    model = cpu.get("model") if isinstance(cpu.get("model"), str) else "unknown"
    return _checked_slug(run, "cpu.model", "cpu-" + (slug(model) or "unknown"))


def baseline_path(run: Run, directory: Path = DEFAULT_DIR) -> Path:
    """The baseline folder of this run's machine (it may not exist yet): always directly inside ``directory``."""
    target = Path(directory) / baseline_slug(run)
    if target.resolve().parent != Path(directory).resolve():  # the slug check makes this impossible; keep it so
        raise BadInput(f"{run.path}: baseline folder {target} would not be inside {directory}")
    return target


def failed_cases(run: Run) -> list[str]:
    """Cases of ``run`` that errored, timed out or crashed."""
    return sorted(k for k, c in (run.by_id or {}).items() if c.outcome in ("error", "timeout", "crashed"))


def promotion_problems(run: Run, max_failed: int = 0) -> list[str]:
    """Why this run should not become a baseline (empty: fit to promote). Up to ``max_failed`` failed cases
    are tolerated (a full run has ~700 cases; one flaky kernel must not block the rest)."""
    problems = []
    profile = run.environment.get("profile")
    if profile != GATE_PROFILE:
        problems.append(f"profile is {profile!r}; the nightly gate runs {GATE_PROFILE!r}, so its cases would not match")
    cases = run.by_id or {}
    failed = failed_cases(run)
    if len(failed) > max_failed:
        shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        problems.append(f"{len(failed)} case(s) failed ({shown}): a baseline with failures hides regressions there"
                        + (f" (more than --max-failed {max_failed})" if max_failed else ""))
    no_samples = sorted(k for k, c in cases.items() if c.outcome == "ok" and not c.samples_s)
    if no_samples:
        problems.append(f"{len(no_samples)} measured case(s) have no raw samples ({no_samples[0]}, ...): "
                        "compare could not test them")
    if not any(c.outcome == "ok" for c in cases.values()):
        problems.append("no case was measured")
    return problems


def set_problems(runs: list[Run]) -> list[str]:
    """Why these runs should not form one baseline together (empty: they can)."""
    problems = []
    slugs = {baseline_slug(r) for r in runs}
    if len(slugs) > 1:
        problems.append(f"the runs come from different machines ({', '.join(sorted(slugs))})")
    commits = {((r.environment.get("git") or {}).get("commit"), bool((r.environment.get("git") or {}).get("dirty")))
               for r in runs}
    if len(commits) > 1:
        shown = ", ".join(f"{c[:10] if c else 'unknown'}{' (dirty)' if d else ''}" for c, d in sorted(commits, key=str))
        problems.append(f"the runs are of different code ({shown}): their spread would mix drift with changes")
    return problems


@dataclass(frozen=True)
class Promotion:
    """target: the baseline folder; replaced: the run files it held before; overridden: problems --force let
    through (empty without --force, which refuses them)."""

    target: Path
    replaced: list[str]
    overridden: list[str]


def promote(run_paths: list[str], directory: Path = DEFAULT_DIR, force: bool = False,
            max_failed: int = 0) -> Promotion:
    """Replace the machine's baseline folder by copies of ``run_paths``; readers see the old set or the new."""
    runs = [load_run(p) for p in run_paths]
    target = baseline_path(runs[0], directory)
    problems = [(p, problem) for p, r in zip(run_paths, runs, strict=True)
                for problem in promotion_problems(r, max_failed)]
    problems += [(None, problem) for problem in set_problems(runs)]
    if problems and not force:
        shown = [f"{p}: {problem}" if p else problem for p, problem in problems]
        raise BadInput("not promoting:\n  " + "\n  ".join(shown) + "\n(--force to promote anyway)")
    names = [Path(p).name for p in run_paths]
    if len(set(names)) != len(names):
        raise BadInput("two runs have the same file name; a baseline folder keeps each run under its own name")
    replaced = sorted(p.name for p in target.glob("*.json")) if target.is_dir() else []
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.new-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for p, name in zip(run_paths, names, strict=True):
        shutil.copyfile(p, staging / name)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return Promotion(target, replaced, problems)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="baseline_command", required=True)
    p = sub.add_parser("promote", help="make RUN(s) their GPU's baseline (a deliberate act: commit the result)")
    p.add_argument("runs", nargs="+", metavar="run",
                   help="run files (.json) of the full profile, same code and machine; several (3 or more) let "
                        "compare measure each case's run-to-run drift")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"baseline folder (default {DEFAULT_DIR})")
    p.add_argument("--force", action="store_true", help="promote even a run with failures or another profile")
    p.add_argument("--max-failed", type=int, default=0, metavar="N",
                   help="tolerate up to N failed (error/timeout/crashed) cases per run; they are listed")
    p = sub.add_parser("path", help="print the baseline folder RUN is compared with (it may not exist yet)")
    p.add_argument("run", help="run file (.json)")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"baseline folder (default {DEFAULT_DIR})")


def main(args: argparse.Namespace) -> int:
    try:
        if args.baseline_command == "path":
            print(baseline_path(load_run(args.run), args.dir))
            return 0
        done = promote(args.runs, args.dir, args.force, args.max_failed)
    except BadInput as exc:
        print(f"effbench baseline: {exc}", file=sys.stderr)
        return 2
    for path, problem in done.overridden:
        print(f"effbench baseline: warning: {problem}" + (f" ({path})" if path else ""), file=sys.stderr)
    was = (f"replaced baseline {done.target} ({len(done.replaced)} run(s): {', '.join(done.replaced)})"
           if done.replaced else f"created baseline {done.target}")
    print(f"{was} with {len(args.runs)} run(s); commit it to make it the nightly reference")
    for path in args.runs:  # tolerated failures are recorded where the reviewer reads them
        for key in failed_cases(load_run(path)):
            print(f"failed case kept in the baseline: {key} ({path})")
    if len(args.runs) < 3:
        print("effbench baseline: note: with fewer than 3 runs compare can hardly measure run-to-run drift",
              file=sys.stderr)
    return 0
