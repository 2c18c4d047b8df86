"""The long-lived worker of one side of ``effbench ab``: ``PYTHON -m bench_lib.gate.ab_worker --profile P --device D``.

It runs under that side's interpreter, in that side's tree (its harness and suites), and answers requests,
one JSON object a line on stdin, one reply a line on stdout (everything else the process prints goes to
stderr, so a library's print cannot break the protocol):

- ``{"op": "env"}``: this side's environment record (:func:`bench_lib.harness.env.record`).
- ``{"op": "collect", "benchmarks": [PATH_OR_NODEID, ...]}``: the cases pytest collects there, each as
  ``{nodeid, suite, id, params}`` (the suites' own grids, through the effbench pytest plugin).
- ``{"op": "build", "nodeid": N}``: build that case once (the suite's ``build``, the planted slowdown if
  any), run its correctness check, warm it up; reply with its outcome and the warmup estimate ``estimate_s``.
- ``{"op": "time", "rounds": K}``: K timed calls of the built case, device synchronized: ``samples_s``.
- ``{"op": "memory"}``: one untimed call under the memory probe (:func:`bench_lib.harness.memory.measure`).
- ``{"op": "close"}``: tear the case down and release its memory; ``{"op": "quit"}``: exit.

Replies carry ``"ok": true``, or ``"ok": false`` and ``"error"`` for a request that could not be served. A
case's own failures are not protocol errors: ``build`` answers them as outcomes (unsupported, error, oom).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from typing import Any

from bench_lib.harness import device as devices
from bench_lib.harness import env, memory, runner, slowdown, timing
from bench_lib.harness.workload import Case, CaseFailed, Unsupported, Workload


class _Capture:
    """Stands in for the ``measure`` fixture: a benchmark body hands it (build, case) and we keep them."""

    def __call__(self, build, case):
        self.build, self.case = build, case


class _Collector:
    """A pytest plugin that keeps each collected item's case, test function and the effbench context."""

    def __init__(self):
        self.items: dict[str, Any] = {}
        self.ctx = None

    def pytest_collection_finish(self, session):
        for item in session.items:
            case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
            if isinstance(case, Case):
                self.items[item.nodeid] = (case, item.function)
        eff = getattr(session.config, "_effbench", None)
        if eff is not None:
            self.ctx = eff.ctx


