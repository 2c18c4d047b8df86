"""Two suites of four slow cases each, for a time budget to cut: the first case also makes the precision
suite's shared-weights folder (``effbench-weights-*``), as a real precision case does, and leaves it to exit."""

import os
import time

import pytest

from bench_lib.harness.workload import Case, Workload


def grid_of(suite):
    return lambda profile, device_type: [Case(suite, f"{suite}{i}", {"i": i}) for i in range(4)]


def build(case, ctx):
    if case.id == "alpha0":
        from bench_lib.suites import quant

        (quant._root() / "weights.bin").write_bytes(b"\0" * 4096)
    pause = float(os.environ.get("EFFBENCH_TEST_SLEEP_S", 0.05))
    return Workload(lambda: time.sleep(pause))


@pytest.mark.effbench_suite("alpha", grid=grid_of("alpha"))
def test_alpha(case, measure):
    measure(build, case)


@pytest.mark.effbench_suite("beta", grid=grid_of("beta"))
def test_beta(case, measure):
    measure(build, case)
