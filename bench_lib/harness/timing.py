"""Timing that covers all device work.

Rule (DESIGN.md, measuring 1): synchronize the device before reading the clock, so a sample is the time
until the device finished, never the time to *launch* kernels. Warmup runs are excluded from the samples
but counted, rounds are sized from a warmup estimate (as triton's ``do_bench`` does) within the profile's
bounds, and the raw samples are kept.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch

from bench_lib.harness import device as devices

Clock = Callable[[], float]


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` followed by a device synchronize: the timed unit whose duration includes all device work."""

    def run():
        out = fn()
        devices.synchronize(device)
        return out

    return run


def wall(fn: Callable[[], object], device: torch.device, clock: Clock = time.perf_counter) -> float:
    """Seconds for one call of ``fn`` including its device work. Earlier queued work is drained first."""
    devices.synchronize(device)
    start = clock()
    fn()
    devices.synchronize(device)
    return clock() - start


def sample(fn: Callable[[], object], device: torch.device, rounds: int, clock: Clock = time.perf_counter) -> list[float]:
    """``rounds`` timed calls, one sample (seconds) per call."""
    return [wall(fn, device, clock) for _ in range(rounds)]


def plan_rounds(estimate_s: float | None, min_rounds: int, max_rounds: int, target_time_s: float) -> int:
    """Rounds so that timing takes about ``target_time_s``, never fewer than ``min_rounds``."""
    if estimate_s is None or estimate_s <= 0:
        return min_rounds
    return max(min_rounds, min(max_rounds, math.ceil(target_time_s / estimate_s)))


def summarize(samples: list[float], name: str = "time_s") -> dict[str, float | int]:
    """Median and interquartile range of ``samples`` (seconds) under ``name``; ``time_s`` always present."""
    if not samples:
        raise ValueError("no timing samples")
    median = statistics.median(samples)
    if len(samples) >= 2:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
        iqr = q3 - q1
    else:
        iqr = 0.0
    out: dict[str, float | int] = {"time_s": median, "time_s_iqr": iqr, "time_s_min": min(samples), "rounds": len(samples)}
    if name != "time_s":
        out[name] = median
        out[f"{name}_iqr"] = iqr
    return out
