"""The report's check of every value in a run's case records, as it loads (called by :mod:`bench_lib.report.load`).

A record that cannot be placed (no string id or suite, an unknown outcome, a case parameter of the wrong kind,
an unknown fine-tune group) is skipped; a metric, memory view, series or sample list that is not what its name
says (a string or NaN for ``time_s``, a negative ``peak_bytes``, ``10**400``) is dropped from its record. Each
becomes a note naming the case, the key and the value, shown at the top of the report; everything else in the
run still renders. Later stages can then trust that a number column holds finite numbers.

Which names must hold numbers follows the contract's naming rule: a metric carries its unit in its name
(``time_s``, ``peak_bytes``, ``trainable_params``, ``frac_of_peak``, ...); amounts of time, bytes, parameters,
rounds and FLOP cannot be negative.
"""

from __future__ import annotations

import math
import re
from typing import Any

from bench_lib.harness.workload import OUTCOMES

# the fine-tune suite's case groups (bench_lib.harness.profiles): the cost grid and the convergence study
FINETUNE_GROUPS = ("cost", "convergence", "merge", "distributed")  # the groups bench_lib.harness.profiles.finetune_grid makes

# case parameters that are sizes or counts: whole numbers >= 0 (or None), below 2**53 so that floats hold them
COUNT_PARAMS = frozenset({
    "n", "mib", "seq_len", "seq", "batch", "heads", "kv_heads", "head_dim", "rank", "pretrain_steps",
    "finetune_steps", "seed", "hidden", "layers", "vocab", "pretrain_sentences", "pretrain_batch",
    "finetune_batch", "prompt_tokens", "new_tokens",
})
TEXT_PARAMS = frozenset({"kind", "dtype", "impl", "direction", "model", "precision", "method", "targets",
                         "attention", "group"})
MAX_COUNT = 2**53

# metric and memory names that must hold numbers: a unit suffix, or one of the contract's unitless numbers
_NUMERIC_NAME = re.compile(
    r"(_s|_s_iqr|_s_min|_s_max|_bytes|_bytes_per_s|_bytes_per_seq|_params|_frac|_per_s|_per_param|_per_step"
    r"|rounds|flop|flops|_loss|_error|tolerance|accuracy|perplexity|agreement|kl_vs_ref)$"
    r"|^(frac_|tokens_|time_s|step_s|peak_bytes)")
# of those, amounts that cannot be negative (a KL estimate or a loss may dip below zero numerically)
_NON_NEGATIVE_NAME = re.compile(r"(_s|_s_iqr|_s_min|_s_max|_bytes|_bytes_per_s|_bytes_per_seq|_params|_per_s"
                                r"|rounds|flop|flops)$|^(time_s|step_s|peak_bytes)")
# strings a memory record holds by design
MEMORY_TEXT = frozenset({"primary", "cpu_peak_method"})


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 50 else text[:47] + "..."


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a number, is a bool, is NaN/Inf or overflows."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer like 10**400
        return None
    return number if math.isfinite(number) else None


