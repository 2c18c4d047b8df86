"""The journal: ``RUN.jsonl`` beside ``RUN.json``, the crash-safe record of a run.

Line 1 is a header (environment, profile, device); every further line is one finished case record,
appended whole (a write that fails, say on a full disk, is cut back) and fsynced before the next case
starts. ``RUN.running`` names the case in progress; when its process dies, whoever holds the journal's lock
next settles it (:meth:`Journal.settle_running`): re-run, or ``crashed``. ``interrupted`` lines record a stop
from outside; readers of cases ignore them. The run JSON can always be rebuilt from the journal
(:func:`assemble`), so a run killed at any moment keeps every finished case.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import Any

from bench_lib import SCHEMA_VERSION, __version__

# is_disk_full, repair_tail and write_atomic are used as journal.X by the plugin and the supervisor
from bench_lib.harness.durable import append_line, fsync_dir, is_disk_full, repair_tail, write_atomic  # noqa: F401

# the child's exit status when the journal's disk is full (EX_TEMPFAIL: free space, then --resume)
DISK_FULL_EXIT = 75
# a journal lock the supervisor holds, inherited by its child (the fd number)
LOCK_FD_ENV = "EFFBENCH_JOURNAL_LOCK_FD"


class JournalLocked(Exception):
    """Another process holds the journal: a second run on the same output."""


def journal_path(run_json: str | os.PathLike) -> Path:
    return Path(run_json).with_suffix(".jsonl")


def running_path(journal: str | os.PathLike) -> Path:
    return Path(journal).with_suffix(".running")


class Journal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def lock(self) -> int:
        """Take the journal's exclusive lock (creating the file), or raise :class:`JournalLocked`.

        A lock the supervisor took is inherited through ``$EFFBENCH_JOURNAL_LOCK_FD`` (the same open file, so
        flock succeeds on it); anyone else's makes this raise. Held until the process exits.
        """
        if self._lock_fd is not None:
            return self._lock_fd
        fd = _inherited_lock_fd(self.path)
        if fd is None:
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            if created:
                fsync_dir(self.path.parent)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalLocked(f"another effbench run is writing {self.path}: wait for it to finish, or give "
                                "this run another --output") from None
        self._lock_fd = fd
        return fd

    def write_header(self, header: dict[str, Any]) -> None:
        if self.exists():
            raise FileExistsError(f"{self.path} already holds a run; use --resume to continue it or another --output")
        append_line(self.path, {"type": "header", "schema_version": SCHEMA_VERSION, **header})

    def append(self, record: dict[str, Any]) -> None:
        append_line(self.path, record)

    def mark_running(self, suite: str, case_id: str, nodeid: str, started_at: str) -> None:
        info = {"suite": suite, "id": case_id, "nodeid": nodeid, "started_at": started_at, "pid": os.getpid()}
        write_atomic(running_path(self.path), json.dumps(info))

    def clear_running(self) -> None:
        running_path(self.path).unlink(missing_ok=True)

    def running(self) -> dict[str, Any] | None:
        try:
            info = json.loads(running_path(self.path).read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) and "suite" in info and "id" in info else None

    def settle_running(self, at: str, died: str | None = None, signal_name: str | None = None) -> dict | None:
        """Settle the case a dead process left running; call it holding the lock. Returns the line appended.

        died:        how the child died while its supervisor lived to see it ("signal SIGSEGV"): the case's
                     own doing, recorded ``crashed``.
        signal_name: the signal that stopped the run from outside ("SIGTERM"): an ``interrupted`` line, and
                     the case is run again on resume.
        neither:     the whole run stopped unseen (SIGKILL of its process group, power loss, a preempted
                     machine): run again once; a second unseen stop of the same case is ``crashed``, with
                     both reasons.
        """
        info = self.running()
        if info is None:
            return None
        key = (info["suite"], info["id"])
        _, records = read(self.path)
        if any((r["suite"], r["id"]) == key for r in records):  # died after recording it
            self.clear_running()
            return None
        earlier = [i for i in interruptions(self.path) if (i.get("suite"), i.get("id")) == key]
        base = {"id": info["id"], "suite": info["suite"], "nodeid": info.get("nodeid"),
                "started_at": info.get("started_at")}
        if signal_name is not None:
            line = {"type": "interrupted", **base, "at": at, "by": signal_name,
                    "reason": f"interrupted by {signal_name} while this case was running; run again on resume"}
        elif died is None and not any(i.get("by") is None for i in earlier):
            line = {"type": "interrupted", **base, "at": at, "by": None,
                    "reason": "the run stopped from outside while this case was running (SIGKILL, power loss "
                              "or a preempted machine); run again on resume"}
        else:
            now = (f"the process died while this case was running ({died}: killed, segfault, or out of host memory)"
                   if died else "the run stopped unseen again while this case was running")
            line = {"type": "case", **base, "case": {}, "outcome": "crashed",
                    "reason": "; ".join([now] + [f"before: {i['reason']}" for i in earlier]),
                    "metrics": {}, "memory": {}, "samples_s": [], "series": {}, "finished_at": at}
        self.append(line)
        self.clear_running()
        return line


def _inherited_lock_fd(path: Path) -> int | None:
    """The supervisor's lock fd when it is open on this very file, else None."""
    try:
        fd = int(os.environ[LOCK_FD_ENV])
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except (KeyError, ValueError, OSError):
        return None
    return fd if same else None


def interruptions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``interrupted`` lines of a journal: cases a stop from outside left unfinished."""
    with open(path, encoding="utf-8") as f:
        return [obj for obj in _objects(f.read()) if obj.get("type") == "interrupted"]


def preparations(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``prepare`` lines of a journal: what each session prepared before its cases, in order (a resumed
    run's session prepares again and mostly finds the work done: ``reused``)."""
    if not Path(path).exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [{k: v for k, v in obj.items() if k != "type"} for obj in _objects(f.read())
                if obj.get("type") == "prepare"]


def _objects(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


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


def effbench_block(header: dict[str, Any], records: list[dict[str, Any]], finished_at: str | None,
                   prepared: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    block = {
        "schema_version": SCHEMA_VERSION,
        "profile": header.get("profile"),
        "device": header.get("device"),
        "started_at": header.get("started_at"),
        "finished_at": finished_at,
        "cases": [{k: v for k, v in r.items() if k != "type"} for r in records],
    }
    if prepared:
        block["prepared"] = [{k: v for k, v in r.items() if k != "type"} for r in prepared]
    return block


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
        "effbench": effbench_block(header, records, finished_at, preparations(path)),
    }


def close_cut_run(path: str | os.PathLike, planned: list[dict[str, Any]], reason: str,
                  finished_at: str) -> dict[str, Any]:
    """The run JSON of a run cut short from outside (a time budget), every planned case accounted for.

    The case that was running at the cut (``RUN.running``, or the last ``interrupted`` line without a record:
    the supervisor writes one when the cut's SIGTERM reaches it) is appended to the journal once, as
    ``timeout`` with ``reason``; each planned case (``{"suite", "id", "nodeid", "case"}``, as ``case_order`` writes them)
    that has no record is listed under ``effbench["not_run"]`` with ``reason``, in the planned order.
    """
    j = Journal(path)
    done = {(r["suite"], r["id"]) for r in read(path)[1]}
    info = j.running()
    if info is None:
        cut = [i for i in interruptions(path) if (i.get("suite"), i.get("id")) not in done]
        info = cut[-1] if cut else None
    if info is not None:
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
