"""Precision and quantization: memory, speed and quality lost per model size, and quality on effbench's own trained
weights (cases: bench_lib.harness.profiles)."""

import pytest

from bench_lib.suites import precision

# prepare: the trained weights of the trained-gpt2 cases are made (or found in the cache) before the first
# case, outside every case's time limit
pytestmark = pytest.mark.effbench_suite("precision", prepare=precision.preparations)


def test_precision(case, measure):
    measure(precision.build, case)
