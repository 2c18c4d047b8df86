"""The journal: ``RUN.jsonl`` beside ``RUN.json``, the crash-safe record of a run.

Line 1 is a header (environment, profile, device); every further line is one finished case record,
appended, flushed and fsynced before the next case starts. ``RUN.running`` names the case in progress; if
the process dies, the next reader finds it and records that case as ``crashed``. The run JSON can always be
rebuilt from the journal (:func:`assemble`), so a run killed at any moment keeps every finished case.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from bench_lib import SCHEMA_VERSION, __version__


def journal_path(run_json: str | os.PathLike) -> Path:
    return Path(run_json).with_suffix(".jsonl")


def running_path(journal: str | os.PathLike) -> Path:
    return Path(journal).with_suffix(".running")


def _append_line(path: Path, obj: dict[str, Any]) -> None:
    line = json.dumps(obj, allow_nan=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader sees the old or the new file, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Journal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def write_header(self, header: dict[str, Any]) -> None:
        if self.exists():
            raise FileExistsError(f"{self.path} already holds a run; use --resume to continue it or another --output")
        _append_line(self.path, {"type": "header", "schema_version": SCHEMA_VERSION, **header})

    def append(self, record: dict[str, Any]) -> None:
        _append_line(self.path, record)

    def mark_running(self, suite: str, case_id: str, nodeid: str, started_at: str) -> None:
        info = {"suite": suite, "id": case_id, "nodeid": nodeid, "started_at": started_at, "pid": os.getpid()}
        write_atomic(running_path(self.path), json.dumps(info))

    def clear_running(self) -> None:
        running_path(self.path).unlink(missing_ok=True)

    def running(self) -> dict[str, Any] | None:
        try:
            return json.loads(running_path(self.path).read_text())
        except (OSError, ValueError):
            return None

    def recover_crashed(self, finished_at: str) -> dict[str, Any] | None:
        """If a case was running when the process died, record it as ``crashed`` (once) and return it."""
        info = self.running()
        if info is None:
            return None
        _, records = read(self.path)
        if any((r["suite"], r["id"]) == (info["suite"], info["id"]) for r in records):
            self.clear_running()
            return None
        rec = {
            "type": "case", "id": info["id"], "suite": info["suite"], "nodeid": info.get("nodeid"),
            "case": {}, "outcome": "crashed",
            "reason": "the process died while this case was running (killed, segfault, or out of host memory)",
            "metrics": {}, "memory": {}, "samples_s": [], "series": {},
            "started_at": info.get("started_at"), "finished_at": finished_at,
        }
        self.append(rec)
        self.clear_running()
        return rec


def parse(text: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[str]]:
    """(header, case records, notes) from a journal's text: the one parser every reader uses.

    Each line is fsynced before the next is written, so only the last line can be torn (process killed
    mid-write): it is skipped with a note. An unreadable line anywhere else means this is not an intact
    journal, and raises ``ValueError`` naming the line.
    """
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    header, records, notes = None, [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            if n == len(lines):
                notes.append(f"last line {n} is cut off (run killed while writing it); skipped")
                continue
            raise ValueError(f"line {n} is not valid JSON") from None
        if not isinstance(obj, dict):
            raise ValueError(f"line {n} is not a JSON object")
        if obj.get("type") == "header":
            header = obj
        elif obj.get("type") == "case":
            records.append(obj)
    return header, records, notes


def read(path: str | os.PathLike) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(header, case records) of a journal file; a torn last line is skipped with a warning."""
    with open(path, encoding="utf-8") as f:
        header, records, notes = parse(f.read())
    for note in notes:
        warnings.warn(f"{path}: {note}", stacklevel=2)
    return header, records


def done_keys(path: str | os.PathLike) -> set[tuple[str, str]]:
    """(suite, id) of every case the journal already holds, whatever its outcome."""
    if not Path(path).exists():
        return set()
    return {(r["suite"], r["id"]) for r in read(path)[1]}


