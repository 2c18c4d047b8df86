"""The public results contract, checked: ``validate(run)`` lists what a run file gets wrong.

Used by the report loader, by ``effbench compare`` and by the smoke test environment
(``python -m bench_lib.harness.schema RUN.json``, which also flags keys the contract document does not list).
The contract's keys and their meanings are in :mod:`bench_lib.harness.contract` (docs/results-contract.md).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from bench_lib import SCHEMA_VERSION
from bench_lib.harness import contract
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


def undocumented_keys(run: Any) -> list[str]:
    """Keys of ``run`` that docs/results-contract.md does not list, in words (a run that breaks the
    contract's shape is :func:`validate`'s business; this only reads what is readable)."""
    if not isinstance(run, dict):
        return []
    block = run.get("effbench") if isinstance(run.get("effbench"), dict) else {}
    cases = [c for c in block.get("cases") or [] if isinstance(c, dict)]
    env = (run.get("machine_info") or {}).get("effbench") if isinstance(run.get("machine_info"), dict) else None
    found = {
        "top-level key": (set(run), contract.TOP_LEVEL),
        "effbench key": (set(block), contract.EFFBENCH_BLOCK),
        "environment key": (set(env) if isinstance(env, dict) else set(), contract.ENVIRONMENT),
        "record key": ({k for c in cases for k in c}, contract.RECORD),
        "metric": ({k for c in cases if isinstance(c.get("metrics"), dict) for k in c["metrics"]}, contract.METRICS),
        "memory view": ({k for c in cases if isinstance(c.get("memory"), dict) for k in c["memory"]},
                        contract.MEMORY_VIEWS),
    }
    metrics, _ = found["metric"]
    per_rank = {k for k in metrics if isinstance(k, str) and (m := _PER_RANK.fullmatch(k))
                and m.group(1) in contract.MEMORY_VIEWS}  # rank{R}_ / ws1_<memory view>
    found["metric"] = (metrics - per_rank, contract.METRICS)
    return [f"{what} {key!r} is not in the contract document (add it to bench_lib/harness/contract.py)"
            for what, (keys, documented) in found.items() for key in sorted(keys - set(documented), key=str)]


_PER_RANK = re.compile(r"(?:rank\d+|ws1)_(.+)")  # rank{R}_<memory view>, ws1_<memory view>


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    bad = 0
    for path in paths:
        try:
            with open(path) as f:
                run = json.load(f)
            problems = validate(run) + undocumented_keys(run)
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
