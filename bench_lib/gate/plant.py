"""Plant a known change into a copy of a real run: how compare's tests and sensitivity check are made.

Each function takes a parsed run file (dict), returns an edited deep copy and leaves the input alone. A
case is named ``suite/id`` (effbench runs) or by its pytest-benchmark ``fullname`` (plain runs); every
place the run keeps that case is edited consistently: the top-level ``effbench.cases`` record, the
``benchmarks`` entry (``stats`` and ``extra_info``) and its raw samples.
"""

from __future__ import annotations

import copy
from typing import Any

# pytest-benchmark stats fields that are times (seconds) and scale with a slowdown; ``ops`` is 1/mean
_TIME_STATS = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr", "hd15iqr", "total")


def _matches(key: str, obj: dict[str, Any]) -> bool:
    return f"{obj.get('suite')}/{obj.get('id')}" == key or obj.get("fullname") == key


def _places(run: dict[str, Any], key: str):
    """(case records, benchmarks entries) holding ``key``; raises KeyError when the run has neither."""
    records = [r for r in (run.get("effbench") or {}).get("cases", []) if _matches(key, r)]
    entries = [b for b in run.get("benchmarks", []) if _matches(key, b) or _matches(key, b.get("extra_info") or {})]
    if not records and not entries:
        raise KeyError(f"case {key!r} is not in this run")
    return records, entries


def _scale_record_time(rec: dict[str, Any], factor: float) -> None:
    rec["samples_s"] = [s * factor for s in rec.get("samples_s") or []]
    for name, value in (rec.get("metrics") or {}).items():
        if name.endswith("_s") or name.endswith("_s_iqr") or name.endswith("_s_min"):
            rec["metrics"][name] = value * factor


def slow_down(run: dict[str, Any], key: str, factor: float) -> dict[str, Any]:
    """Every timed sample of case ``key`` multiplied by ``factor`` (1.2: a 20% slowdown)."""
    out = copy.deepcopy(run)
    records, entries = _places(out, key)
    for rec in records:
        _scale_record_time(rec, factor)
    for entry in entries:
        stats = entry.get("stats") or {}
        for name in _TIME_STATS:
            if isinstance(stats.get(name), (int, float)):
                stats[name] *= factor
        if stats.get("ops"):
            stats["ops"] /= factor
        if "data" in stats:
            stats["data"] = [s * factor for s in stats["data"]]
        if entry.get("extra_info"):
            _scale_record_time(entry["extra_info"], factor)
    return out


def grow_memory(run: dict[str, Any], key: str, factor: float) -> dict[str, Any]:
    """Every peak memory view of case ``key`` (and ``metrics.peak_bytes``) multiplied by ``factor``."""
    out = copy.deepcopy(run)
    records, entries = _places(out, key)
    scaled = set()  # a run built in memory may share one dict between a record and its entry: scale it once
    for rec in records + [e["extra_info"] for e in entries if e.get("extra_info")]:
        memory, metrics = rec.get("memory") or {}, rec.get("metrics") or {}
        if id(memory) not in scaled:
            scaled.add(id(memory))
            for view, value in memory.items():
                if "peak" in view and view.endswith("_bytes") and isinstance(value, (int, float)):
                    memory[view] = int(value * factor)
        if "peak_bytes" in metrics and id(metrics) not in scaled:
            scaled.add(id(metrics))
            metrics["peak_bytes"] = int(metrics["peak_bytes"] * factor)
    return out


def set_outcome(run: dict[str, Any], key: str, outcome: str, reason: str) -> dict[str, Any]:
    """Case ``key`` ends in ``outcome`` instead: its record loses its measurements, and a non-ok case leaves
    ``benchmarks`` (where only measured cases are), as the harness writes it."""
    out = copy.deepcopy(run)
    records, entries = _places(out, key)
    for rec in records:
        rec.update(outcome=outcome, reason=reason, samples_s=[], memory={}, metrics={})
    if outcome != "ok":
        out["benchmarks"] = [b for b in out["benchmarks"] if not any(b is e for e in entries)]
    return out
