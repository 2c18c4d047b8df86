"""Run one case through the whole harness and return its record; every case ends in exactly one outcome.

Order for a measurable case: build -> enter the workload's ``around`` context once -> check (correctness,
untimed, same inputs) -> warmup (counted, not kept; sizes the rounds and the calls per sample) -> timed
rounds (raw samples) -> untimed memory repeat -> untimed energy window (CUDA) -> derived metrics. Failures are classified:
``unsupported`` (build said so), ``oom`` (caught, memory released, the run goes on), ``timeout`` (the
profile's per-case limit), ``error`` (a wrong result or any other exception). ``crashed`` is written by
whoever finds the process died mid-case (see journal / supervisor).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from bench_lib.harness import compiled, energy, memory, slowdown, timing
from bench_lib.harness import device as devices
from bench_lib.harness.workload import Case, CaseFailed, Context, Unsupported, Workload

# receives the timed rounds' samples as measured; the pytest plugin passes one that hands them to
# pytest-benchmark (so --benchmark-json and pytest-benchmark compare see the same numbers)
RecordSamples = Callable[[timing.Samples], None]


class CaseTimeout(Exception):
    """The case ran past its time limit."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise :class:`CaseTimeout` in the main thread after ``seconds`` (SIGALRM).

    Interrupts Python-level hangs; a hang inside one C call is cut by ``effbench run``'s watchdog instead.
    """
    usable = seconds and seconds > 0 and threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise CaseTimeout(f"case exceeded its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def new_record(case: Case) -> dict[str, Any]:
    return {
        "type": "case",
        "id": case.id,
        "suite": case.suite,
        "case": dict(case.params),
        "outcome": None,
        "reason": None,
        "metrics": {},
        "memory": {},
        "samples_s": [],
        "series": {},
        "started_at": now(),
        "finished_at": None,
    }


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def run_case(
    build: Callable[[Case, Context], Workload | Unsupported],
    case: Case,
    ctx: Context,
    record_samples: RecordSamples | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Build, check, time and probe ``case``; return its record (see DESIGN.md, results contract)."""
    rec = new_record(case)
    profile = ctx.profile
    limit = profile.case_timeout_s if timeout_s is None else timeout_s
    work: Workload | Unsupported | None = None
    try:
        with time_limit(limit):
            work = slowdown.planted(build(case, ctx), case, ctx.device)  # test-only: EFFBENCH_PLANT_SLOWDOWN
            if isinstance(work, Unsupported):
                rec["outcome"], rec["reason"] = "unsupported", work.reason
                return rec
            with work.around() if work.around is not None else contextlib.nullcontext():
                _measure(work, ctx, rec, record_samples)
        rec["outcome"] = "ok"
    except CaseTimeout as exc:
        rec["outcome"], rec["reason"] = "timeout", str(exc)
    except CaseFailed as exc:
        rec["outcome"], rec["reason"] = "error", _reason(exc)
        rec["metrics"].update(exc.metrics)
    except Exception as exc:  # every other failure is data; the traceback is dropped so memory can go
        rec["outcome"] = "oom" if devices.is_oom(exc) else "error"
        rec["reason"] = _reason(exc)
    finally:
        if isinstance(work, Workload):
            rec["series"] = {k: list(v) for k, v in work.series.items()}
            if work.teardown is not None:
                with contextlib.suppress(Exception):
                    work.teardown()
        work = None
        devices.release_memory(ctx.device)
        rec["finished_at"] = now()
    return rec


def _measure(work: Workload, ctx: Context, rec: dict[str, Any], record_samples: RecordSamples | None) -> None:
    profile, device = ctx.profile, ctx.device
    metrics = rec["metrics"]
    metrics.update(work.metrics)
    if work.compiled:  # the call that compiles, timed apart, before check and warmup
        graph_breaks = compiled.graph_breaks()
        metrics["compile_s"] = timing.wall(work.fn, device)
        metrics["graph_breaks"] = compiled.graph_breaks() - graph_breaks
    if work.check is not None:
        metrics.update(work.check() or {})
    if work.external is not None:  # measured in child processes (their own clocks, barriers, memory views)
        ext = work.external()
        rec["samples_s"] = list(ext["samples_s"])
        metrics.update(timing.summarize(rec["samples_s"], work.time_metric))
        rec["memory"] = ext["memory"]
        primary = ext["memory"].get("primary")
        before = {"cpu_peak_rss_bytes": "cpu_rss_before_bytes",
                  "torch_peak_allocated_bytes": "torch_allocated_before_bytes"}.get(primary or "")
        metrics["peak_bytes"] = ext["memory"].get(primary or "")
        if metrics["peak_bytes"] is not None and ext["memory"].get(before or "") is not None:
            metrics["extra_peak_bytes"] = max(0, metrics["peak_bytes"] - ext["memory"][before])
        if work.derive is not None:
            metrics.update(work.derive(metrics["time_s"]))
        return

    end_to_end = work.rounds is not None  # a forced round count marks a whole training run: no warmup repeats
    if end_to_end:
        plan = timing.Plan(rounds=work.rounds, calls_per_sample=1, warmup_calls=0, estimate_s=None)
    else:
        plan = timing.plan(work.fn, device, profile)
    if work.on_timing is not None:
        work.on_timing("start")
    before = compiled.compilations() if work.compiled else 0
    samples = timing.measure(work.fn, device, plan.rounds, plan.calls_per_sample, profile.l2_flush_bytes)
    if work.on_timing is not None:
        work.on_timing("stop")
    if work.compiled:
        metrics["recompiles"] = compiled.compilations() - before
        if metrics["recompiles"]:
            raise CaseFailed(f"{metrics['recompiles']} torch.compile recompilation(s) during the timed rounds: "
                             "the samples include compile time", dict(metrics))
    if record_samples is not None:
        record_samples(samples)
    rec["samples_s"] = samples.per_call_s
    metrics.update(timing.summarize(rec["samples_s"], work.time_metric))
    metrics.update(samples.metrics())
    metrics["warmup_rounds"] = 0 if end_to_end else profile.warmup_rounds
    metrics["warmup_calls"] = plan.warmup_calls

    probe = memory.measure(work.memory_fn or work.fn, device)
    rec["memory"] = probe.result
    metrics["peak_bytes"] = probe.peak_bytes
    metrics["extra_peak_bytes"] = probe.extra_bytes

    if device.type == "cuda":  # energy_j etc., or energy_reason saying why not
        if end_to_end:
            metrics.update(energy_j=None, energy_reason="end-to-end case: an energy window would repeat the whole run")
        else:
            metrics.update(energy.measure_window(work.fn, device, profile.energy_window_s))

    if work.derive is not None:
        metrics.update(work.derive(metrics["time_s"]))