class Worker:
    def __init__(self, profile: str, device: str):
        self.profile, self.device_name = profile, device
        self.collector: _Collector | None = None
        self.work: Workload | None = None
        self.contexts = contextlib.ExitStack()  # the workload's `around` context, open from check to close

    def collect(self, benchmarks: list[str]) -> list[dict[str, Any]]:
        import pytest

        self.collector = _Collector()
        args = ["--collect-only", "-q", "-p", "no:cacheprovider", f"--profile={self.profile}",
                f"--device={self.device_name}", *benchmarks]
        code = pytest.main(args, plugins=[self.collector])
        if code not in (0, 5) and not self.collector.items:  # 5: nothing collected
            raise RuntimeError(f"pytest could not collect {' '.join(benchmarks)} (exit {code}); see stderr")
        return [{"nodeid": n, "suite": c.suite, "id": c.id, "params": dict(c.params)}
                for n, (c, _) in self.collector.items.items()]

    @property
    def device(self):
        return self.collector.ctx.device

    def build(self, nodeid: str) -> dict[str, Any]:
        if self.collector is None or nodeid not in self.collector.items:
            raise KeyError(f"{nodeid} was not collected on this side")
        self.close()
        case, function = self.collector.items[nodeid]
        ctx = self.collector.ctx
        capture = _Capture()
        function(case=case, measure=capture)  # a benchmark body is one measure(build, case) call
        reply: dict[str, Any] = {"suite": case.suite, "id": case.id, "metrics": {},
                                 "planted_factor": slowdown.factor_for(f"{case.suite}/{case.id}",
                                                                       slowdown.parse(os.environ.get(slowdown.ENV_VAR)))}
        try:
            work = slowdown.planted(capture.build(case, ctx), case, ctx.device)
            if isinstance(work, Unsupported):
                return {**reply, "outcome": "unsupported", "reason": work.reason}
            self.work = work
            if work.around is not None:  # entered once, outside every timed call, as the runner does
                self.contexts.enter_context(work.around())
            reply["metrics"].update(work.metrics)
            if work.check is not None:
                reply["metrics"].update(work.check() or {})
            warmup = max(1, ctx.profile.warmup_rounds)
            estimates = [timing.wall(work.fn, ctx.device) for _ in range(warmup)]
            return {**reply, "outcome": "ok", "reason": None, "estimate_s": statistics.median(estimates),
                    "warmup_rounds": warmup}
        except CaseFailed as exc:
            self.close()
            return {**reply, "outcome": "error", "reason": runner._reason(exc), "metrics": {**reply["metrics"], **exc.metrics}}
        except Exception as exc:  # a case's failure is data, as in the runner
            self.close()
            return {**reply, "outcome": "oom" if devices.is_oom(exc) else "error", "reason": runner._reason(exc)}

    def time(self, rounds: int) -> list[float]:
        if self.work is None:
            raise RuntimeError("no case is built: send build first")
        # one call per sample (the parent sizes its samples), CUDA events on CUDA, as the runner times
        return list(timing.measure(self.work.fn, self.device, int(rounds)).per_call_s)

    def memory(self) -> dict[str, Any]:
        if self.work is None:
            raise RuntimeError("no case is built: send build first")
        with _mapping_allowed():
            probe = memory.measure(self.work.memory_fn or self.work.fn, self.device)
        return {"memory": probe.result, "peak_bytes": probe.peak_bytes}

    def close(self) -> None:
        work, self.work = self.work, None
        with contextlib.suppress(Exception):
            self.contexts.close()
        if work is not None and work.teardown is not None:
            with contextlib.suppress(Exception):
                work.teardown()
        if self.collector is not None and self.collector.ctx is not None:
            devices.release_memory(self.collector.ctx.device)

    def serve(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "env":
            dev = self.collector.ctx.device if self.collector and self.collector.ctx else devices.resolve(self.device_name)
            return {"env": env.record(dev, self.profile), "pid": os.getpid()}
        if op == "collect":
            return {"cases": self.collect(list(request.get("benchmarks") or ["benchmarks"]))}
        if op == "build":
            return self.build(request["nodeid"])
        if op == "time":
            return {"samples_s": self.time(request["rounds"])}
        if op == "memory":
            return self.memory()
        if op == "close":
            self.close()
            return {}
        raise ValueError(f"unknown op {op!r}")


# glibc gives the top of the heap back to the kernel once more than this is free there (128 KiB by default,
# and no longer adjusted once the harness fixes the mmap threshold): a case whose per-call temporaries end
# at the heap's top then faults them in afresh on every call, one whose temporaries sit below a live
# allocation does not, and which of the two a build gets depends on the process's heap history. Between
# two long-lived workers that is a per-process bias that pairing cannot cancel (A/A eager attention on the
# 2-core test machine: B/A 1.58 over 20 pairs; with trimming off, 0.94 with an interval across 1). The
# harness still trims explicitly (release_memory) between cases and before each memory probe.
#
# For the same reason no timed allocation is mmap'd: glibc serves a request at or above its mmap threshold
# (at most 32 MiB) from the heap's top when the top is large enough and maps it afresh (page-faulting all of
# it, every call) when it is not, and how large the top is depends again on the process's heap history. A/A
# sdpa_math at s1024 (a 32 MiB attention matrix per call) on the 2-core test machine read B/A 1.29, p 2e-6,
# over 20 pairs of the fastest of 3 calls. With M_MMAP_MAX 0 both workers take every allocation from their
# heap, which they keep; the memory probe maps again as the runner's does (:func:`_mapping_allowed`).
M_TRIM_THRESHOLD = -1
NO_TRIM_BYTES = 2**31 - 1
M_MMAP_MAX = -4
GLIBC_DEFAULT_MMAP_MAX = 65536


def _mallopt(param: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(param, value)


def _keep_heap_top() -> None:
    _mallopt(M_TRIM_THRESHOLD, NO_TRIM_BYTES)
    _mallopt(M_MMAP_MAX, 0)


@contextlib.contextmanager
def _mapping_allowed():
    """glibc may mmap again inside: the memory probe's exact RSS needs freed tensors unmapped at once."""
    _mallopt(M_MMAP_MAX, GLIBC_DEFAULT_MMAP_MAX)
    try:
        yield
    finally:
        _mallopt(M_MMAP_MAX, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench_lib.gate.ab_worker")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # prints of any library (and of C code) go to stderr
    _keep_heap_top()
    worker = Worker(args.profile, args.device)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("op") == "quit":
            break
        try:
            reply = {"ok": True, **worker.serve(request)}
        except Exception as exc:  # the parent decides what a failed request means for the case
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply, allow_nan=True, default=str) + "\n")
    worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
