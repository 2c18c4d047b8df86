"""Stage 1 of the report: run files -> one row per run (validated, upgraded to the current schema).

Accepts run JSON files (pytest-benchmark JSON plus the effbench keys), journals (``RUN.jsonl``: a header
line, then one case record a line) and folders holding either. A journal is read only when its JSON is
missing or unreadable: that is an interrupted run, and its finished cases are still worth a report.

A file that cannot be read (truncated, not JSON, wrong shape, newer schema) is reported as a
:class:`Problem` naming the file and what is wrong, and skipped; the other files still load. A case record
with a bad value (a string or NaN where a number belongs, a negative size, an unknown outcome or fine-tune
group) is skipped, or the value dropped, with a problem naming the case (:mod:`bench_lib.report.case_values`);
the rest of the run still loads. A file that
loads but breaks a rule of the contract (``bench_lib.harness.schema.validate``: a non-ok case without a reason, a
missing environment field) loads with those problems listed.

Older schema versions are upgraded on load, one version at a time, by the functions in :data:`UPGRADES`
(asv's approach): version 0 is a plain pytest-benchmark file written before the effbench contract.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench_lib import SCHEMA_VERSION
from bench_lib.harness import journal, schema
from bench_lib.report import case_values

RUN_COLUMNS = ["run", "path", "source", "schema_version", "profile", "device", "started_at", "finished_at",
               "environment", "commit_info", "cases"]


class SchemaError(ValueError):
    """A run file that does not follow the results contract; the message names the file and the fault."""


@dataclass(frozen=True)
class Problem:
    """A file skipped (or read only in part) and why, shown at the top of the report."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# ---------------------------------------------------------------- schema upgrades
def _upgrade_0_to_1(doc: dict) -> dict:
    """Plain pytest-benchmark JSON -> effbench v1: each benchmark becomes an ``ok`` case record.

    Only what pytest-benchmark itself stored is known: the median and IQR of the timing, the rounds and the
    raw samples. The suite is taken from the test file name (``test_attention.py`` -> ``attention``).
    """
    cases = []
    for bench in doc.get("benchmarks", []):
        stats = bench.get("stats", {})
        module = str(bench.get("fullname", "")).split("::")[0].rsplit("/", 1)[-1]
        suite = module.removeprefix("test_").removesuffix(".py") or str(bench.get("group") or "unknown")
        params = bench.get("params") or {}
        cases.append({
            "type": "case", "id": str(bench.get("param") or bench.get("name")), "suite": suite,
            "nodeid": bench.get("fullname"), "case": params if isinstance(params, dict) else {},
            "outcome": "ok", "reason": None,
            "metrics": {"time_s": stats.get("median"), "time_s_iqr": stats.get("iqr"), "rounds": stats.get("rounds")},
            "memory": {}, "samples_s": stats.get("data", []), "series": {},
        })
    machine = dict(doc.get("machine_info", {}))
    cpu = machine.get("cpu", {}) if isinstance(machine.get("cpu"), dict) else {}
    cpu_model = cpu.get("brand_raw") or machine.get("processor") or "unknown cpu"
    # the environment record's keys, unknown ones None (pytest-benchmark's "node" is a hostname: not kept)
    machine["effbench"] = {**dict.fromkeys(schema.ENV_KEYS), "schema_version": 1, "device": "unknown",
                           "cpu": {"model": cpu_model},
                           "machine_slug": "v0-" + "-".join(str(cpu_model).lower().split())}
    benchmarks = [{**b, "extra_info": {k: c[k] for k in ("suite", "case", "outcome", "metrics", "memory")}}
                  for b, c in zip(doc.get("benchmarks", []), cases, strict=True)]
    return {**doc, "machine_info": machine, "benchmarks": benchmarks, "effbench": {
        "schema_version": 1, "profile": None, "device": "unknown", "started_at": doc.get("datetime"),
        "finished_at": doc.get("datetime"), "cases": cases}}


# version -> function turning a document of that version into one of the next version
UPGRADES: dict[int, Callable[[dict], dict]] = {0: _upgrade_0_to_1}


