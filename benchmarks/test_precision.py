"""Precision and quantization: memory, speed and quality lost per model size, and quality on effbench's own trained
weights (cases: bench_lib.harness.profiles)."""

import pytest

from bench_lib.suites import precision

pytestmark = pytest.mark.effbench_suite("precision")


def test_precision(case, measure):
    measure(precision.build, case)
