"""The stability guard: a machine that moved between runs scatters the cases' ratios; code usually does not."""

import math

import pytest

from bench_lib.gate import stability


def test_steady_pair_with_one_changed_case_is_stable():
    ratios = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.995, 1.005, 1.3]
    st = stability.assess(ratios, threshold=0.05)
    assert st.stable and st.cases == 10
    assert st.limit == pytest.approx(1.05**2 - 1)  # 10.25% for a 5% threshold
    assert st.spread < 0.03


def test_everything_moving_together_is_stable():
    st = stability.assess([1.30, 1.31, 1.29, 1.30, 1.32, 1.28, 1.30, 1.30], threshold=0.05)
    assert st.stable and st.median_ratio == pytest.approx(1.30, abs=0.01)


def test_scattered_ratios_are_unstable():
    # quartiles of log ratios of [0.5, 0.7, 0.9, 1.0, 1.1, 1.4, 2.0, 3.0]: spread far beyond 10%
    st = stability.assess([0.5, 0.7, 0.9, 1.0, 1.1, 1.4, 2.0, 3.0], threshold=0.05)
    assert not st.stable and st.spread > 0.5


def test_spread_is_the_iqr_of_log_ratios():
    # logs 0, 0, ..., with quartiles at exactly log(1.1) apart: 8 values, Q1 = 0 and Q3 = log(1.1)
    ratios = [1.0] * 4 + [1.1] * 4
    st = stability.assess(ratios, threshold=0.05)
    q1 = 0.0
    q3 = math.log(1.1)  # numpy type-7 quartile of [0]*4 + [l]*4 at position 5.25 -> l
    assert st.spread == pytest.approx(math.expm1(q3 - q1))
    assert st.stable  # 10% spread <= 10.25% limit


def test_too_few_cases_cannot_tell_and_do_not_block():
    st = stability.assess([0.2, 5.0, 1.0], threshold=0.05)
    assert st.stable and st.spread is None and st.cases == 3
    assert stability.assess([], 0.05).stable
