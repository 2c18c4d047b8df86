"""Attention kernels: materialized vs flash-style, time / memory / error vs sequence length (cases: bench_lib.harness.profiles)."""

import pytest

from bench_lib.suites import attention

pytestmark = pytest.mark.effbench_suite("attention")


def test_attention(case, measure):
    measure(attention.build, case)
