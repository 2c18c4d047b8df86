"""Reading run files for comparison: effbench runs, their journals, and plain pytest-benchmark JSON.

A run becomes a :class:`Run`: the machine record and one :class:`CaseRun` per case, keyed two ways:
``suite/id`` for effbench records (every outcome), and the pytest-benchmark ``fullname`` for every entry
of ``benchmarks`` (measured cases only). No pandas: the nightly gate must run with the core dependencies.

Every value the gate judges is checked here, once, as it is read: ids and outcomes are strings (an outcome one
of :data:`OUTCOMES`), raw samples and summary statistics finite numbers of seconds >= 0, memory peaks finite
byte counts >= 0. A file that breaks one of these is :class:`BadInput` naming the file, the case and the value
(``effbench compare`` exits 2): a negative time or a NaN sample is a broken file, never a speed-up or noise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_lib import SCHEMA_VERSION
from bench_lib.harness import journal
from bench_lib.harness.workload import OUTCOMES


class BadInput(Exception):
    """A file that cannot be compared; the message says which file and why."""


@dataclass(frozen=True)
class CaseRun:
    """What compare needs of one case in one run.

    samples_s: raw timed samples in seconds (empty when the file kept none).
    summary:   pytest-benchmark ``stats`` without ``data`` (median, mean, stddev, rounds, iqr; seconds).
    memory:    peak memory views in bytes, e.g. {"torch_peak_allocated_bytes": 1.2e9}.
    """

    key: str
    outcome: str = "ok"
    reason: str | None = None
    samples_s: tuple[float, ...] = ()
    summary: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    nodeid: str | None = None  # the pytest node id that reruns this case alone


@dataclass(frozen=True)
class Run:
    """by_id: ``suite/id`` -> case (None when the file has no effbench records); by_fullname: measured cases."""

    path: str
    machine_info: dict[str, Any]
    by_id: dict[str, CaseRun] | None
    by_fullname: dict[str, CaseRun]

    @property
    def environment(self) -> dict[str, Any]:
        """effbench's environment record (``machine_info["effbench"]``), or {} for plain pytest-benchmark."""
        env = self.machine_info.get("effbench")
        return env if isinstance(env, dict) else {}


