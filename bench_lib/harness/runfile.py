"""Reading run files for comparison: effbench runs, their journals, and plain pytest-benchmark JSON.

A run becomes a :class:`Run`: the machine record and one :class:`CaseRun` per case, keyed two ways:
``suite/id`` for effbench records (every outcome), and the pytest-benchmark ``fullname`` for every entry
of ``benchmarks`` (measured cases only). No pandas: the nightly gate must run with the core dependencies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_lib import SCHEMA_VERSION
from bench_lib.harness import journal


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
    if path.suffix == ".jsonl":
        return _from_journal(path, text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    return parse_run(data, str(path))


def parse_run(data: Any, path: str = "<run>") -> Run:
    """A run from an already parsed run file (pytest-benchmark JSON, with or without effbench keys)."""
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BadInput(f"{path} is not a pytest-benchmark run file: no 'benchmarks' list at the top level")
    by_fullname, by_id_ok = {}, {}
    for entry in data["benchmarks"]:
        if not isinstance(entry, dict) or "fullname" not in entry:
            raise BadInput(f"{path}: a 'benchmarks' entry has no 'fullname'")
        case = _from_benchmark(entry)
        by_fullname[entry["fullname"]] = case
        extra = entry.get("extra_info") or {}
        if "suite" in extra and "id" in extra:
            by_id_ok[f"{extra['suite']}/{extra['id']}"] = case
    _check_schema(path, (data.get("effbench") or {}).get("schema_version"))
    by_id = by_id_ok or None
    records = (data.get("effbench") or {}).get("cases")
    if isinstance(records, list):
        # the top-level records hold every outcome; raw samples come from them or from the benchmarks entry
        by_id = {}
        for rec in records:
            key = _record_key(path, rec)
            by_id[key] = _from_record(key, rec, fallback=by_id_ok.get(key))
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
        by_id[key] = _from_record(key, rec)  # a resumed case appears again; the last record wins
    return Run(str(path), header.get("machine_info") or {}, by_id, {})


def _check_schema(path, version: Any) -> None:
    """Files from a newer effbench may mean something else by the same keys: refuse rather than guess."""
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise BadInput(f"{path} was written with results schema {version}; this effbench reads up to "
                       f"{SCHEMA_VERSION}: upgrade effbench to compare it")


def _record_key(path: Path | str, rec: Any) -> str:
    if not isinstance(rec, dict) or "suite" not in rec or "id" not in rec:
        raise BadInput(f"{path}: a case record lacks 'suite' or 'id'")
    return f"{rec['suite']}/{rec['id']}"


def _from_record(key: str, rec: dict, fallback: CaseRun | None = None) -> CaseRun:
    samples = tuple(float(s) for s in rec.get("samples_s") or ())
    if not samples and fallback is not None:
        samples = fallback.samples_s
    return CaseRun(
        key=key,
        outcome=str(rec.get("outcome", "ok")),
        reason=rec.get("reason"),
        samples_s=samples,
        summary=fallback.summary if fallback else {},
        memory=_peak_views(rec.get("memory")),
        nodeid=rec.get("nodeid") if isinstance(rec.get("nodeid"), str) else None,
    )


def _from_benchmark(entry: dict) -> CaseRun:
    stats = entry.get("stats") or {}
    extra = entry.get("extra_info") or {}
    samples = tuple(float(s) for s in stats.get("data") or ())
    summary = {k: float(stats[k]) for k in ("median", "mean", "stddev", "rounds", "iqr") if k in stats}
    return CaseRun(
        key=entry["fullname"],
        samples_s=samples,
        summary=summary,
        memory=_peak_views(extra.get("memory")),
        nodeid=entry["fullname"],
    )


def _peak_views(memory: Any) -> dict[str, float]:
    """The peak views of a record's ``memory`` (``*peak*_bytes``); the ``*_before_bytes`` baselines are dropped."""
    if not isinstance(memory, dict):
        return {}
    return {
        k: float(v)
        for k, v in memory.items()
        if "peak" in k and k.endswith("_bytes") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