def benchmark_entry(rec: dict[str, Any]) -> dict[str, Any]:
    """A pytest-benchmark ``benchmarks`` entry rebuilt from a journal record's raw samples."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for s in rec["samples_s"]:
        stats.update(s)
    nodeid = rec.get("nodeid") or f"{rec['suite']}::{rec['id']}"
    name = nodeid.rsplit("::", 1)[-1]
    return {
        "group": rec["suite"],
        "name": name,
        "fullname": nodeid,
        "params": dict(rec["case"]),
        "param": rec["id"],
        "extra_info": extra_info(rec),
        "options": {"timer": rec["metrics"].get("timer", "perf_counter"), "synchronized": True,
                    "warmup": rec["metrics"].get("warmup_rounds", 0)},
        "stats": {**stats.as_dict(), "data": list(rec["samples_s"]), "iterations": rec["metrics"].get("calls_per_sample", 1)},
    }


def extra_info(rec: dict[str, Any]) -> dict[str, Any]:
    """The results contract's ``extra_info``: the case record minus bookkeeping."""
    return {k: rec[k] for k in ("suite", "id", "case", "outcome", "reason", "metrics", "memory", "samples_s", "series") if k in rec}


def effbench_block(header: dict[str, Any], records: list[dict[str, Any]], finished_at: str | None) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "profile": header.get("profile"),
        "device": header.get("device"),
        "started_at": header.get("started_at"),
        "finished_at": finished_at,
        "cases": [{k: v for k, v in r.items() if k != "type"} for r in records],
    }


def assemble(path: str | os.PathLike, finished_at: str | None = None) -> dict[str, Any]:
    """The full run JSON (pytest-benchmark shape + effbench keys) rebuilt from a journal.

    A case that appears more than once (re-run after a crash) keeps its last record.
    """
    header, records = read(path)
    if header is None:
        raise ValueError(f"{path}: no header line; not an effbench journal")
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        latest.pop((r["suite"], r["id"]), None)
        latest[(r["suite"], r["id"])] = r
    records = list(latest.values())
    return {
        "machine_info": header.get("machine_info", {}),
        "commit_info": header.get("commit_info", {}),
        "benchmarks": [benchmark_entry(r) for r in records if r["outcome"] == "ok" and r["samples_s"]],
        "datetime": finished_at or header.get("started_at"),
        "version": header.get("pytest_benchmark_version", "effbench-" + __version__),
        "effbench": effbench_block(header, records, finished_at),
    }


def close_cut_run(path: str | os.PathLike, planned: list[dict[str, Any]], reason: str,
                  finished_at: str) -> dict[str, Any]:
    """The run JSON of a run cut short from outside (a time budget), every planned case accounted for.

    The case that was running at the cut (``RUN.running``) is appended to the journal once, as ``timeout``
    with ``reason``; each planned case (``{"suite", "id", "nodeid", "case"}``, as ``case_order`` writes them)
    that has no record is listed under ``effbench["not_run"]`` with ``reason``, in the planned order.
    """
    j = Journal(path)
    info = j.running()
    if info is not None:
        done = {(r["suite"], r["id"]) for r in read(path)[1]}
        if (info["suite"], info["id"]) not in done:
            params = next((p.get("case", {}) for p in planned if (p["suite"], p["id"]) == (info["suite"], info["id"])), {})
            j.append({
                "type": "case", "id": info["id"], "suite": info["suite"], "nodeid": info.get("nodeid"),
                "case": dict(params), "outcome": "timeout", "reason": f"{reason}: still running at the cut",
                "metrics": {}, "memory": {}, "samples_s": [], "series": {},
                "started_at": info.get("started_at"), "finished_at": finished_at})
        j.clear_running()
    data = assemble(path, finished_at=finished_at)
    done = {(c["suite"], c["id"]) for c in data["effbench"]["cases"]}
    data["effbench"]["not_run"] = [
        {"suite": p["suite"], "id": p["id"], "nodeid": p.get("nodeid"), "case": dict(p.get("case") or {}),
         "reason": f"{reason}: not started"}
        for p in planned if (p["suite"], p["id"]) not in done]
    return data
