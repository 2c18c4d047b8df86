"""Timing that covers all device work and leaves the per-call overhead out of the number.

Rules (DESIGN.md, measuring 1):

- a sample ends when the device has finished, never when the kernels were launched: on CUDA it is read
  from CUDA events recorded on the stream (as triton's ``do_bench`` does), elsewhere from ``perf_counter``
  after a device synchronize;
- a call shorter than the profile's ``sample_min_s`` (about 1 ms) is timed in a block of back-to-back
  calls per sample and the block time divided by the calls (as ``torch.utils.benchmark``'s
  ``blocked_autorange`` does), so the constant cost of one sample (Python dispatch, the first launch, the
  synchronize round trip, reading the clock) shrinks by the block size instead of landing in every call;
- optionally an L2 flush before each call (``do_bench``'s ``cache`` buffer), outside the timed events;
- warmup is excluded and counted; rounds are sized from a warmup estimate within the profile's bounds;
  the raw samples are kept (one per block, in seconds per call).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench_lib.harness import device as devices

Clock = Callable[[], float]
MAX_CALLS_PER_SAMPLE = 100_000  # a call of ~10 ns (nothing at all) still ends a 1 ms block


@dataclass(frozen=True)
class Samples:
    """What one case's timed rounds measured.

    block_s: seconds of each sample's block of ``calls_per_sample`` back-to-back calls (raw, as read).
    timer:   ``cuda_events`` (device time between events on the stream) or ``perf_counter`` (host clock
             after a synchronize).
    l2_flush_bytes: size of the buffer zeroed before every call to evict the L2 cache; 0 when off.
    """

    block_s: tuple[float, ...]
    calls_per_sample: int
    timer: str
    l2_flush_bytes: int = 0

    @property
    def per_call_s(self) -> list[float]:
        """The samples: seconds per call, one per block (block time / calls in it)."""
        return [b / self.calls_per_sample for b in self.block_s]

    def metrics(self) -> dict[str, int | str]:
        return {"calls_per_sample": self.calls_per_sample, "timer": self.timer, "l2_flush_bytes": self.l2_flush_bytes}


def wall(fn: Callable[[], object], device: torch.device, clock: Clock = time.perf_counter) -> float:
    """Seconds for one call of ``fn`` including its device work and the synchronize round trip (an upper
    bound for a short call: for estimates and end-to-end timings). Earlier queued work is drained first."""
    devices.synchronize(device)
    start = clock()
    fn()
    devices.synchronize(device)
    return clock() - start


def new_event():
    """A CUDA event that can be timed (tests replace this with a fake device's event)."""
    return torch.cuda.Event(enable_timing=True)


def new_flush_buffer(nbytes: int, device: torch.device) -> torch.Tensor:
    """The buffer zeroed before each call to evict L2 (do_bench allocates 256 MB of int32 for this)."""
    return torch.empty(nbytes, dtype=torch.int8, device=device)


def block_events(fn: Callable[[], object], device: torch.device, calls: int, flush=None) -> float:
    """Device seconds of ``calls`` back-to-back calls, read from CUDA events on the stream.

    No host synchronize between the calls: the start event completes when the device reaches it (so
    earlier queued work is not charged), the calls queue behind it, and only the first one's launch can
    leave the device idle. With ``flush``, the buffer is zeroed before every call outside an event pair of
    its own, and the block time is the sum of the pairs.
    """
    if flush is None:
        start, end = new_event(), new_event()
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        devices.synchronize(device)
        return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds
    pairs = []
    for _ in range(calls):
        flush.zero_()  # every call starts with a cold L2, as in do_bench
        start, end = new_event(), new_event()
        start.record()
        fn()
        end.record()
        pairs.append((start, end))
    devices.synchronize(device)
    return sum(s.elapsed_time(e) for s, e in pairs) / 1e3


def block_host(fn: Callable[[], object], device: torch.device, calls: int, clock: Clock = time.perf_counter) -> float:
    """Seconds of ``calls`` back-to-back calls on the host clock, synchronized before and after."""
    devices.synchronize(device)
    start = clock()
    for _ in range(calls):
        fn()
    devices.synchronize(device)
    return clock() - start


def measure(fn: Callable[[], object], device: torch.device, rounds: int, calls_per_sample: int = 1,
            l2_flush_bytes: int = 0, clock: Clock = time.perf_counter) -> Samples:
    """``rounds`` samples of ``calls_per_sample`` calls each: CUDA events on CUDA, the host clock elsewhere.

    ``l2_flush_bytes`` applies on CUDA only (a CPU's caches are not flushed; 0 is recorded there).
    """
    if rounds < 1 or calls_per_sample < 1:
        raise ValueError("need rounds >= 1 and calls_per_sample >= 1")
    if torch.device(device).type == "cuda":
        flush = new_flush_buffer(l2_flush_bytes, device) if l2_flush_bytes else None
        blocks = tuple(block_events(fn, device, calls_per_sample, flush) for _ in range(rounds))
        return Samples(blocks, calls_per_sample, "cuda_events", l2_flush_bytes)
    blocks = tuple(block_host(fn, device, calls_per_sample, clock) for _ in range(rounds))
    return Samples(blocks, calls_per_sample, "perf_counter", 0)


def replay_clock(samples: Samples) -> Clock:
    """A clock that reads 0, then the first block's seconds, 0, the second's, ...: pytest-benchmark's
    ``pedantic`` reads its timer before and after each round, so with this clock it records exactly the
    blocks effbench measured (and divides them by its ``iterations``, the calls per sample). Named after
    the timer that measured them, which is what the run file's ``options.timer`` then says."""
    reads = iter([x for block in samples.block_s for x in (0.0, block)])

    def clock() -> float:
        return next(reads)

    clock.__name__ = samples.timer
    return clock


def calls_per_sample(estimate_s: float | None, sample_min_s: float) -> int:
    """Calls per sample so that one sample lasts at least ``sample_min_s``; 1 for slower calls or no estimate."""
    if estimate_s is None or estimate_s <= 0 or estimate_s >= sample_min_s:
        return 1
    return min(MAX_CALLS_PER_SAMPLE, math.ceil(sample_min_s / estimate_s))


@dataclass(frozen=True)
class Plan:
    """How a case's timed rounds run: ``rounds`` samples of ``calls_per_sample`` calls, after
    ``warmup_calls`` untimed calls whose median gave ``estimate_s`` (seconds per call; None without warmup)."""

    rounds: int
    calls_per_sample: int
    warmup_calls: int
    estimate_s: float | None


def plan(fn: Callable[[], object], device: torch.device, profile, clock: Clock = time.perf_counter) -> Plan:
    """Warm up and size the timed rounds from the profile (warmup_rounds, sample_min_s, min/max_rounds,
    target_time_s), as do_bench sizes its repeat count from an estimate.

    The per-call warmup estimate includes one synchronize round trip, so a short call reads long: when it
    says "block", one block of the planned size (untimed, counted as warmup) refines the estimate first.
    """
    estimates = [wall(fn, device, clock) for _ in range(profile.warmup_rounds)]
    warmup_calls = len(estimates)
    estimate = statistics.median(estimates) if estimates else None
    calls = calls_per_sample(estimate, profile.sample_min_s)
    if calls > 1:
        estimate = measure(fn, device, 1, calls, clock=clock).per_call_s[0]
        warmup_calls += calls
        calls = calls_per_sample(estimate, profile.sample_min_s)
    rounds = plan_rounds(estimate * calls if estimate else None, profile.min_rounds, profile.max_rounds,
                         profile.target_time_s)
    return Plan(rounds, calls, warmup_calls, estimate)


def plan_rounds(estimate_s: float | None, min_rounds: int, max_rounds: int, target_time_s: float) -> int:
    """Rounds (samples) so that timing takes about ``target_time_s``, never fewer than ``min_rounds``.

    ``estimate_s``: the expected seconds of one sample (one block).
    """
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
