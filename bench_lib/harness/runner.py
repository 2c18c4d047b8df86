"""Run one case through the whole harness and return its record; every case ends in exactly one outcome.

Order for a measurable case: build -> check (correctness, untimed, same inputs) -> warmup (counted, not
kept) -> timed rounds (raw samples) -> untimed memory repeat -> derived metrics. Failures are classified:
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

from bench_lib.harness import device as devices
from bench_lib.harness import memory, slowdown, timing
from bench_lib.harness.energy import EnergyMeter
from bench_lib.harness.workload import Case, CaseFailed, Context, Unsupported, Workload

# (synced fn, rounds) -> samples in seconds. The pytest plugin passes one backed by pytest-benchmark.
TimeRounds = Callable[[Callable[[], Any], int], list[float]]


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
    time_rounds: TimeRounds | None = None,
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
            _measure(work, ctx, rec, time_rounds)
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


def _measure(work: Workload, ctx: Context, rec: dict[str, Any], time_rounds: TimeRounds | None) -> None:
    profile, device = ctx.profile, ctx.device
    metrics = rec["metrics"]
    metrics.update(work.metrics)
    if work.check is not None:
        metrics.update(work.check() or {})

    # a forced round count marks an end-to-end case (a whole training run): no warmup repeats of it
    warmup = 0 if work.rounds is not None else profile.warmup_rounds
    estimates = [timing.wall(work.fn, device) for _ in range(warmup)]
    if work.rounds is not None:
        rounds = work.rounds
    else:
        estimate = sorted(estimates)[len(estimates) // 2] if estimates else None
        rounds = timing.plan_rounds(estimate, profile.min_rounds, profile.max_rounds, profile.target_time_s)
    with EnergyMeter(device) as meter:  # NVML's energy counter around the timed rounds (CUDA only)
        if time_rounds is None:
            samples = timing.sample(work.fn, device, rounds)
        else:
            samples = time_rounds(timing.synced(work.fn, device), rounds)
    rec["samples_s"] = list(samples)
    metrics.update(timing.summarize(samples, work.time_metric))
    metrics["warmup_rounds"] = len(estimates)
    if device.type == "cuda":  # energy_j etc., or energy_reason saying why not
        metrics.update(meter.metrics(calls=rounds))

    probe = memory.measure(work.memory_fn or work.fn, device)
    rec["memory"] = probe.result
    metrics["peak_bytes"] = probe.peak_bytes
    metrics["extra_peak_bytes"] = probe.extra_bytes

    if work.derive is not None:
        metrics.update(work.derive(metrics["time_s"]))
