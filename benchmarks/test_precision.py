"""Precision and quantization: memory, speed and quality lost per model size (cases: bench_lib.profiles)."""

import pytest

from bench_lib import precision

pytestmark = pytest.mark.effbench_suite("precision")


def test_precision(case, measure):
    measure(precision.build, case)
