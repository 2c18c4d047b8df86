"""Stage 2 of the report: runs (one row each) -> cases (one row per run x case, every outcome).

The ``cases`` table is the report's single source of truth and is written as ``cases.csv``. Columns:

- ``run``, ``machine_slug``, ``machine`` (slug plus GPU or CPU name), ``device``, ``profile``;
- ``suite``, ``case_id``; one column per case parameter (``impl``, ``seq_len``, ``model``, ...);
- ``outcome``, ``reason`` (``None`` for ``ok``); every non-ok case keeps its row;
- one column per metric (``time_s``, ``peak_bytes``, ...; SI units, unit in the name, NaN when absent);
- ``memory_primary`` (which view ``peak_bytes`` came from) and one column per memory view;
- ``n_samples``: how many raw timed samples the record kept.

Parameters keep their plain names (a parameter named like a fixed column becomes ``param_<name>``); a
metric or memory view named like a parameter becomes ``metric_<name>`` / ``memory_<name>``, so no value
is lost. Loss curves and other series go to a separate long table
(:func:`series`), one row per point.
"""

from __future__ import annotations

import pandas as pd

FIXED = ["run", "machine_slug", "machine", "device", "profile", "suite", "case_id"]
OUTCOME_COLUMNS = ["outcome", "reason"]


def machine_label(env: dict) -> str:
    """``slug (GPU name)`` or ``slug (CPU model)`` from an environment record; tolerant of missing fields."""
    slug = env.get("machine_slug") or "unknown-machine"
    gpu, cpu = env.get("gpu"), env.get("cpu")
    name = (gpu.get("name") if isinstance(gpu, dict) else gpu) or env.get("gpu_name")
    if not name:
        name = (cpu.get("model") if isinstance(cpu, dict) else cpu) or env.get("cpu_model")
    return f"{slug} ({name})" if name else str(slug)


def tidy(runs: pd.DataFrame) -> pd.DataFrame:
    """runs from :func:`bench_lib.report.load.load` -> the cases table described in the module docstring."""
    rows, param_names, metric_names, memory_names = [], [], [], []
    for run in runs.itertuples(index=False):
        env = run.environment or {}
        base = {"run": run.run, "machine_slug": env.get("machine_slug") or "unknown-machine",
                "machine": machine_label(env), "device": run.device or env.get("device"), "profile": run.profile}
        for rec in run.cases:
            params, metrics, memory = rec.get("case") or {}, rec.get("metrics") or {}, rec.get("memory") or {}
            _extend(param_names, params)
            _extend(metric_names, metrics)
            _extend(memory_names, (k for k in memory if k != "primary"))
            rows.append((base, rec, params, metrics, memory))

    # parameters identify the case, so they keep their plain names; a metric or memory view that shares a
    # name with a parameter (e.g. a suite also recording ``batch`` as a metric) gets a prefix instead
    fixed = set(FIXED + OUTCOME_COLUMNS + ["memory_primary", "n_samples"])
    param_cols = {p: (f"param_{p}" if p in fixed else p) for p in param_names}
    taken = fixed | set(param_cols.values())
    metric_cols = {m: (f"metric_{m}" if m in taken else m) for m in metric_names}
    taken |= set(metric_cols.values())
    memory_cols = {m: (f"memory_{m}" if m in taken else m) for m in memory_names}

    table = []
    for base, rec, params, metrics, memory in rows:
        row = dict(base)
        row["suite"], row["case_id"] = rec.get("suite"), rec.get("id")
        row.update({param_cols[k]: v for k, v in params.items()})
        row["outcome"], row["reason"] = rec.get("outcome"), rec.get("reason")
        row.update({metric_cols[k]: v for k, v in metrics.items()})
        row["memory_primary"] = memory.get("primary")
        row.update({memory_cols[k]: v for k, v in memory.items() if k != "primary"})
        row["n_samples"] = len(rec.get("samples_s") or [])
        table.append(row)
    columns = (FIXED + list(param_cols.values()) + OUTCOME_COLUMNS + list(metric_cols.values())
               + ["memory_primary"] + list(memory_cols.values()) + ["n_samples"])
    cases = pd.DataFrame(table, columns=columns)
    for col in list(metric_cols.values()) + list(memory_cols.values()):
        cases[col] = _numeric_if_possible(cases[col])
    return cases


def series(runs: pd.DataFrame) -> pd.DataFrame:
    """Every recorded series as long rows: run, machine, machine_slug, suite, case_id, series, step, value."""
    rows = []
    for run in runs.itertuples(index=False):
        env = run.environment or {}
        for rec in run.cases:
            for name, values in (rec.get("series") or {}).items():
                if not isinstance(values, list) or not all(_is_number(v) for v in values):
                    continue  # e.g. a fit search's probe records: kept in the run file, not a curve
                for step, value in enumerate(values):
                    rows.append({"run": run.run, "machine": machine_label(env),
                                 "machine_slug": env.get("machine_slug") or "unknown-machine", "suite": rec.get("suite"),
                                 "case_id": rec.get("id"), "series": name, "step": step, "value": value})
    out = pd.DataFrame(rows, columns=["run", "machine", "machine_slug", "suite", "case_id", "series", "step", "value"])
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    return out


# a spreadsheet reads a cell that begins with one of these as a formula (=HYPERLINK(...), =cmd|...):
# OWASP's CSV injection advice is to prefix such a cell with a single quote, which shows it as text
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A text cell that a spreadsheet would run as a formula, prefixed with ``'``; other values unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(cases: pd.DataFrame, path) -> None:
    """Write the cases table as ``cases.csv``: every text cell and header from a file neutralised by
    :func:`spreadsheet_safe` (numbers, including negative ones, stay numbers)."""
    safe = cases.copy()
    for col in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[col]):  # object or pandas' string dtype
            safe[col] = safe[col].map(spreadsheet_safe)
    safe.columns = [spreadsheet_safe(str(c)) for c in safe.columns]
    # RFC 4180 line ends: with "\n" alone the csv writer does not quote a cell holding a carriage return,
    # and a reader splits the row there
    safe.to_csv(path, index=False, lineterminator="\r\n")


def _is_number(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _extend(names: list[str], keys) -> None:
    for k in keys:
        if k not in names:
            names.append(k)


def _numeric_if_possible(col: pd.Series) -> pd.Series:
    """Numbers become float columns; text or flags (``backend_ran``, ``synthetic_weights``) stay as they are."""
    present = col.dropna()
    if present.empty:
        return pd.to_numeric(col, errors="coerce")
    if present.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all():
        return pd.to_numeric(col, errors="coerce")
    return col
