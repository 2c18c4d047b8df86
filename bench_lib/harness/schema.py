"""The public results contract, checked: ``validate(run)`` lists what a run file gets wrong.

Used by the report loader, by ``effbench compare`` and by the smoke test environment
(``python -m bench_lib.harness.schema RUN.json``). See DESIGN.md, "The results contract".
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench_lib import SCHEMA_VERSION
from bench_lib.harness.workload import OUTCOMES

RECORD_KEYS = ("id", "suite", "case", "outcome", "reason", "metrics", "memory")
ENV_KEYS = ("schema_version", "device", "machine_slug", "cpu", "gpu", "packages", "torch", "git")


def _record_problems(rec: Any, where: str) -> list[str]:
    if not isinstance(rec, dict):
        return [f"{where}: not an object"]
    problems = [f"{where}: missing {k!r}" for k in RECORD_KEYS if k not in rec]
    if rec.get("outcome") not in OUTCOMES:
        problems.append(f"{where}: outcome {rec.get('outcome')!r} is not one of {', '.join(OUTCOMES)}")
    if rec.get("outcome") not in ("ok", None) and not rec.get("reason"):
        problems.append(f"{where}: outcome {rec.get('outcome')} without a reason")
    for key in ("case", "metrics", "memory"):
        if key in rec and not isinstance(rec[key], dict):
            problems.append(f"{where}: {key!r} must be an object")
    timed = rec.get("suite") != "fit"  # a largest-that-fits search records search_s, not a timed callable
    if timed and rec.get("outcome") == "ok" and isinstance(rec.get("metrics"), dict) and "time_s" not in rec["metrics"]:
        problems.append(f"{where}: ok case without metrics.time_s")
    return problems


def validate(run: Any) -> list[str]:
    """Problems with ``run`` (a parsed run JSON), in words; empty when it follows the contract."""
    if not isinstance(run, dict):
        return ["top level is not a JSON object"]
    problems = [f"missing top-level {k!r}" for k in ("machine_info", "benchmarks", "effbench") if k not in run]
    env = run.get("machine_info", {}).get("effbench") if isinstance(run.get("machine_info"), dict) else None
    if env is None:
        problems.append("machine_info has no 'effbench' environment record")
    else:
        problems += [f"machine_info.effbench: missing {k!r}" for k in ENV_KEYS if k not in env]
    block = run.get("effbench")
    if isinstance(block, dict):
        version = block.get("schema_version")
        if version != SCHEMA_VERSION:
            problems.append(f"effbench.schema_version is {version!r}; this effbench reads {SCHEMA_VERSION}")
        cases = block.get("cases")
        if not isinstance(cases, list):
            problems.append("effbench.cases is not a list")
        else:
            for i, rec in enumerate(cases):
                problems += _record_problems(rec, f"effbench.cases[{i}] ({rec.get('id') if isinstance(rec, dict) else '?'})")
            keys = [(r.get("suite"), r.get("id")) for r in cases if isinstance(r, dict)]
            if len(keys) != len(set(keys)):
                problems.append("effbench.cases holds a case more than once")
    for i, entry in enumerate(run.get("benchmarks") or []):
        where = f"benchmarks[{i}] ({entry.get('name')})"
        extra = entry.get("extra_info")
        if not isinstance(extra, dict):
            problems.append(f"{where}: no extra_info")
            continue
        problems += [f"{where}: extra_info missing {k!r}" for k in ("suite", "case", "outcome", "metrics", "memory")
                     if k not in extra]
        if not (entry.get("stats") or {}).get("data"):
            problems.append(f"{where}: stats.data (raw samples) missing")
    return problems


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    bad = 0
    for path in paths:
        try:
            with open(path) as f:
                problems = validate(json.load(f))
        except (OSError, ValueError) as exc:
            problems = [f"unreadable: {exc}"]
        for p in problems:
            print(f"{path}: {p}")
        bad += bool(problems)
        if not problems:
            print(f"{path}: follows the effbench results contract (schema {SCHEMA_VERSION})")
    return 1 if bad or not paths else 0


if __name__ == "__main__":
    sys.exit(main())