def schema_version(doc: dict) -> int:
    """The document's schema version; a pytest-benchmark file without effbench keys is version 0."""
    if not isinstance(doc, dict):
        raise SchemaError("a run file must hold a JSON object")
    eff = doc.get("effbench")
    if eff is None:
        if not isinstance(doc.get("benchmarks"), list):
            raise SchemaError("not a run file: neither 'effbench' nor pytest-benchmark's 'benchmarks' list")
        return 0
    if not isinstance(eff, dict) or not isinstance(eff.get("schema_version"), int):
        raise SchemaError("top-level 'effbench' must be an object with an integer 'schema_version'")
    return eff["schema_version"]


def upgrade(doc: dict, upgrades: dict[int, Callable[[dict], dict]] | None = None) -> dict:
    """Apply upgrade functions until the document is at :data:`bench_lib.SCHEMA_VERSION`."""
    upgrades = UPGRADES if upgrades is None else upgrades
    version = schema_version(doc)
    if version > SCHEMA_VERSION:
        raise SchemaError(f"schema_version {version} is newer than this effbench reads ({SCHEMA_VERSION}); "
                          "upgrade effbench")
    while version < SCHEMA_VERSION:
        if version not in upgrades:
            raise SchemaError(f"no upgrade from schema_version {version}")
        doc = upgrades[version](doc)
        new = schema_version(doc)
        if new != version + 1:
            raise SchemaError(f"upgrade from schema_version {version} produced version {new}")
        version = new
    return doc


# ---------------------------------------------------------------- validation
def validate(doc: dict) -> None:
    """Raise :class:`SchemaError` saying what is wrong when ``doc`` is not a current-schema run.

    Only the shape of the run is checked here; each case record is checked value by value by
    :func:`bench_lib.report.case_values.clean_cases`, which skips a bad case rather than the whole file.
    """
    if not isinstance(doc, dict):
        raise SchemaError("a run file must hold a JSON object")
    eff = doc.get("effbench")
    if not isinstance(eff, dict):
        raise SchemaError("missing top-level 'effbench' object")
    if not isinstance(eff.get("cases"), list):
        raise SchemaError("'effbench.cases' must be a list of case records")
    machine_info = doc.get("machine_info", {})
    if not isinstance(machine_info, dict) or not isinstance(machine_info.get("effbench", {}), dict):
        raise SchemaError("'machine_info.effbench' must be an object (the environment record)")


# ---------------------------------------------------------------- reading files
def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except RecursionError:
        raise SchemaError("nested too deeply to be a run file (corrupt or hostile JSON)") from None
    except json.JSONDecodeError as exc:
        size = path.stat().st_size
        raise SchemaError(f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}; "
                          f"file is {size} bytes: truncated or not a run file?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"cannot read: {exc}") from None


def read_journal(path: Path) -> tuple[dict, list[str]]:
    """A journal -> (run document, notes). A cut last line (killed mid-write) is skipped with a note."""
    try:
        header, cases, notes = journal.parse(path.read_text())
    except RecursionError:
        raise SchemaError("nested too deeply to be a journal (corrupt or hostile JSON)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"cannot read: {exc}") from None
    except ValueError as exc:
        raise SchemaError(str(exc)) from None
    if header is None:
        raise SchemaError("a journal must start with a header line ({\"type\": \"header\", ...})")
    doc = {"machine_info": header.get("machine_info", {}), "commit_info": header.get("commit_info", {}),
           "benchmarks": [], "effbench": {
               "schema_version": header.get("schema_version"), "profile": header.get("profile"),
               "device": header.get("device"), "started_at": header.get("started_at"), "finished_at": None,
               "cases": cases}}
    notes.append(f"read from the journal ({len(cases)} finished cases; the run did not finish writing its JSON)")
    return doc, notes


def expand(paths: Iterable[str | Path]) -> tuple[list[Path], list[Problem]]:
    """Files to read: folders give their ``*.json`` and ``*.jsonl``; a journal beside its JSON is a fallback."""
    found, problems = [], []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.suffix in (".json", ".jsonl") and q.is_file())
        elif p.is_file():
            found.append(p)
        else:
            problems.append(Problem(str(p), "no such file or folder"))
    unique = list(dict.fromkeys(found))
    return unique, problems


def _current(doc: dict) -> dict:
    """Upgraded to the current schema and validated, or :class:`SchemaError`."""
    doc = upgrade(doc)
    validate(doc)
    return doc


