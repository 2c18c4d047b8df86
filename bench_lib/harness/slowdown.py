"""A planted slowdown, for testing the gates only: ``EFFBENCH_PLANT_SLOWDOWN="GLOB=FACTOR[,GLOB=FACTOR...]"``.

Each case whose ``suite/id`` matches GLOB (``fnmatch``: ``attention/eager-*``, ``*-s1024-*``) gets its timed
callable wrapped so that every call, after doing its real work (device synchronized), spins for
(FACTOR - 1) times that call's own measured duration, inside the timed region. A planted +10%
(``FACTOR=1.1``) is thus a real slowdown with the noise of real work, of the kind a gate must catch; no
number is edited anywhere. The memory repeat and the correctness check run the unwrapped callable.

Never set it for a measurement anyone keeps: it exists so that ``effbench ab`` and ``effbench compare``
can be shown to catch a slowdown of known size (tests, and the acceptance figures of issue 15).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import time
from collections.abc import Callable
from typing import Any

ENV_VAR = "EFFBENCH_PLANT_SLOWDOWN"


def parse(text: str | None) -> list[tuple[str, float]]:
    """``"attention/eager-*=1.1,precision/*=1.05"`` -> [(glob, factor), ...]; empty or None -> []."""
    out = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        glob, sep, factor_text = part.strip().rpartition("=")
        try:
            factor = float(factor_text)
        except ValueError:
            factor = float("nan")
        if not sep or not glob or not factor >= 1.0:
            raise ValueError(f"{ENV_VAR}: {part.strip()!r} is not GLOB=FACTOR with FACTOR >= 1 "
                             "(e.g. 'attention/eager-*=1.1' for a planted +10%)")
        out.append((glob, factor))
    return out


def factor_for(key: str, rules: list[tuple[str, float]]) -> float:
    """The factor of the first rule whose glob matches ``key`` (``suite/id``), else 1.0."""
    for glob, factor in rules:
        if fnmatch.fnmatchcase(key, glob):
            return factor
    return 1.0


def spinning(fn: Callable[[], Any], factor: float, sync: Callable[[], None],
             clock: Callable[[], float] = time.perf_counter) -> Callable[[], Any]:
    """``fn`` followed by a busy wait until ``factor`` x its own duration (device work included) has passed."""

    def slowed():
        start = clock()
        out = fn()
        sync()
        until = start + (clock() - start) * factor
        while clock() < until:
            pass
        return out

    return slowed


def planted(work, case, device, environ=os.environ):
    """``work`` (a Workload, or Unsupported) with the planted slowdown of ``case`` applied, if any."""
    factor = factor_for(f"{case.suite}/{case.id}", parse(environ.get(ENV_VAR)))
    if factor == 1.0 or not hasattr(work, "fn"):
        return work
    from bench_lib.harness import device as devices

    return dataclasses.replace(work, fn=spinning(work.fn, factor, lambda: devices.synchronize(device)),
                               memory_fn=work.memory_fn or work.fn)
