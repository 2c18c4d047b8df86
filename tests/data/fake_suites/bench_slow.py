"""Eight slow, well-behaved cases: something to kill `effbench run` in the middle of."""

import os
import signal
import time

import pytest

from bench_lib.harness.workload import Case, Workload


def grid(profile, device_type):
    return [Case("slow", f"case{i}", {"i": i}) for i in range(8)]


def build(case, ctx):
    if case.id == os.environ.get("EFFBENCH_TEST_NATIVE_HANG"):
        # a hang the in-process alarm cannot interrupt (as if stuck in one C call)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        return Workload(lambda: time.sleep(3600))
    if case.id == os.environ.get("EFFBENCH_TEST_SEGFAULT"):
        return Workload(lambda: os.kill(os.getpid(), signal.SIGSEGV))
    pause = float(os.environ.get("EFFBENCH_TEST_SLEEP_S", 0.15))
    return Workload(lambda: time.sleep(pause))


pytestmark = pytest.mark.effbench_suite("slow", grid=grid)


def test_slow(case, measure):
    measure(build, case)
