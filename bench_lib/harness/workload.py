"""What a suite's setup hands the harness: a case, and either a workload to measure or a reason it cannot run.

A suite's ``build(case, ctx)`` returns a :class:`Workload` (a zero-argument callable plus what is already
known about it) or :class:`Unsupported`. The harness does everything else: correctness check, timing,
memory probe, outcome, journal.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("ok", "unsupported", "oom", "error", "timeout", "crashed")


@dataclass(frozen=True)
class Case:
    """One point of a suite's grid. ``id`` is the pytest id, the results value and the plot label."""

    suite: str
    id: str
    params: dict[str, Any]

    def __post_init__(self):
        if not self.id or "/" in self.id or " " in self.id:
            raise ValueError(f"case id {self.id!r} must be non-empty, without '/' or spaces")


@dataclass(frozen=True)
class Unsupported:
    """This case cannot run here; ``reason`` names what is missing and reaches the report."""

    reason: str


class CaseFailed(Exception):
    """Raised by a workload's check when the result is wrong (e.g. a kernel over its error tolerance).

    ``metrics`` are kept in the record so the report can show by how much it was wrong.
    """

    def __init__(self, message: str, metrics: dict[str, Any] | None = None):
        super().__init__(message)
        self.metrics = dict(metrics or {})


@dataclass
class Workload:
    """A measurable callable.

    fn:        zero-argument callable; the timed work. Its device work is synchronized by the harness.
    metrics:   values known without timing (flop, weight_bytes, trainable_params, ...), unit in each name.
    check:     run once, untimed, before timing, on the same inputs; returns metrics such as
               ``max_rel_error`` and raises :class:`CaseFailed` when the result is wrong.
    derive:    median seconds -> metrics that depend on time (tflops, tokens_per_s, ...).
    time_metric: name under which the median time is reported (``time_s``, ``step_s``, ...).
    memory_fn: what the untimed memory repeat runs (default: ``fn``).
    teardown:  releases what setup built (called whatever the outcome).
    series:    named lists kept whole in the record (loss curves, per-step values); fill during check.
    rounds:    force this many timed rounds (e.g. 1 for an end-to-end training run); None: the profile decides.
    around:    returns a context manager (``sdpa_kernel([backend])``, an autocast, ...) that the harness
               enters once around check, warmup, timed rounds, memory repeat and energy window, so that no
               impl pays for entering it inside the timed region; None: nothing to enter.
    on_timing: called with "start" just before the first timed call and "stop" just after the last, so
               a workload that observes its own calls (per-token stamps) keeps exactly the timed ones and
               none of the warm-up, memory-repeat or energy-window calls; None: not needed.
    compiled:  ``fn`` goes through ``torch.compile``: the harness times its first call apart, before check and
               warmup (``compile_s``), counts compilations in the timed rounds (``recompiles``) and makes
               the case an ``error`` if there was any (the samples would include compile time).
    external:  the work ran in child processes that ``check`` launched (distributed cases): returns
               {"samples_s": raw per-step seconds, "memory": the memory views to record}; the harness
               records those instead of timing ``fn`` and probing memory in this process. None: in-process.
    """

    fn: Callable[[], Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    check: Callable[[], dict[str, Any]] | None = None
    derive: Callable[[float], dict[str, Any]] | None = None
    time_metric: str = "time_s"
    memory_fn: Callable[[], Any] | None = None
    teardown: Callable[[], None] | None = None
    series: dict[str, list] = field(default_factory=dict)
    rounds: int | None = None
    around: Callable[[], AbstractContextManager] | None = None
    on_timing: Callable[[str], None] | None = None
    compiled: bool = False
    external: Callable[[], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Preparation:
    """Work that cases share and the session does once, before the first case and outside every case's time
    limit (training the weights that quality cases load, say), under the profile's ``prepare_timeout_s``.

    name:   what is prepared, unique in the session (a cache entry's name); journaled with the outcome.
    run:    does it, or finds it done; returns what the record says (``trained_here_s``, ``reused``, ...).
    failed: told the reason when ``run`` raised or ran out of time, so the cases that need the result end as
            ``error`` naming it instead of each trying again inside its own time limit.
    """

    name: str
    run: Callable[[], dict[str, Any]]
    failed: Callable[[str], None]


@dataclass
class Context:
    """What a suite's ``build`` may know about the run: device, profile, user options, measured ceilings.

    ceilings: filled by the calibration suite when it ran earlier in the same session, e.g.
              ``{"matmul_flop_per_s": {"fp32": 1.2e11}, "copy_bytes_per_s": 9e9}``; empty otherwise.
    options:  user options such as ``model`` (a checkpoint path or hub id for real-weight quality numbers).
    """

    device: Any  # torch.device
    profile: Any  # bench_lib.harness.profiles.Profile
    options: dict[str, Any] = field(default_factory=dict)
    ceilings: dict[str, Any] = field(default_factory=dict)