MAX_CONTRACT_NOTES = 5


def contract_notes(doc: dict) -> list[str]:
    """What :func:`bench_lib.harness.schema.validate` finds wrong in a run that still loads (a case without a
    reason, a missing environment field): shown in the report, at most a few lines per file."""
    try:
        problems = schema.validate(doc)
    except (AttributeError, TypeError):  # the checker assumes objects where a corrupt file has other values
        return ["does not follow the results contract: entries of the wrong type (not checked further)"]
    notes = [f"does not follow the results contract: {p}" for p in problems[:MAX_CONTRACT_NOTES]]
    if len(problems) > MAX_CONTRACT_NOTES:
        notes.append(f"... and {len(problems) - MAX_CONTRACT_NOTES} more contract problems")
    return notes


MAX_VALUE_NOTES = 10


def _load_one(path: Path) -> tuple[dict, str, list[str]]:
    """(document, source, notes): the JSON, or its journal when the JSON is unreadable; every case record's
    values checked (:mod:`bench_lib.report.case_values`), the bad ones skipped or dropped with a note."""
    doc, source, notes = _read_one(path)
    notes += contract_notes(doc)
    eff = doc["effbench"]
    cases, value_notes = case_values.clean_cases(eff["cases"])
    env, env_notes = case_values.clean_environment(doc.get("machine_info", {}).get("effbench"))
    value_notes = env_notes + value_notes
    for key in ("profile", "device", "started_at", "finished_at"):
        if eff.get(key) is not None and not isinstance(eff[key], str):
            value_notes.append(f"effbench.{key} = {str(eff[key])[:50]!r} is not text; ignored")
            eff = {**eff, key: None}
    if len(value_notes) > MAX_VALUE_NOTES:
        value_notes = value_notes[:MAX_VALUE_NOTES] + [f"... and {len(value_notes) - MAX_VALUE_NOTES} more bad values"]
    doc = {**doc, "machine_info": {**doc.get("machine_info", {}), "effbench": env}, "effbench": {**eff, "cases": cases}}
    return doc, source, notes + [f"bad value: {n}" for n in value_notes]


def _read_one(path: Path) -> tuple[dict, str, list[str]]:
    if path.suffix == ".jsonl":
        doc, notes = read_journal(path)
        return _current(doc), "journal", notes
    try:
        return _current(read_json(path)), "json", []
    except SchemaError as exc:
        journal = path.with_suffix(".jsonl")
        if not journal.is_file():
            raise
        doc, notes = read_journal(journal)
        return _current(doc), "journal", [f"{exc}; falling back to {journal.name}"] + notes


def load(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, list[Problem]]:
    """Run files, journals or folders -> (runs, problems).

    runs: one row per run, columns :data:`RUN_COLUMNS`; ``environment`` is ``machine_info["effbench"]``,
    ``cases`` the list of case records. ``run`` is the file stem (made unique with the parent folder).
    """
    files, problems = expand(paths)
    jsons = {f.with_suffix("") for f in files if f.suffix == ".json"}
    rows = []
    for f in files:
        if f.suffix == ".jsonl" and f.with_suffix("") in jsons:
            continue  # its JSON is the complete record; the journal is only a fallback for it
        try:
            doc, source, notes = _load_one(f)
        except SchemaError as exc:
            problems.append(Problem(str(f), f"skipped: {exc}"))
            continue
        problems += [Problem(str(f), n) for n in notes]
        eff = doc["effbench"]
        rows.append({"run": f.stem, "path": str(f), "source": source, "schema_version": eff["schema_version"],
                     "profile": eff.get("profile"), "device": eff.get("device"),
                     "started_at": eff.get("started_at"), "finished_at": eff.get("finished_at"),
                     "environment": doc.get("machine_info", {}).get("effbench", {}) or {},
                     "commit_info": doc["commit_info"] if isinstance(doc.get("commit_info"), dict) else {},
                     "cases": eff["cases"]})
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    dup = runs["run"].duplicated(keep=False)
    runs.loc[dup, "run"] = [f"{Path(p).parent.name}/{r}" for p, r in zip(runs.loc[dup, "path"], runs.loc[dup, "run"], strict=True)]
    return runs, problems