def value_problem(name: str, value: Any, text_ok: frozenset = frozenset()) -> str | None:
    """Why a metric or memory value cannot be used (None: it can)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if name in text_ok or not _NUMERIC_NAME.search(name):
            return None
        return "is not a number"
    if isinstance(value, (int, float)):
        number = finite(value)
        if number is None:
            return "is not a finite number"
        if number < 0 and _NON_NEGATIVE_NAME.search(name):
            return "is negative"
        return None
    return "is not a single value"


def _param_problem(name: str, value: Any) -> str | None:
    if name in COUNT_PARAMS:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_COUNT:
            return f"parameter {name} = {_shown(value)} is not a whole number >= 0"
        return None
    if name in TEXT_PARAMS:
        return None if value is None or isinstance(value, str) else f"parameter {name} = {_shown(value)} is not text"
    if value is None or isinstance(value, (str, bool)):
        return None
    if isinstance(value, (int, float)) and finite(value) is not None:
        return None
    return f"parameter {name} = {_shown(value)} is not a single finite value"


def _record_problem(rec: Any) -> str | None:
    """Why a case record cannot be placed in the report at all (None: it can)."""
    if not isinstance(rec, dict):
        return "is not an object"
    for key in ("id", "suite"):
        if not isinstance(rec.get(key), str) or not rec[key]:
            return f"'{key}' {_shown(rec.get(key))} is not a non-empty string"
    if rec.get("outcome") not in OUTCOMES:
        return f"outcome {_shown(rec.get('outcome'))} is not one of {', '.join(OUTCOMES)}"
    if not isinstance(rec.get("case"), dict):
        return f"'case' {_shown(rec.get('case'))} is not an object of parameters"
    for key in ("metrics", "memory", "series"):
        if rec.get(key) is not None and not isinstance(rec[key], dict):
            return f"'{key}' {_shown(rec[key])} is not an object"
    for name, value in rec["case"].items():
        problem = _param_problem(name, value)
        if problem:
            return problem
    if rec["suite"] == "finetune" and rec["case"].get("group") not in FINETUNE_GROUPS:
        return (f"fine-tune group {_shown(rec['case'].get('group'))} is not one of {', '.join(FINETUNE_GROUPS)}: "
                "the report cannot tell whether it is a cost or a convergence case")
    return None


def _series_problem(values: Any) -> str | None:
    if not isinstance(values, list):
        return "is not a list"
    for v in values:
        # a NaN loss is a measured divergence and stays; a number no float can hold is not a measurement
        if isinstance(v, int) and not isinstance(v, bool) and finite(v) is None:
            return f"holds {_shown(v)}, too large for a number"
    return None


def clean_case(rec: dict) -> tuple[dict | None, list[str]]:
    """(the record with unusable values dropped, or None when it cannot be placed; what was wrong)."""
    label = f"case {rec.get('suite')}/{rec.get('id')}" if isinstance(rec, dict) else "a case record"
    problem = _record_problem(rec)
    if problem:
        return None, [f"{label}: skipped: {problem}"]
    notes, out = [], dict(rec)
    if out.get("reason") is not None and not isinstance(out["reason"], str):
        out["reason"] = _shown(out["reason"])
    for key, text_ok in (("metrics", frozenset()), ("memory", MEMORY_TEXT)):
        kept = {}
        for name, value in (rec.get(key) or {}).items():
            why = value_problem(name, value, text_ok) if isinstance(name, str) else "has no name"
            if why:
                notes.append(f"{label}: {key}.{name} = {_shown(value)} {why}; dropped")
            else:
                kept[name] = value
        out[key] = kept
    series = {}
    for name, values in (rec.get("series") or {}).items():
        why = _series_problem(values)
        if why:
            notes.append(f"{label}: series.{name} {why}; dropped")
        else:
            series[name] = values
    out["series"] = series
    samples = rec.get("samples_s")
    if samples is not None and (not isinstance(samples, list)
                                or any(value_problem("sample_s", v) or v is None for v in samples)):
        notes.append(f"{label}: samples_s is not a list of finite times >= 0; dropped")
        out["samples_s"] = []
    return out, notes


def clean_cases(records: list) -> tuple[list[dict], list[str]]:
    """Every record checked by :func:`clean_case`: (the records kept, the notes)."""
    kept, notes = [], []
    for rec in records:
        clean, found = clean_case(rec)
        notes += found
        if clean is not None:
            kept.append(clean)
    return kept, notes


ENV_TEXT = ("machine_slug", "device", "profile")


def clean_environment(env: Any) -> tuple[dict, list[str]]:
    """The environment record with non-text names (machine_slug, device, profile) and non-object gpu/cpu
    records dropped, so that machine labels are always text."""
    if not isinstance(env, dict):
        return {}, [] if env is None else [f"machine_info.effbench {_shown(env)} is not an object; ignored"]
    out, notes = dict(env), []
    for key in ENV_TEXT:
        if out.get(key) is not None and not isinstance(out[key], str):
            notes.append(f"machine_info.effbench.{key} = {_shown(out[key])} is not text; ignored")
            out.pop(key)
    for key in ("gpu", "cpu"):
        if out.get(key) is not None and not isinstance(out[key], (dict, str)):
            notes.append(f"machine_info.effbench.{key} = {_shown(out[key])} is not a record; ignored")
            out.pop(key)
        elif isinstance(out.get(key), dict):
            inner = {k: v for k, v in out[key].items() if k not in ("name", "model") or isinstance(v, str)}
            if len(inner) != len(out[key]):
                notes.append(f"machine_info.effbench.{key}: its name is not text; ignored")
            out[key] = inner
    return out, notes
