"""A calibration case, then six slow cases that report a fraction of its ceiling: a run to kill and resume.

The fraction exists only when the calibration result reached the case, so a resumed run that lost the
ceilings has fewer metric keys than an unbroken one.
"""

import os
import time

import pytest

from bench_lib.harness.workload import Case, Workload

FLOP = 1e6  # per call, as if each case did this much work


def calibration_grid(profile, device_type):
    return [Case("calibration", "matmul_fp32", {"kind": "matmul", "dtype": "fp32"})]


def grid(profile, device_type):
    return [Case("resume", f"case{i}", {"i": i}) for i in range(6)]


def pause():
    time.sleep(float(os.environ.get("EFFBENCH_TEST_SLEEP_S", 0.15)))


def build(case, ctx):
    if case.suite == "calibration":
        return Workload(pause, metrics={"flop_per_s": 1e9})
    peak = ctx.ceilings.get("matmul_flop_per_s", {}).get("fp32")

    def derive(median_s):
        return {"frac_of_measured_peak": FLOP / median_s / peak} if peak else {}

    return Workload(pause, metrics={"flop": FLOP}, derive=derive)


@pytest.mark.effbench_suite("calibration", grid=calibration_grid)
def test_calibration(case, measure):
    measure(build, case)


@pytest.mark.effbench_suite("resume", grid=grid)
def test_resume(case, measure):
    measure(build, case)
