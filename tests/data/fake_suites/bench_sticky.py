"""Five cases; the one named by EFFBENCH_TEST_STICKY fails with a fake sticky CUDA error.

A sticky error (illegal memory access, device-side assert) leaves the CUDA context of the process unusable:
every later CUDA call fails with it. This suite fakes that on CPU: the failing case "poisons" the process,
so that ``device.context_error`` (the trivial-kernel probe) reports the error and every later case built in
the same process fails the same way. Only a fresh process runs them.
"""

import os

import pytest
import torch

from bench_lib.harness import device
from bench_lib.harness.workload import Case, Workload

ERROR = "CUDA error: an illegal memory access was encountered"
POISONED = []


def grid(profile, device_type):
    return [Case("sticky", f"case{i}", {"i": i}) for i in range(5)]


def poison():
    POISONED.append(os.getpid())
    device.context_error = lambda dev: f"AcceleratorError: {ERROR}"  # what the probe says from now on


def build(case, ctx):
    if POISONED:
        raise torch.AcceleratorError(ERROR)
    if case.id == os.environ.get("EFFBENCH_TEST_STICKY"):
        def fn():
            poison()
            raise torch.AcceleratorError(ERROR)
        return Workload(fn)
    x = torch.ones(100)
    return Workload(lambda: x.sum())


pytestmark = pytest.mark.effbench_suite("sticky", grid=grid)


def test_sticky(case, measure):
    measure(build, case)
