"""Interleaved pairs: how ``effbench ab`` measures one case on both sides, and its journal of pairs.

Both workers build the case (at the same time: building is not timed), then the parent asks them for
timed samples in pairs, in ABBA blocks (:func:`pair_order`, recorded with every pair), so that every B
sample has an A sample taken right next to it and each side is first in exactly half of the pairs. A sample
is the fastest of its side's K calls (:func:`sample_of`), K at least ``min_rounds_per_sample`` and sized
from the warmup estimate so one sample takes about ``sample_time_s`` (the same K on both sides); within a
pair the two sides' calls alternate one by one (:func:`call_order`), and every call's time is kept. Each pair is appended to the journal as it is taken (flushed and fsynced): a
run killed at any moment keeps every pair, and ``--resume`` continues a case from its last pair. After the
pairs each side takes one untimed memory probe.

A side whose worker dies ends the case as ``crashed`` on that side, one that stops answering as
``timeout``; the worker is restarted for the next case and the run goes on.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench_lib.gate.ab_sides import WorkerDied, WorkerTimeout

SIDES = ("A", "B")


@dataclass(frozen=True)
class PairSettings:
    """pairs: pairs per case (more: a tighter interval; with n pairs the smallest p is 2 / 2^n);
    sample_time_s: about how long one sample's K calls take (more: less noise per pair, longer runs);
    max_rounds_per_sample: cap on K; reply_timeout_s: the longest wait for any one reply (build, sample);
    min_rounds_per_sample: K's floor, so that even a slow case's sample is the fastest of a few calls."""

    pairs: int = 20
    sample_time_s: float = 0.05
    max_rounds_per_sample: int = 100
    reply_timeout_s: float = 600.0
    seed: int = 0
    min_rounds_per_sample: int = 3
    processes: int = 1

    def __post_init__(self):
        if (self.pairs < 1 or self.sample_time_s <= 0 or self.reply_timeout_s <= 0
                or not 1 <= self.min_rounds_per_sample <= self.max_rounds_per_sample
                or self.processes < 1 or (self.processes > 1 and self.pairs < 2 * self.processes)):
            raise ValueError("need pairs >= 1, sample_time_s > 0, 1 <= min_rounds_per_sample <= max_rounds_per_sample, "
                             "reply_timeout_s > 0, processes >= 1 and, with several processes, at least 2 pairs each")


def block_bounds(s: PairSettings) -> list[tuple[int, int]]:
    """The pair indices [start, stop) each process pair takes: ``processes`` blocks of about equal size, each
    boundary on an even index so every block holds whole AB/BA couples (:func:`pair_order`) where it can."""
    if s.processes == 1:
        return [(0, s.pairs)]
    cuts = [0] + [2 * round(r * s.pairs / (2 * s.processes)) for r in range(1, s.processes)] + [s.pairs]
    return list(zip(cuts[:-1], cuts[1:]))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def rounds_per_sample(estimates_s: list[float], s: PairSettings) -> int:
    """K calls per sample: about ``sample_time_s`` for the faster side (so neither side's sample is one call
    too coarse), at least ``min_rounds_per_sample``, at most the cap."""
    fastest = min((e for e in estimates_s if e and e > 0), default=None)
    if fastest is None:
        return s.min_rounds_per_sample
    return max(s.min_rounds_per_sample, min(s.max_rounds_per_sample, math.ceil(s.sample_time_s / fastest)))


def sample_of(calls_s: list[float]) -> float:
    """One side's sample from its K calls in a pair: the fastest.

    On a shared machine another tenant only ever adds time to a call (it takes the core for part of it), never
    removes any, so the fastest of a few calls is the least disturbed estimate of the call's own cost; a
    median of single calls keeps the disturbance. On the 2-core test machine at load 3.5, with one call per
    sample (the median of K=1), an A/A run's per-call times scattered 1-5x and one case out of 15 read B/A
    0.79 with p_holm 0.006, and a planted +10% was caught in 4 of 10 cases at 40 pairs. A planted slowdown
    scales every call, so it scales the fastest too. What this does not see: a change that only makes some
    calls slow (a stall every tenth call); the pairs keep every call's time for that.
    """
    return min(calls_s)


def pair_order(seed: int, key: str, i: int) -> str:
    """"AB" or "BA" for pair ``i`` of case ``key``: ABBA blocks (AB, BA, AB, BA, ...) whose phase is a fair coin
    drawn from (seed, case), so it is reproducible, and the same on resume.

    Exactly balanced, not merely random: the first sample of a pair comes after the parent's journal write and
    the machine's other tenants have had the core meanwhile, and it ran 2-3% slower than the second on average
    over the A/A trials on the shared 2-core machine (up to 20% for one case at a time). A random order leaves
    that unbalanced by chance (14 BA against 6 AB in one 20-pair case, which then read B/A 1.26 in an A/A run);
    blocks cancel it within every two pairs.
    """
    phase = 0 if random.Random(f"{seed}/{key}").random() < 0.5 else 1
    return "AB" if (i + phase) % 2 == 0 else "BA"


def _failure(exc: Exception) -> tuple[str, str]:
    return ("timeout" if isinstance(exc, WorkerTimeout) else "crashed"), str(exc)


def _reply(rec: dict[str, Any], side: str, get: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """``get()``'s reply from ``side``'s worker, or None with that side's outcome and reason recorded: a worker
    that died or hung is crashed / timeout, a request it answered with an error is an error."""
    try:
        reply = get()
    except (WorkerDied, WorkerTimeout) as exc:
        rec["outcome"][side], rec["reason"][side] = _failure(exc)
        return None
    if not reply.get("ok"):
        rec["outcome"][side], rec["reason"][side] = "error", reply.get("error")
        return None
    return reply


def measure_case(case: dict[str, Any], workers: dict[str, Any], s: PairSettings, prior_pairs: list[dict[str, Any]],
                 write: Callable[[dict[str, Any]], None], progress: Callable[[str], None] = lambda line: None,
                 process: int = 0, stop: int | None = None, probe_memory: bool = True) -> dict[str, Any]:
    """Build ``case`` on both sides, take the pairs still missing after ``prior_pairs`` up to index ``stop``
    (default: all ``s.pairs``), each tagged with ``process`` (the block), probe memory when ``probe_memory``.

    ``workers``: {"A": worker, "B": worker}, each with ``send(request)``, ``receive(timeout_s)`` and
    ``request(request, timeout_s)`` (a :class:`bench_lib.gate.ab_sides.WorkerProcess` or a test's fake).
    Every pair is handed to ``write`` as soon as it is taken; returns the record of this block of the case
    (pairs excluded): a whole case's record when it is the only block (:func:`merge_blocks` joins several).
    """
    key = f"{case['suite']}/{case['id']}"
    rec: dict[str, Any] = {"type": "case", "key": key, "nodeid": case["nodeid"], "suite": case["suite"],
                           "id": case["id"], "params": case.get("params", {}), "started_at": now(),
                           "outcome": {}, "reason": {}, "metrics": {}, "memory": {}, "estimate_s": {},
                           "planted_factor": {}, "process": process}
    sent = {}
    for side in SIDES:  # both build at once: building and warming up are not timed
        try:
            workers[side].send({"op": "build", "nodeid": case["nodeid"]})
            sent[side] = True
        except (WorkerDied, WorkerTimeout) as exc:
            rec["outcome"][side], rec["reason"][side] = _failure(exc)
    for side in sent:
        reply = _reply(rec, side, lambda side=side: workers[side].receive(s.reply_timeout_s))
        if reply is None:
            continue
        rec["outcome"][side], rec["reason"][side] = reply["outcome"], reply.get("reason")
        rec["metrics"][side] = reply.get("metrics") or {}
        rec["planted_factor"][side] = reply.get("planted_factor", 1.0)
        if reply.get("estimate_s") is not None:
            rec["estimate_s"][side] = reply["estimate_s"]
    pairs = list(prior_pairs)
    if all(rec["outcome"].get(side) == "ok" for side in SIDES):
        k = prior_pairs[0]["rounds"] if prior_pairs else rounds_per_sample(list(rec["estimate_s"].values()), s)
        rec["rounds_per_sample"] = k
        rec["pids"] = {side: getattr(workers[side], "pid", None) for side in SIDES}
        _take_pairs(key, workers, s, k, pairs, rec, write, progress, process, s.pairs if stop is None else stop)
    if probe_memory and all(rec["outcome"].get(side) == "ok" for side in SIDES):
        for side in SIDES:  # one after the other: a device-wide memory view must not see the other side
            try:
                reply = workers[side].request({"op": "memory"}, s.reply_timeout_s)
                if reply.get("ok"):
                    rec["memory"][side] = reply.get("memory") or {}
            except (WorkerDied, WorkerTimeout) as exc:
                rec["outcome"][side], rec["reason"][side] = _failure(exc)
    for side in SIDES:
        try:
            if rec["outcome"].get(side) not in ("crashed", "timeout"):
                workers[side].request({"op": "close"}, s.reply_timeout_s)
        except (WorkerDied, WorkerTimeout):
            pass  # the case is measured; a worker that dies while tearing down is restarted for the next one
    rec["pairs_taken"] = len(pairs)
    rec["finished_at"] = now()
    if hasattr(os, "getloadavg"):  # how shared the machine was while this case ran (1, 5, 15 min)
        rec["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return rec


def block_failed(block: dict[str, Any]) -> bool:
    """A side did not end this block ``ok``: the case ends there, its later blocks are not taken."""
    return not all(block["outcome"].get(side) == "ok" for side in SIDES)


def merge_blocks(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's record from its blocks (in process order): the first failure on a side is that side's
    outcome, the build's metrics and estimate are the first block's, the memory probe the last block's
    (the only one probed), and ``processes`` says which worker processes took which block."""
    first, last = blocks[0], blocks[-1]
    rec = {**first, "type": "case", "memory": last.get("memory") or {}, "finished_at": last.get("finished_at"),
           "load_average": last.get("load_average"), "pairs_taken": last.get("pairs_taken")}
    rec.pop("process", None)
    rec.pop("pids", None)
    rec["outcome"], rec["reason"] = {}, {}
    for side in SIDES:
        failed = next((b for b in blocks if b["outcome"].get(side) != "ok"), None)
        rec["outcome"][side] = (failed or first)["outcome"].get(side)
        rec["reason"][side] = (failed or first)["reason"].get(side)
    rec["processes"] = [{"process": b.get("process", 0), "pids": b.get("pids"), "started_at": b.get("started_at"),
                         "finished_at": b.get("finished_at"), "outcome": b["outcome"]} for b in blocks]
    return rec


def call_order(order: str, k: int) -> str:
    """The sides of a pair's 2K calls, one call at a time: ``order`` then its reverse, K times ("AB", 3 ->
    "ABBAAB"). A neighbour's burst that starts in the middle of a pair then slows calls of both sides, and each
    side's fastest call is still one the burst missed; with each side's K calls in one block, the burst slowed
    one side's whole sample (a step of the fake machine between A's block and B's turned one pair of a +15% case
    into B/A 0.64, and its signed-rank p from 3e-5 to 5e-3)."""
    return "".join(order if j % 2 == 0 else order[::-1] for j in range(k))


def _take_pairs(key, workers, s: PairSettings, k: int, pairs: list, rec: dict, write, progress, process: int,
                stop: int) -> None:
    while len(pairs) < stop:
        i = len(pairs)
        order = pair_order(s.seed, key, i)
        calls = call_order(order, k)
        pair: dict[str, Any] = {"type": "pair", "key": key, "i": i, "order": order, "rounds": k, "calls": calls,
                                "process": process, "at": now()}
        samples: dict[str, list[float]] = {side: [] for side in SIDES}
        for side in calls:
            reply = _reply(rec, side, lambda side=side: workers[side].request({"op": "time", "rounds": 1},
                                                                              s.reply_timeout_s))
            if reply is None:
                return
            samples[side] += [float(x) for x in reply["samples_s"]]
        for side in SIDES:
            pair[f"{side.lower()}_samples_s"] = samples[side]
            pair[f"{side.lower()}_s"] = sample_of(samples[side])
        pairs.append(pair)
        write(pair)
        ratios = sorted(p["b_s"] / p["a_s"] for p in pairs if p["a_s"] > 0)
        if ratios:
            where = f" (process pair {process + 1}/{s.processes})" if s.processes > 1 else ""
            progress(f"{key}: pair {len(pairs)}/{s.pairs}{where}, median B/A {statistics.median(ratios):.3f}")


class PairJournal:
    """The JSON-lines journal of an ab run: a header, then pair and case lines, each flushed and fsynced."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def append(self, obj: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj, allow_nan=True, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def repair(self) -> bool:
        """Cut a torn last line (the run was killed while writing it) before anything is appended after it;
        True when there was one."""
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return False
        with open(self.path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())
        return True

    def read(self) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        """(header, finished case records by key, pairs by key). A torn last line (killed mid-write) is skipped."""
        header, cases, pairs, _ = self.read_all()
        return header, cases, pairs

    def read_all(self):
        """:meth:`read` plus the finished blocks: {(key, process): block record}."""
        lines = [line for line in self.path.read_text(encoding="utf-8").split("\n") if line.strip()]
        header, cases, pairs, blocks = None, {}, {}, {}
        for n, line in enumerate(lines, 1):
            try:
                obj = json.loads(line)
            except ValueError:
                if n == len(lines):
                    continue
                raise ValueError(f"{self.path}: line {n} is not valid JSON; this is not an intact ab journal") from None
            kind = obj.get("type")
            if kind == "header":
                header = obj
            elif kind == "case":
                cases[obj["key"]] = obj
            elif kind == "pair":
                pairs.setdefault(obj["key"], []).append(obj)
            elif kind == "block":
                blocks[(obj["key"], obj.get("process", 0))] = obj
        for key in pairs:
            pairs[key].sort(key=lambda p: p["i"])
        return header, cases, pairs, blocks
