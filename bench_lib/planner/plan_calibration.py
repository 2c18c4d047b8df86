"""Fit the planner's activation coefficient to measured fine-tune runs, and compare predictions with them.

What is compared (one rule, used for calibration, for ``effbench plan --calibrate`` and for the report):
- CUDA records: ``memory.torch_peak_allocated_bytes`` against :attr:`Footprint.peak_bytes`. PyTorch's allocator
  view holds weights, optimizer state, gradients, activations and temporaries, and no CUDA context.
- CPU records: what the untimed step added above what existed just before it, against
  :attr:`Footprint.step_added_bytes` (the weights and the AdamW state exist before the repeat; the CPU
  ``peak_bytes`` also holds the Python/PyTorch runtime, hundreds of MiB the model does not describe).
  Preferred view: ``memory.torch_cpu_added_peak_bytes`` (PyTorch's live CPU allocations, profiler memory events).
  Records without it fall back to ``metrics.extra_peak_bytes`` (RSS high-water mark), which reads 15-60% high on
  fine-tune steps: the probe trims the heap, glibc serves the step's tensors from the trimmed free chunks
  (re-faulting their pages) rather than fresh mmaps, and fragmentation keeps freed pages resident. On the CPU
  quick run of 2026-11-28 the model matched the profiler's live-tensor peak to 0.7% (llama-7m full 89.13 vs
  89.11 MiB, lora-r16 77.25 vs 76.73, llama-34m full 191.40 vs 191.40) while RSS read 100-117, 93-115, 271-288.

Distributed cases (``group: "distributed"``, with ``strategy`` ddp|fsdp and ``world_size``; ``batch`` per rank) are
predicted per rank by :mod:`bench_lib.planner.sharding` and compared by the same rule on their memory views,
which hold the largest rank's peak. On CPU their rows also compare the whole process peak
(``cpu_peak_rss_bytes``) with the predicted per-rank peak plus a process baseline, the median over those records
of the RSS before the step minus the predicted resident state (:func:`cpu_process_baseline`): the view where
FSDP's sharded resident state shows. RSS reads the heap's reuse too, so that row is the coarser one. Where the
records have glibc's live malloc bytes (``cpu_peak_malloc_bytes``, ``cpu_malloc_before_bytes``: every thread's
arena, gloo's buffers included, freed chunks not) a third row compares those the same way, with their own
baseline: the whole-process per-rank view without RSS's fragmentation (on the 2-core VM FSDP's heap kept
500-650 MB freed but resident on llama-34m, so RSS put FSDP above DDP while the live bytes fell as sharding says).

The coefficient k scales the saved-activation term only (activations are never sharded, so distributed
cases calibrate the same k per method). Per method it minimises the squared *relative*
error of the prediction over the records (a 10 MiB case counts as much as a 10 GiB one):
- from ``metrics.activation_bytes`` when a record has it (a forward with its graph kept: what autograd saves,
  the fp32 log-probabilities included, plus autocast's weight copies and the logits, together b,
  :func:`footprint.forward_logits_bytes`): measured = k*a + b as below;
- otherwise from the peak, using only records whose predicted peak is the backward phase (activations +
  loss buffers; when the optimizer step is the peak the measurement says nothing about activations):
  measured = k*a + b, k = sum(a*(m - b)/m^2) / sum(a^2/m^2).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import median
from typing import Any

from bench_lib.harness import journal
from bench_lib.planner import footprint, sharding
from bench_lib.suites import models

# case-parameter names the fine-tune suite may use for each planner setting (first present wins)
_KEYS = {
    "model": ("model", "preset"),
    "method": ("method",),
    "seq": ("seq_len", "seq"),
    "batch": ("batch", "batch_size"),
    "rank": ("rank", "lora_rank", "r"),
    "targets": ("targets", "target_modules"),
    "checkpointing": ("checkpointing", "gradient_checkpointing"),
    "base_dtype": ("base_dtype",),
    "quant": ("quant", "quant_type"),
    "attention": ("attention", "attn_implementation"),
}


# the measured values calibration reads; one that is not a finite byte count >= 0 is dropped on reading
MEASURED_KEYS = {"metrics": ("activation_bytes", "extra_peak_bytes"),
                 "memory": ("torch_peak_allocated_bytes", "nvml_peak_used_bytes", "torch_cpu_added_peak_bytes",
                            "cpu_rss_before_bytes", "cpu_peak_rss_bytes")}


def _byte_count(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:
        return False


def _usable(rec: dict) -> dict:
    """The record with measured values that are not byte counts (NaN, strings, negative) removed, so the case
    is skipped as unmeasured rather than fitted on nonsense."""
    out = dict(rec)
    for section, keys in MEASURED_KEYS.items():
        values = rec.get(section) if isinstance(rec.get(section), dict) else {}
        out[section] = {k: v for k, v in values.items() if k not in keys or _byte_count(v)}
    return out


def read_records(path: str | Path) -> list[tuple[dict[str, Any], str]]:
    """(case record, device type) for every case of a run file (``RUN.json``) or journal (``RUN.jsonl``).

    Raises ``ValueError`` naming the file when it is not a run file or journal; measured values that are not
    byte counts are dropped from their records (see :func:`_usable`)."""
    path = Path(path)
    try:
        if path.suffix == ".jsonl":
            header, records = journal.read(path)
            device = (header or {}).get("device", "cpu")
        else:
            run = json.loads(path.read_text(encoding="utf-8"))
            block = run.get("effbench") if isinstance(run, dict) else None
            if not isinstance(block, dict) or not isinstance(block.get("cases"), list):
                raise ValueError("not an effbench run file (no 'effbench.cases' list)")
            records, device = block["cases"], block.get("device", "cpu")
    except RecursionError:
        raise ValueError(f"--calibrate {path}: nested too deeply to be a run file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"--calibrate {path}: {getattr(exc, 'strerror', None) or exc}") from None
    device_type = "cuda" if isinstance(device, str) and device.startswith("cuda") else "cpu"
    return [(_usable(r), device_type) for r in records if isinstance(r, dict)]


def _get(case: dict, name: str, default=None):
    for key in _KEYS[name]:
        if case.get(key) is not None:
            return case[key]
    return default


def parallel_from_record(rec: dict) -> sharding.Parallel | None:
    """How a fine-tune case was spread: a distributed case's ``strategy`` and ``world_size``, else one device;
    None when they are not a strategy and a rank count the planner knows."""
    case = rec.get("case") if isinstance(rec.get("case"), dict) else {}
    strategy, world = case.get("strategy"), case.get("world_size", 1)
    if strategy is None and case.get("group") != "distributed":
        return sharding.Parallel()
    if strategy not in ("ddp", "fsdp") or isinstance(world, bool) or not isinstance(world, int) or not 1 <= world < 2**31:
        return None
    return sharding.Parallel(strategy, world, bool(case.get("gradient_as_bucket_view", False)))


def setup_from_record(rec: dict, device_type: str) -> tuple[models.ModelPreset, footprint.Setup] | None:
    """The preset and planner setup a fine-tune case record describes; None if it is not a plannable case.
    A distributed case's ``batch`` is the per-rank batch, the planner's per-GPU setup."""
    case = rec.get("case") if isinstance(rec.get("case"), dict) else {}
    method, model = _get(case, "method"), _get(case, "model")
    if (rec.get("suite") != "finetune" or not isinstance(method, str) or not isinstance(model, str)
            or method not in footprint.METHODS or model not in models.PRESETS):
        return None
    sizes = [_get(case, name, 1) for name in ("seq", "batch", "rank")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v < 2**31 for v in sizes):
        return None  # not a case the planner can describe (a corrupt size)
    targets = _get(case, "targets", "attn")
    if isinstance(targets, (list, tuple)):
        targets = ",".join(targets)
    setup = footprint.Setup(
        method=method,
        seq=int(_get(case, "seq", 512)),
        batch=int(_get(case, "batch", 1)),
        rank=int(_get(case, "rank", 8)),
        targets=str(targets).replace("-", "_") if targets in ("all-linear", "all_linear") else str(targets),
        checkpointing=bool(_get(case, "checkpointing", False)),
        base_dtype=_get(case, "base_dtype"),
        quant=_get(case, "quant", "nf4"),
        attention="eager" if _get(case, "attention") == "eager" else "sdpa",
        device_type=device_type,
    )
    return models.PRESETS[model], setup


def planned_case(rec: dict, device_type: str):
    """(preset, setup, parallel) of an ok fine-tune record the planner can describe, else None."""
    planned = setup_from_record(rec, device_type) if rec.get("outcome") == "ok" else None
    par = parallel_from_record(rec) if planned else None
    return None if par is None else (*planned, par)


def measured(rec: dict, device_type: str) -> tuple[str, float] | None:
    """(view name, bytes) the prediction is compared with, by the rule in the module docstring."""
    if device_type == "cuda":
        value = (rec.get("memory") or {}).get("torch_peak_allocated_bytes")
        return None if value is None else ("torch_peak_allocated_bytes", float(value))
    value = (rec.get("memory") or {}).get("torch_cpu_added_peak_bytes")
    if value is not None:
        return "torch_cpu_added_peak_bytes", float(value)
    value = (rec.get("metrics") or {}).get("extra_peak_bytes")
    if value is not None:
        return "extra_peak_bytes", float(value)
    mem = rec.get("memory") or {}  # a record with the RSS views only: what the step added to the high-water mark
    if mem.get("cpu_peak_rss_bytes") is not None and mem.get("cpu_rss_before_bytes") is not None:
        return "extra_peak_bytes", max(0.0, float(mem["cpu_peak_rss_bytes"]) - float(mem["cpu_rss_before_bytes"]))
    return None


def predicted(fp: footprint.Footprint, device_type: str) -> float:
    return fp.peak_bytes if device_type == "cuda" else fp.step_added_bytes


def calibrate(records: list[tuple[dict, str]]) -> dict[str, dict[str, Any]]:
    """{method: {"coefficient", "cases", "source", "skipped"}} fitted on the ok fine-tune records."""
    sums: dict[str, dict[str, Any]] = {}
    for rec, device_type in records:
        planned = planned_case(rec, device_type)
        if planned is None:
            continue
        preset, setup, par = planned
        acc = sums.setdefault(setup.method, {"num": 0.0, "den": 0.0, "cases": 0, "sources": set(), "skipped": []})
        fp = sharding.predict(preset, setup, par)
        a = fp.activation_bytes
        if (rec.get("metrics") or {}).get("activation_bytes"):
            # the suite measures a forward with its graph kept: what autograd saved (log-probabilities included)
            # plus autocast's weight copies plus the logits the loss reads
            m, source = float(rec["metrics"]["activation_bytes"]), "activation_bytes"
            b = float(fp.autocast_copies_bytes + footprint.forward_logits_bytes(preset, setup))
        else:
            view = measured(rec, device_type)
            if view is None or fp.peak_phase != "backward":  # (per rank: activations are not sharded)
                acc["skipped"].append(rec.get("id"))
                continue
            m, source = view[1], view[0]
            b = predicted(fp, device_type) - a  # everything in the predicted peak but the activations
        if m <= 0 or a <= 0:
            acc["skipped"].append(rec.get("id"))
            continue
        acc["num"] += a * (m - b) / m**2
        acc["den"] += a * a / m**2
        acc["cases"] += 1
        acc["sources"].add(source)
    return {
        method: {
            "coefficient": acc["num"] / acc["den"] if acc["den"] else 1.0,
            "cases": acc["cases"],
            "source": ", ".join(sorted(acc["sources"])) or None,
            "skipped": acc["skipped"],
        }
        for method, acc in sums.items()
    }


def cuda_overhead(records: list[tuple[dict, str]]) -> float | None:
    """Median of NVML-used minus torch-allocated peaks over CUDA records: context, workspaces, allocator slack."""
    gaps = []
    for rec, device_type in records:
        mem = rec.get("memory") or {}
        if device_type == "cuda" and mem.get("nvml_peak_used_bytes") and mem.get("torch_peak_allocated_bytes"):
            gaps.append(mem["nvml_peak_used_bytes"] - mem["torch_peak_allocated_bytes"])
    return float(median(gaps)) if gaps else None


def cpu_process_baseline(records: list[tuple[dict, str]], before_view: str = "cpu_rss_before_bytes") -> float | None:
    """Median, over ok distributed CPU records, of a rank's process memory just before its step (``before_view``:
    ``memory.cpu_rss_before_bytes``, or ``cpu_malloc_before_bytes`` for the live malloc view) minus the predicted
    resident state: the Python/PyTorch/gloo runtime a rank's process holds besides its tensors. Only distributed
    cases: each runs in fresh torchrun processes, while a single-device case's RSS carries the heap of every case
    before it in the same process."""
    gaps = []
    for rec, device_type in records:
        planned = planned_case(rec, device_type)
        before = (rec.get("memory") or {}).get(before_view)
        if planned and device_type == "cpu" and planned[2].strategy != "single" and _byte_count(before):
            gaps.append(before - sharding.predict(*planned).resident_bytes)
    return float(median(gaps)) if gaps else None


# whole-process rows of a distributed CPU record: (row prefix, peak view, before view)
PROCESS_VIEWS = (("process", "cpu_peak_rss_bytes", "cpu_rss_before_bytes"),
                 ("live", "cpu_peak_malloc_bytes", "cpu_malloc_before_bytes"))


def compare(records: list[tuple[dict, str]], coefficients: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """One row per ok fine-tune record: predicted vs measured bytes (per rank for a distributed case, on its
    largest rank) on the comparable view, relative error. Distributed CPU records also get the whole process
    peak (``memory.cpu_peak_rss_bytes``, ``process_*``) and the live malloc peak (``memory.cpu_peak_malloc_bytes``,
    ``live_*``) against the predicted per-rank peak plus :func:`cpu_process_baseline` of that view."""
    rows = []
    baselines = {prefix: cpu_process_baseline(records, before) for prefix, _, before in PROCESS_VIEWS}
    for rec, device_type in records:
        planned = planned_case(rec, device_type)
        view = measured(rec, device_type) if planned else None
        if view is None:
            continue
        preset, setup, par = planned
        k = (coefficients or {}).get(setup.method, {}).get("coefficient", 1.0)
        fp = sharding.predict(preset, setup, par, k)
        pred = predicted(fp, device_type)
        row = {
            "id": rec.get("id"), "method": setup.method, "strategy": par.strategy, "world_size": par.world_size,
            "device_type": device_type, "view": view[0],
            "predicted_bytes": pred, "measured_bytes": view[1], "rel_error": pred / view[1] - 1.0,
        }
        for prefix, peak_view, _ in PROCESS_VIEWS:
            peak, baseline = (rec.get("memory") or {}).get(peak_view), baselines[prefix]
            if device_type == "cpu" and par.strategy != "single" and baseline is not None and _byte_count(peak) and peak:
                row[f"{prefix}_predicted_bytes"] = baseline + fp.peak_bytes
                row[f"{prefix}_measured_bytes"] = float(peak)
                row[f"{prefix}_rel_error"] = row[f"{prefix}_predicted_bytes"] / peak - 1.0
        rows.append(row)
    return rows
