"""The statistics behind compare's verdicts, checked on hand-worked cases and, where installed, against scipy."""

import math

import numpy as np
import pytest

from bench_lib.gate import stats


def test_relative_iqr_of_hand_worked_samples():
    # quartiles of 1..5 (linear interpolation): 2 and 4, median 3
    assert stats.relative_iqr([5, 1, 4, 2, 3]) == pytest.approx(2 / 3)
    assert stats.relative_iqr([2.0] * 7) == 0.0


def test_mann_whitney_exact_on_complete_separation():
    # 3 vs 3, all of a below all of b: U = 0, P(U <= 0) = 1 / C(6, 3) = 1/20, two-sided 0.1
    r = stats.mann_whitney([1, 2, 3], [4, 5, 6])
    assert (r.u, r.method) == (0.0, "exact")
    assert r.p_value == pytest.approx(0.1)
    assert stats.mann_whitney([4, 5, 6], [1, 2, 3]).u == 9.0


def test_mann_whitney_exact_interleaved():
    # a = {1, 3}, b = {2, 4}: U_a = 1 (3 > 2). Of the C(4,2) = 6 orderings, U in {0,1,2,2,3,4}:
    # P(U <= 1) = 2/6, P(U >= 1) = 5/6, p = 2 * 2/6
    r = stats.mann_whitney([1, 3], [2, 4])
    assert r.u == 1.0
    assert r.p_value == pytest.approx(2 / 3)


def test_exact_distribution_sums_to_one_and_is_symmetric():
    dist = stats._exact_u_distribution(7, 5)
    assert dist.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(dist, dist[::-1], atol=1e-15)
    assert dist[0] == pytest.approx(1 / math.comb(12, 5))


def test_min_p_value():
    assert stats.min_p_value(5, 5) == pytest.approx(2 / 252)  # reaches alpha 0.01
    assert stats.min_p_value(4, 4) == pytest.approx(2 / 70)  # never does
    assert stats.min_p_value(1, 0) == 1.0


def test_normal_approximation_with_ties_by_hand():
    # a = [1, 1, 2], b = [2, 3, 3, 3]; ranks: 1,1 -> 1.5 each; 2,2 -> 3.5; 3,3,3 -> 6. R_a = 6.5, U = 6.5 - 6 = 0.5
    # var = 12/12 * (8 - (2*(8-2) + (27-3)) / (7*6)) = 8 - 36/42; z = (|0.5 - 6| - 0.5) / sqrt(var)
    r = stats.mann_whitney([1, 1, 2], [2, 3, 3, 3])
    assert r.method == "normal" and r.u == 0.5
    z = 5.0 / math.sqrt(8 - 36 / 42)
    assert r.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))


def test_all_equal_samples_are_not_different():
    assert stats.mann_whitney([1.0] * 5, [1.0] * 6).p_value == 1.0


@pytest.mark.parametrize("m,n,shift,rounding", [(5, 5, 0.1, None), (15, 15, 0.02, None), (12, 30, 0.05, None),
                                                 (40, 45, 0.03, None), (20, 25, 0.05, 1)])
def test_mann_whitney_matches_scipy(m, n, shift, rounding):
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(m * 100 + n)
    a, b = rng.normal(1.0, 0.05, m), rng.normal(1.0 + shift, 0.05, n)
    if rounding is not None:
        a, b = np.round(a, rounding), np.round(b, rounding)
    r = stats.mann_whitney(a, b)
    method = "exact" if r.method == "exact" else "asymptotic"
    ref = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method=method, use_continuity=True)
    assert r.u == pytest.approx(ref.statistic)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_bootstrap_interval_covers_a_planted_ratio_and_is_reproducible():
    rng = np.random.default_rng(3)
    base = rng.lognormal(0.0, 0.03, 15)
    cand = 1.2 * rng.lognormal(0.0, 0.03, 15)
    low, high = stats.bootstrap_ratio_ci(base, cand, confidence=0.99)
    assert low < 1.2 < high
    assert low > 1.1 and high < 1.3
    assert stats.bootstrap_ratio_ci(base, cand, confidence=0.99) == (low, high)
    assert stats.bootstrap_ratio_ci(base, base) [0] <= 1.0 <= stats.bootstrap_ratio_ci(base, base)[1]


def test_betainc_closed_forms():
    # I_x(a, 1) = x^a and I_x(1, b) = 1 - (1-x)^b
    assert stats._betainc(2.5, 1.0, 0.3) == pytest.approx(0.3**2.5, rel=1e-12)
    assert stats._betainc(1.0, 4.0, 0.2) == pytest.approx(1 - 0.8**4, rel=1e-12)
    assert stats._betainc(3.0, 3.0, 0.5) == pytest.approx(0.5)


def test_welch_t_test_by_hand_and_against_scipy():
    # equal sds and sizes: t = 0.1 / sqrt(2 * 0.01 / 10) = 2.236, df = 18; two-sided p from the t distribution
    p = stats.welch_t_test(1.0, 0.1, 10, 1.1, 0.1, 10)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert p == pytest.approx(2 * scipy_stats.t.sf(0.1 / math.sqrt(0.002), 18), rel=1e-9)
    ref = scipy_stats.ttest_ind_from_stats(1.0, 0.1, 10, 1.1, 0.25, 7, equal_var=False).pvalue
    assert stats.welch_t_test(1.0, 0.1, 10, 1.1, 0.25, 7) == pytest.approx(ref, rel=1e-9)


def test_welch_degenerate_inputs():
    assert stats.welch_t_test(1.0, 0.0, 5, 1.0, 0.0, 5) == 1.0
    assert stats.welch_t_test(1.0, 0.0, 5, 2.0, 0.0, 5) == 0.0
    assert stats.welch_t_test(1.0, 0.1, 1, 2.0, 0.1, 5) == 1.0


def test_log_ratio_interval_from_summary():
    # cv 0.1 on both sides, n = 25: se = sqrt(2 * 0.01 / 25) = 0.02828; 99%: z = 2.5758
    low, high = stats.log_ratio_ci_from_summary(1.2, 1.0, 0.1, 25, 1.2, 0.12, 25, confidence=0.99)
    assert low == pytest.approx(1.2 * math.exp(-2.5758 * 0.028284), rel=1e-4)
    assert high == pytest.approx(1.2 * math.exp(2.5758 * 0.028284), rel=1e-4)
