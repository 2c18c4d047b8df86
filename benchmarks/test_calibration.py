"""Calibration: the machine's measured matmul and memory-copy ceilings (cases: bench_lib.harness.profiles)."""

import pytest

from bench_lib.suites import calibration

pytestmark = pytest.mark.effbench_suite("calibration")


def test_calibration(case, measure):
    measure(calibration.build, case)
