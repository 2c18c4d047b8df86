"""Per-token timing inside one ``generate`` call: time to first token, decode time and inter-token latency
from the same clock readings (optimum-benchmark's per-token latency tracker is the model).

:class:`TokenClock` is a transformers ``LogitsProcessor``: ``generate`` calls it once per new token, right
after the forward that produced that token's logits. Each call synchronizes the device and reads the
clock, so reading i is the moment token i's logits exist on the device. With ``t0`` read just before
``generate`` starts (after a synchronize):

- ``ttft_s``  = t_1 - t0: prefill plus the first token;
- ``decode_s`` = t_n - t_1: the other n - 1 tokens, one forward each;
- inter-token latencies t_{i+1} - t_i, pooled over calls for p50/p90/p99.

Decode is never a difference of two separately measured medians: both ends come from one call. On CUDA
the per-token synchronize costs little, because ``generate`` already waits on the device every step (it
reads whether all sequences have finished); :func:`clock_overhead_s` measures the hook's own cost.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from bench_lib.harness import device as devices

Clock = Callable[[], float]
PERCENTILES = (50, 90, 99)


class TokenClock:
    """A ``LogitsProcessor`` that stamps the clock at every new token; one ``stamps`` list per call.

    Subclassing transformers' ``LogitsProcessor`` is not needed: ``generate`` only calls it.
    """

    def __init__(self, device: torch.device, clock: Clock = time.perf_counter):
        self.device, self.clock = device, clock
        self.stamps: list[float] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        devices.synchronize(self.device)
        self.stamps.append(self.clock())
        return scores

    def start(self) -> float:
        """Drain queued work, clear the stamps and read t0 (call right before ``generate``)."""
        devices.synchronize(self.device)
        self.stamps = []
        return self.clock()


def traced(generate: Callable[[list], object], device: torch.device, traces: list, clock: Clock = time.perf_counter):
    """Zero-argument callable: ``generate(logits_processors)`` with a fresh :class:`TokenClock`; each call
    appends ``(t0, stamps)`` to ``traces``."""

    def run():
        tc = TokenClock(device, clock)
        t0 = tc.start()
        out = generate([tc])
        traces.append((t0, list(tc.stamps)))
        return out

    return run


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(traces: list[tuple[float, list[float]]], batch: int, new_tokens: int) -> dict[str, float | int]:
    """Per-token metrics of the timed calls' traces (each: t0 and ``new_tokens`` stamps).

    ttft_s and decode_s are medians over calls of quantities read within each call; decode_tokens_per_s =
    batch * (new_tokens - 1) / decode_s; itl_p*_s pool every inter-token interval of every call.
    """
    if not traces:
        raise ValueError("no timed generate call was traced")
    bad = [len(s) for _, s in traces if len(s) != new_tokens]
    if bad:
        raise ValueError(f"a traced call stamped {bad[0]} tokens, not the fixed {new_tokens}")
    if new_tokens < 2:
        raise ValueError("decode needs at least 2 new tokens (the first token is the prefill's)")
    ttft = [s[0] - t0 for t0, s in traces]
    decode = [s[-1] - s[0] for _, s in traces]
    gaps = [b - a for _, s in traces for a, b in zip(s[:-1], s[1:], strict=True)]
    decode_s = statistics.median(decode)
    out: dict[str, float | int] = {
        "ttft_s": statistics.median(ttft),
        "decode_s": decode_s,
        "decode_tokens_per_s": batch * (new_tokens - 1) / decode_s,
        "per_token_calls": len(traces),
    }
    for q in PERCENTILES:
        out[f"itl_p{q}_s"] = _percentile(gaps, q)
    return out


def clock_overhead_s(device: torch.device, calls: int = 2000, clock: Clock = time.perf_counter) -> float:
    """Seconds one :class:`TokenClock` call costs (its synchronize, clock read and append), averaged over
    ``calls`` calls on a dummy scores tensor: what the tracker adds to every generated token."""
    tc = TokenClock(device, clock)
    ids = torch.zeros((1, 1), dtype=torch.long)
    scores = torch.zeros((1, 8), device=device)
    tc.start()
    start = time.perf_counter()
    for _ in range(calls):
        tc(ids, scores)
    return (time.perf_counter() - start) / calls
