"""A fake suite whose cases need shared work prepared first (tests/harness/test_prepare.py).

``slow`` takes longer than the case time limit the test gives (2 s): prepared by the session, it is in no case's
limit. ``broken`` raises: the case that needs it ends as an error naming it, and the other cases run.
"""

import time
from pathlib import Path

import pytest

from bench_lib.harness.workload import Case, Preparation, Workload

FAILED: dict[str, str] = {}
DONE = Path("prepared-slow.txt")


def grid(profile, device_type):
    return [Case("prep", "needs-slow", {"needs": "slow"}), Case("prep", "needs-broken", {"needs": "broken"}),
            Case("prep", "needs-nothing", {"needs": None})]


def _slow():
    if DONE.exists():
        return {"trained_here_s": 0.0, "reused": True}
    time.sleep(3)
    DONE.write_text("done")
    return {"trained_here_s": 3.0, "reused": False}


def _broken():
    raise RuntimeError("planted preparation failure")


def preparations(cases, ctx):
    work = {"slow": _slow, "broken": _broken}
    needed = {c.params["needs"] for c in cases} - {None}
    return [Preparation(name, work[name], lambda reason, name=name: FAILED.__setitem__(name, reason))
            for name in sorted(needed)]


def build(case, ctx):
    need = case.params["needs"]
    if need in FAILED:
        raise RuntimeError(f"{need} could not be prepared: {FAILED[need]}")
    if need == "slow":
        assert DONE.exists(), "the preparation ran after the case"
    return Workload(fn=lambda: sum(range(100)))


pytestmark = pytest.mark.effbench_suite("prep", grid=grid, prepare=preparations)


def test_prep(case, measure):
    measure(build, case)
