"""A suite with planted failures: an OOM, a hang, an exception and a wrong result between good cases."""

import time

import pytest
import torch

from bench_lib.harness.workload import Case, CaseFailed, Workload

IDS = ["first", "oom", "oom_in_timing", "hang", "boom", "wrong", "last"]


def grid(profile, device_type):
    return [Case("planted", i, {"n": n}) for n, i in enumerate(IDS)]


def build(case, ctx):
    if case.id == "oom":  # a real allocator failure: 40 TB on a CPU
        torch.empty(10**13 // 4)
    if case.id == "oom_in_timing":
        calls = []

        def fn():
            calls.append(1)
            if len(calls) > 1:  # fails inside the timed rounds, i.e. inside pytest-benchmark's pedantic
                torch.empty(10**13 // 4)

        return Workload(fn)
    if case.id == "hang":
        return Workload(lambda: time.sleep(3600))
    if case.id == "boom":
        raise ValueError("planted exception")
    if case.id == "wrong":
        def check():
            raise CaseFailed("output differs from reference", {"max_rel_error": 0.5})
        return Workload(lambda: None, check=check)
    x = torch.ones(1000)
    return Workload(lambda: x.sum(), metrics={"flop": 1000})


pytestmark = pytest.mark.effbench_suite("planted", grid=grid)


def test_planted(case, measure):
    measure(build, case)
