"""Paired statistics of effbench ab: hand-worked cases, and scipy where installed."""

import math

import numpy as np
import pytest

from bench_lib.gate import ab_stats


def test_signed_rank_exact_on_hand_worked_differences():
    # d = (1, 2, -3): ranks 1, 2, 3; W+ = 1 + 2 = 3. Of the 2^3 = 8 sign patterns, W+ takes
    # 0,1,2,3,3,4,5,6: P(W+ <= 3) = 5/8, P(W+ >= 3) = 5/8, two-sided p = min(1, 2 * 5/8) = 1
    r = ab_stats.signed_rank([1.0, 2.0, -3.0])
    assert (r.w_plus, r.n, r.method) == (3.0, 3, "exact")
    assert r.p_value == 1.0
    # all five positive: W+ = 15 is the largest of 2^5 patterns, p = 2 / 32
    assert ab_stats.signed_rank([0.1, 0.2, 0.3, 0.4, 0.5]).p_value == pytest.approx(2 / 32)


def test_zeros_are_dropped_and_no_differences_is_no_evidence():
    assert ab_stats.signed_rank([0.0, 0.1, 0.2]).n == 2
    assert ab_stats.signed_rank([0.0, 0.0]).p_value == 1.0


def test_exact_distribution_sums_to_one_and_is_symmetric():
    cdf = ab_stats._exact_w_cdf(9)
    pmf = np.diff(np.r_[0.0, cdf])
    assert cdf[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(pmf, pmf[::-1], atol=1e-15)
    assert pmf[0] == pytest.approx(2.0**-9)


def test_min_p_value():
    assert ab_stats.min_p_value(20) == pytest.approx(2.0**-19)
    assert ab_stats.min_p_value(0) == 1.0


def test_hodges_lehmann_on_hand_worked_differences():
    # d = (1, 2, 4): Walsh averages 1, 1.5, 2, 2.5, 3, 4; their median is 2.25
    estimate, ci = ab_stats.hodges_lehmann([1.0, 2.0, 4.0], confidence=0.5)
    assert estimate == pytest.approx(2.25)
    # P(W+ <= w) for n = 3: 1/8, 2/8, 3/8 ...; tail 0.25 -> largest w with cdf <= 0.25 is 1, so C = 2:
    # the 2nd smallest and 2nd largest Walsh averages
    assert ci == pytest.approx((1.5, 3.0))


def test_hodges_lehmann_interval_needs_enough_pairs():
    # 3 pairs reach p = 2/8 at best: no 99% interval exists
    assert ab_stats.hodges_lehmann([0.1, 0.2, 0.3], confidence=0.99)[1] is None


def test_holm_adjustment_hand_worked():
    # sorted 0.01, 0.02, 0.04 with m = 3: 0.03, max(0.03, 0.04) = 0.04, max(0.04, 0.04) = 0.04
    adjusted = ab_stats.holm({"a": 0.04, "b": 0.01, "c": 0.02})
    assert adjusted == pytest.approx({"b": 0.03, "c": 0.04, "a": 0.04})
    assert ab_stats.holm({"x": 0.6, "y": 0.7}) == pytest.approx({"x": 1.0, "y": 1.0})


scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is an optional extra")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_signed_rank_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    d = rng.normal(0.05, 0.1, size=25)
    ours = ab_stats.signed_rank(d)
    theirs = scipy_stats.wilcoxon(d, method="exact")
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    assert min(ours.w_plus, ours.n * (ours.n + 1) / 2 - ours.w_plus) == pytest.approx(theirs.statistic)


def test_signed_rank_with_ties_matches_scipy_normal_approximation():
    d = np.array([0.1, 0.1, 0.2, -0.1, 0.3, 0.3, 0.3, -0.2, 0.4, 0.5, 0.1, 0.2])
    ours = ab_stats.signed_rank(d)
    theirs = scipy_stats.wilcoxon(d, method="approx", correction=True)
    assert ours.method == "normal"
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)


def test_hodges_lehmann_interval_covers_at_its_level():
    # 400 simulated cases of 15 pairs, centre 0.1: a 90% interval should miss about 10% of the time
    rng = np.random.default_rng(7)
    missed = 0
    for _ in range(400):
        est, (lo, hi) = ab_stats.hodges_lehmann(rng.standard_t(4, size=15) * 0.05 + 0.1, confidence=0.9)
        missed += not (lo <= 0.1 <= hi)
        assert lo <= est <= hi
    assert 0.05 < missed / 400 < 0.15
    assert math.isfinite(est)
