"""``effbench fit``: the largest sequence length or batch that runs within the device memory or a budget.

    effbench fit --suite attention --case eager-fwd_bwd-fp32-... --vary seq_len --memory-budget 2GiB
    effbench fit --suite finetune --vary batch --output results/fit.jsonl

A size *runs* when the case's callable completes without running out of memory and its measured peak (the
untimed probe of :mod:`bench_lib.harness.memory`) stays within the budget. The search doubles from ``--min`` until a
size fails, then bisects on multiples of ``--multiple``; the answer is proven on both sides: the largest size
that ran and the next multiple up, which did not. Memory is assumed to grow with size (true for sequence
length and batch). Each search becomes one case record of suite ``fit`` with every probe in ``series``.

What is compared with the budget: on CUDA, the torch allocator's peak during the call minus what torch held
before the case was built (the case's inputs, weights and work; no CUDA context); the default budget is the
memory free on the device. On CPU, the peak of PyTorch's live CPU allocations from before the case was built
through the call (profiler memory events: ``torch_cpu_added_peak_bytes`` of the build and the call); a budget
is required (the real limit would swap or kill the machine). Not the RSS high-water mark: it carries the
allocator's history (a probe reusing heap freed by the one before read 6 MiB low at 16 MiB) and a search needs
a size's measure to be the same every time it is taken.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from bench_lib.harness import device as devices
from bench_lib.harness import memory, profiles
from bench_lib.harness.units import format_bytes, parse_bytes
from bench_lib.harness.workload import Case, Context, Unsupported

VARY = {"seq": ("seq_len", "seq"), "batch": ("batch", "batch_size")}


@dataclass
class Probe:
    size: int
    outcome: str  # ok | over_budget | oom
    peak_bytes: float | None = None
    reason: str | None = None


@dataclass
class FitResult:
    largest_ok: int | None  # None: not even the smallest size runs
    smallest_failing: int | None  # None: the largest size allowed still runs
    budget_bytes: float
    probes: list[Probe] = field(default_factory=list)


def largest_that_fits(probe: Callable[[int], float], budget_bytes: float, lo: int, hi: int, multiple: int = 1) -> FitResult:
    """Largest multiple of ``multiple`` in [lo, hi] whose ``probe(size)`` (peak bytes) is within the budget.

    ``probe`` raises an out-of-memory error (anything :func:`bench_lib.harness.device.is_oom` recognises) when the size
    does not run; any other exception propagates. Memory must not shrink as the size grows.
    """
    if multiple < 1 or lo < multiple or lo % multiple or hi < lo:
        raise ValueError(f"need multiple >= 1, lo a positive multiple of it and hi >= lo (lo={lo}, hi={hi}, multiple={multiple})")
    result = FitResult(None, None, budget_bytes)

    def runs(size: int) -> bool:
        try:
            peak = probe(size)
        except Exception as exc:
            if not devices.is_oom(exc):
                raise
            result.probes.append(Probe(size, "oom", None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))
            return False
        result.probes.append(Probe(size, "ok" if peak <= budget_bytes else "over_budget", peak))
        return peak <= budget_bytes

    if not runs(lo):
        result.smallest_failing = lo
        return result
    ok, fail = lo, None
    while fail is None and ok < hi:  # doubling until a size fails or hi is reached
        cand = min(ok * 2, hi // multiple * multiple)
        if cand <= ok:
            break
        if runs(cand):
            ok = cand
        else:
            fail = cand
    while fail is not None and fail - ok > multiple:  # bisection on multiples
        mid = (ok + fail) // 2 // multiple * multiple
        if runs(mid):
            ok = mid
        else:
            fail = mid
    result.largest_ok, result.smallest_failing = ok, fail
    return result


def _held(device: torch.device) -> float:
    """What torch holds on the CUDA device before a case is built (the budget counts from here)."""
    devices.release_memory(device)
    return float(torch.cuda.memory_allocated(device))


def suite_probe(build, base: Case, key: str, ctx: Context) -> Callable[[int], float]:
    """``probe(size)``: build ``base`` with ``params[key] = size``, run its callable once under the memory
    probe, return the bytes it used (see the module docstring); raises out-of-memory errors unchanged."""

    def probe(size: int) -> float:
        case = Case(base.suite, f"{base.id}-fit-{key}{size}", {**base.params, key: size})
        if ctx.device.type == "cuda":
            before = _held(ctx.device)
            work = build(case, ctx)
            if isinstance(work, Unsupported):
                raise RuntimeError(f"case {case.id} is not supported here: {work.reason}")
            try:
                result = memory.measure(work.memory_fn or work.fn, ctx.device).result
            finally:
                if work.teardown is not None:
                    work.teardown()
                work = None
                devices.release_memory(ctx.device)
            return float(result["torch_peak_allocated_bytes"]) - before
        built: list = []

        def build_and_call():  # on CPU the build happens under the probe: its tensors count, as on CUDA
            work = build(case, ctx)
            built.append(work)
            if not isinstance(work, Unsupported):
                (work.memory_fn or work.fn)()

        unsupported = None
        try:
            result = memory.measure(build_and_call, ctx.device).result
        finally:
            for work in built:
                if isinstance(work, Unsupported):
                    unsupported = work
                elif work.teardown is not None:
                    work.teardown()
            built.clear()
            devices.release_memory(ctx.device)
        if unsupported is not None:
            raise RuntimeError(f"case {case.id} is not supported here: {unsupported.reason}")
        return float(result["torch_cpu_added_peak_bytes"])

    return probe


def fit_record(suite: str, base: Case, key: str, res: FitResult, multiple: int, lo: int, hi: int,
               started_at: str, seconds: float) -> dict:
    """The search as a case record (suite ``fit``): metrics hold the answer, series every probe."""
    ok_peak = next((p.peak_bytes for p in res.probes if p.size == res.largest_ok), None)
    return {
        "type": "case", "id": f"fit-{suite}-{base.id}-{key}", "suite": "fit",
        "case": {**base.params, "target_suite": suite, "base_case": base.id, "vary": key, "min": lo, "max": hi,
                 "multiple": multiple, "budget_bytes": res.budget_bytes},
        "outcome": "ok", "reason": None,
        "metrics": {"largest_fit": res.largest_ok, "smallest_fail": res.smallest_failing,
                    "largest_fit_peak_bytes": ok_peak, "budget_bytes": res.budget_bytes,
                    "probes": len(res.probes), "search_s": seconds},
        "memory": {}, "samples_s": [], "series": {"probes": [asdict(p) for p in res.probes]},
        "started_at": started_at, "finished_at": None,
    }


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", required=True, choices=("attention", "finetune"))
    p.add_argument("--case", help="id of the grid case to grow (default: the grid's first case)")
    p.add_argument("--profile", default="quick", choices=profiles.PROFILE_CHOICES, help="grid the case comes from")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a case parameter")
    p.add_argument("--vary", choices=sorted(VARY), default="seq", help="grow the sequence length or the batch")
    p.add_argument("--min", type=int, default=None, help="smallest size (default: --multiple)")
    p.add_argument("--max", type=int, default=None, help="largest size tried (default: 2^20 tokens or 65536 sequences)")
    p.add_argument("--multiple", type=int, default=None, help="sizes are multiples of this (default: 64 for seq, 1 for batch)")
    p.add_argument("--memory-budget", help="e.g. 2GiB; default on CUDA: the memory free on the device; required on CPU")
    p.add_argument("--device", default="auto", choices=devices.DEVICE_CHOICES)
    p.add_argument("--output", help="append the result to this journal (.jsonl)")
    p.add_argument("--format", choices=("text", "json"), default="text")


def _fail(message: str) -> int:
    print(f"effbench fit: {message}", file=sys.stderr)
    return 2


def _param_value(name: str, text: str, current):
    """``--param NAME=TEXT`` as a value of the parameter's kind; ``ValueError`` says what is wrong.

    A parameter that is a size or count in the grid (an int) must stay a whole number >= 1 (``heads=-2``
    once reached the model builder); one that is text or a flag stays that kind."""
    value = _value(text)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"--param {name}={text}: {name} is true or false")
    elif isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--param {name}={text}: {name} is a size, a whole number >= 1")
    elif isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"--param {name}={text}: {name} is a positive number")
    elif isinstance(current, str) and not isinstance(value, str):
        value = text  # a name such as dtype=16 stays text; the case's builder judges it
    elif current is None and isinstance(value, (dict, list)):
        raise ValueError(f"--param {name}={text}: a parameter is a single value")
    return value


def _sizes(args) -> tuple[int, int, int]:
    """(lo, hi, multiple) from --min, --max and --multiple, checked before anything runs."""
    multiple = args.multiple if args.multiple is not None else (64 if args.vary == "seq" else 1)
    lo = args.min if args.min is not None else multiple
    hi = args.max if args.max is not None else (2**20 if args.vary == "seq" else 65536)
    if multiple < 1:
        raise ValueError(f"--multiple must be 1 or more, not {multiple}")
    if lo < multiple or lo % multiple:
        raise ValueError(f"--min {lo} must be a positive multiple of --multiple {multiple}")
    if hi < lo:
        raise ValueError(f"--min {lo} is above --max {hi}: nothing to search")
    return lo, hi, multiple


def main(args) -> int:
    from bench_lib.harness import env, journal, runner

    try:
        device = devices.resolve(args.device)
        lo, hi, multiple = _sizes(args)
        budget = parse_bytes(args.memory_budget) if args.memory_budget else None
    except (ValueError, RuntimeError, OverflowError) as exc:  # --device cuda without one, a size <= 0, ...
        return _fail(str(exc))
    if budget is None and device.type == "cuda":
        devices.release_memory(device)
        budget = torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device)
    elif budget is None:
        return _fail("--memory-budget is required on CPU (e.g. --memory-budget 2GiB)")
    grid = profiles.cases(args.suite, args.profile, device.type)
    base = next((c for c in grid if c.id == args.case), None) if args.case else (grid[0] if grid else None)
    if base is None:
        return _fail(f"no case {args.case!r} in the {args.suite} {args.profile} grid for {device.type}")
    params = dict(base.params)
    for kv in args.param:
        name, sep, value = kv.partition("=")
        if not sep:
            return _fail(f"--param wants KEY=VALUE, not {kv!r}")
        try:
            params[name] = _param_value(name, value, params.get(name))
        except ValueError as exc:
            return _fail(str(exc))
    base = Case(base.suite, base.id, params)
    key = next((k for k in VARY[args.vary] if k in params), None)
    if key is None:
        return _fail(f"case {base.id} has no {' or '.join(VARY[args.vary])} parameter to grow")
    build = importlib.import_module(f"bench_lib.suites.{args.suite}").build
    ctx = Context(device=device, profile=profiles.get(args.profile))
    started, t0 = runner.now(), time.perf_counter()
    with memory.exact_rss(device):
        res = largest_that_fits(suite_probe(build, base, key, ctx), budget, lo, hi, multiple)
    rec = fit_record(args.suite, base, key, res, multiple, lo, hi, started, time.perf_counter() - t0)
    rec["finished_at"] = runner.now()
    if args.output:
        out = journal.Journal(args.output)
        if not out.exists():
            out.write_header({"machine_info": {"effbench": env.record(device, args.profile)},
                              "profile": args.profile, "device": str(device), "started_at": started})
        out.append(rec)
    if args.format == "json":
        print(json.dumps(rec, indent=1, default=str))
    else:
        for p in res.probes:
            print(f"  {key}={p.size:<8} {p.outcome:<12} {format_bytes(p.peak_bytes)}")
        print(f"{args.suite} {base.id}: largest {key} within {format_bytes(budget)} = {res.largest_ok}"
              f" (next step {res.smallest_failing}: {'did not fit' if res.smallest_failing else 'not reached'})")
    return 0