def load_run(path: str | Path) -> Run:
    """Read a run file (``.json``) or an effbench journal (``.jsonl``); raise :class:`BadInput` with a reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        if path.suffix == ".jsonl":
            return _from_journal(path, text)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
        return parse_run(data, str(path))
    except RecursionError:  # json and the checks below recurse; a run file is a few levels deep
        raise BadInput(f"{path} is nested too deeply to be a run file (corrupt or hostile JSON)") from None


def parse_run(data: Any, path: str = "<run>") -> Run:
    """A run from an already parsed run file (pytest-benchmark JSON, with or without effbench keys)."""
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BadInput(f"{path} is not a pytest-benchmark run file: no 'benchmarks' list at the top level")
    by_fullname, by_id_ok = {}, {}
    for entry in data["benchmarks"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("fullname"), str):
            raise BadInput(f"{path}: a 'benchmarks' entry has no 'fullname' string")
        case = _from_benchmark(path, entry)
        by_fullname[entry["fullname"]] = case
        extra = entry.get("extra_info") if isinstance(entry.get("extra_info"), dict) else {}
        if isinstance(extra.get("suite"), str) and isinstance(extra.get("id"), str):
            by_id_ok[f"{extra['suite']}/{extra['id']}"] = case
    block = data.get("effbench") if isinstance(data.get("effbench"), dict) else {}
    _check_schema(path, block.get("schema_version"))
    by_id = by_id_ok or None
    records = block.get("cases")
    if isinstance(records, list):
        # the top-level records hold every outcome; raw samples come from them or from the benchmarks entry
        by_id = {}
        for rec in records:
            key = _record_key(path, rec)
            by_id[key] = _from_record(path, key, rec, fallback=by_id_ok.get(key))
    machine_info = data.get("machine_info") if isinstance(data.get("machine_info"), dict) else {}
    return Run(str(path), machine_info, by_id, by_fullname)


def _from_journal(path: Path, text: str) -> Run:
    try:
        header, records, _ = journal.parse(text)
    except ValueError as exc:
        raise BadInput(f"{path}: {exc}") from None
    if header is None:
        raise BadInput(f"{path} is not an effbench journal: it has no header record")
    _check_schema(path, header.get("schema_version"))
    by_id = {}
    for rec in records:
        key = _record_key(path, rec)
        by_id[key] = _from_record(path, key, rec)  # a resumed case appears again; the last record wins
    machine_info = header.get("machine_info") if isinstance(header.get("machine_info"), dict) else {}
    return Run(str(path), machine_info, by_id, {})


def _check_schema(path, version: Any) -> None:
    """Files from a newer effbench may mean something else by the same keys: refuse rather than guess."""
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise BadInput(f"{path} was written with results schema {version}; this effbench reads up to "
                       f"{SCHEMA_VERSION}: upgrade effbench to compare it")


def _record_key(path: Path | str, rec: Any) -> str:
    if not isinstance(rec, dict) or not isinstance(rec.get("suite"), str) or not isinstance(rec.get("id"), str):
        raise BadInput(f"{path}: a case record lacks a 'suite' or 'id' string")
    return f"{rec['suite']}/{rec['id']}"


def _invalid(path, key: str, what: str, value: Any, rule: str) -> BadInput:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return BadInput(f"{path}: case {key}: invalid value {shown} in {what}: {rule}; the file is corrupt or edited "
                    "(rerun the case, or remove the file from the comparison)")


def _amount(path, key: str, what: str, value: Any, unit: str) -> float:
    """``value`` as a finite float >= 0, or :class:`BadInput` (``unit`` says what it counts)."""
    rule = f"{unit} must be finite numbers >= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(path, key, what, value, rule)
    try:
        number = float(value)
    except OverflowError:  # an integer like 10**400
        raise _invalid(path, key, what, value, rule) from None
    if not math.isfinite(number) or number < 0:
        raise _invalid(path, key, what, value, rule)
    return number


def _samples(path, key: str, what: str, values: Any) -> tuple[float, ...]:
    if values is None:
        return ()
    if not isinstance(values, list):
        raise _invalid(path, key, what, values, "raw samples must be a list of seconds")
    return tuple(_amount(path, key, what, v, "times") for v in values)


def _outcome(path, key: str, rec: dict) -> tuple[str, str | None]:
    outcome, reason = rec.get("outcome", "ok"), rec.get("reason")
    if outcome not in OUTCOMES:
        raise _invalid(path, key, "outcome", outcome, f"an outcome is one of {', '.join(OUTCOMES)}")
    if reason is not None and not isinstance(reason, str):
        raise _invalid(path, key, "reason", reason, "a reason is a string")
    return outcome, reason


def _from_record(path, key: str, rec: dict, fallback: CaseRun | None = None) -> CaseRun:
    samples = _samples(path, key, "samples_s", rec.get("samples_s"))
    if not samples and fallback is not None:
        samples = fallback.samples_s
    outcome, reason = _outcome(path, key, rec)
    return CaseRun(
        key=key,
        outcome=outcome,
        reason=reason,
        samples_s=samples,
        summary=fallback.summary if fallback else {},
        memory=_peak_views(path, key, rec.get("memory")),
        nodeid=rec.get("nodeid") if isinstance(rec.get("nodeid"), str) else None,
    )


SUMMARY_STATS = ("median", "mean", "stddev", "rounds", "iqr")


def _from_benchmark(path, entry: dict) -> CaseRun:
    key = entry["fullname"]
    stats = entry.get("stats") if isinstance(entry.get("stats"), dict) else {}
    extra = entry.get("extra_info") if isinstance(entry.get("extra_info"), dict) else {}
    samples = _samples(path, key, "stats.data", stats.get("data"))
    summary = {k: _amount(path, key, f"stats.{k}", stats[k], "timing statistics")
               for k in SUMMARY_STATS if stats.get(k) is not None}
    return CaseRun(
        key=key,
        samples_s=samples,
        summary=summary,
        memory=_peak_views(path, key, extra.get("memory")),
        nodeid=key,
    )


def _peak_views(path, key: str, memory: Any) -> dict[str, float]:
    """The peak views of a record's ``memory`` (``*peak*_bytes``); the ``*_before_bytes`` baselines are dropped.
    A peak that is not a finite byte count >= 0 is :class:`BadInput`; an absent one (``None``) is absent."""
    if not isinstance(memory, dict):
        return {}
    return {
        k: _amount(path, key, f"memory.{k}", v, "byte counts")
        for k, v in memory.items()
        if "peak" in k and k.endswith("_bytes") and v is not None
    }
