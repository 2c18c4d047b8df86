"""Statistics for comparing two sets of timing samples: rank test, bootstrap interval, noise, summary test.

Everything here is a pure function of sample arrays (seconds, any shape that flattens to 1-D) or of
summary numbers; no I/O and no verdicts (those live in :mod:`bench_lib.gate.compare`). numpy only: scipy is an
optional extra, and the test suite checks these functions against it where it is installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

# Largest group size for which the exact Mann-Whitney distribution is computed (cost ~ (m*n)^2 / 2 flops).
EXACT_MAX_N = 30


@dataclass(frozen=True)
class RankTest:
    """Two-sided Mann-Whitney U test of ``a`` vs ``b``.

    u: U statistic of ``a`` (pairs with a_i > b_j, ties counting one half); 0 <= u <= len(a) * len(b).
    p_value: two-sided p under H0 "both samples come from one distribution".
    method: ``exact`` (no ties, both groups <= EXACT_MAX_N) or ``normal`` (tie-corrected, continuity-corrected).
    """

    u: float
    p_value: float
    method: str


def relative_iqr(samples) -> float:
    """Interquartile range over median (dimensionless; 0.05 means the middle half spans 5% of the median).

    Quartiles by linear interpolation (numpy's default, Hyndman & Fan type 7).
    """
    x = np.asarray(samples, dtype=float).ravel()
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return float((q75 - q25) / q50) if q50 > 0 else math.inf


def _u_statistic(a: np.ndarray, b: np.ndarray) -> float:
    # U_a = R_a - m(m+1)/2 with R_a the rank sum of a in the pooled sample, average ranks for ties
    # (Mann & Whitney 1947, eq. 1).
    ranks = _average_ranks(np.concatenate([a, b]))
    m = len(a)
    return float(ranks[:m].sum() - m * (m + 1) / 2)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # first index of each run of equal values, and the run lengths
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    counts = np.diff(np.r_[starts, len(x)])
    avg = starts + (counts + 1) / 2.0  # 1-based average rank of each run
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, counts)
    return ranks


@lru_cache(maxsize=64)
def _exact_u_distribution(m: int, n: int) -> np.ndarray:
    """P(U = u) for u = 0..m*n under H0, no ties.

    Recurrence on the largest pooled value: it belongs to the first group with probability m/(m+n) and
    then beats all n of the second group, so P_{m,n}(u) = m/(m+n) P_{m-1,n}(u-n) + n/(m+n) P_{m,n-1}(u)
    (Mann & Whitney 1947, eq. 2, divided by the binomial count).
    """
    # row[j] holds P_{i,j} for the current i; start with i = 0: U is 0 with certainty
    row = [np.ones(1) for _ in range(n + 1)]
    for i in range(1, m + 1):
        new = [np.ones(1)]  # P_{i,0}: U = 0
        for j in range(1, n + 1):
            dist = np.zeros(i * j + 1)
            above = row[j]  # P_{i-1,j}, support 0..(i-1)*j, shifted by j
            dist[j : j + len(above)] += i / (i + j) * above
            left = new[j - 1]  # P_{i,j-1}, support 0..i*(j-1)
            dist[: len(left)] += j / (i + j) * left
            new.append(dist)
        row = new
    row[n].flags.writeable = False  # cached: shared by every caller
    return row[n]


def mann_whitney(a, b) -> RankTest:
    """Two-sided Mann-Whitney U test (exact for small tie-free samples, else normal approximation).

    The normal approximation uses mean m*n/2, the tie-corrected variance
    m*n/12 * ((N+1) - sum(t^3 - t) / (N(N-1))) and a 0.5 continuity correction (Lehmann, Nonparametrics, 1975,
    sec. 1.4), which is what scipy.stats.mannwhitneyu(method="asymptotic") computes.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    m, n = len(a), len(b)
    if m == 0 or n == 0:
        raise ValueError("mann_whitney needs at least one sample in each group")
    u = _u_statistic(a, b)
    pooled = np.concatenate([a, b])
    _, tie_counts = np.unique(pooled, return_counts=True)
    has_ties = bool((tie_counts > 1).any())
    if not has_ties and max(m, n) <= EXACT_MAX_N:
        dist = _exact_u_distribution(m, n)
        k = int(round(u))
        p = 2.0 * min(dist[: k + 1].sum(), dist[k:].sum())
        return RankTest(u, min(1.0, float(p)), "exact")
    big_n = m + n
    tie_term = float((tie_counts**3 - tie_counts).sum()) / (big_n * (big_n - 1))
    var = m * n / 12.0 * ((big_n + 1) - tie_term)
    if var <= 0:  # every value equal: no evidence of any difference
        return RankTest(u, 1.0, "normal")
    z = max(0.0, abs(u - m * n / 2.0) - 0.5) / math.sqrt(var)
    return RankTest(u, math.erfc(z / math.sqrt(2.0)), "normal")


def min_p_value(m: int, n: int) -> float:
    """Smallest two-sided p the exact rank test can give for group sizes m, n (complete separation).

    2 / C(m+n, m): e.g. 0.0079 for 5 vs 5, 0.029 for 4 vs 4. If it exceeds alpha the test cannot find any
    difference, however large, and a verdict must say "too few samples" instead.
    """
    if m < 1 or n < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(m + n, m))


def bootstrap_ratio_ci(base, cand, confidence: float = 0.99, n_boot: int = 2000, seed: int = 0):
    """Percentile bootstrap interval for median(cand) / median(base) (Efron & Tibshirani 1993, ch. 13).

    Each group is resampled with replacement on its own (independent runs). A fixed seed makes the
    report reproducible. Returns (low, high), dimensionless.
    """
    base = np.asarray(base, dtype=float).ravel()
    cand = np.asarray(cand, dtype=float).ravel()
    rng = np.random.default_rng(seed)
    base_medians = np.median(rng.choice(base, size=(n_boot, len(base))), axis=1)
    cand_medians = np.median(rng.choice(cand, size=(n_boot, len(cand))), axis=1)
    ratios = cand_medians / base_medians
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return float(low), float(high)


def welch_t_test(mean_a, sd_a, n_a, mean_b, sd_b, n_b) -> float:
    """Two-sided p of Welch's unequal-variance t test from summary statistics (Welch 1947).

    For runs that kept no raw samples (plain pytest-benchmark JSON without ``stats.data``).
    Degrees of freedom by Welch-Satterthwaite.
    """
    if n_a < 2 or n_b < 2:
        return 1.0
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    if va + vb == 0:
        return 1.0 if mean_a == mean_b else 0.0
    t = abs(mean_a - mean_b) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    # P(|T| > t) = I_x(df/2, 1/2) with x = df / (df + t^2) (Abramowitz & Stegun 26.7.1 with 26.5.27)
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def log_ratio_ci_from_summary(ratio, mean_a, sd_a, n_a, mean_b, sd_b, n_b, confidence=0.99):
    """Interval for ``ratio`` (b over a) by the delta method on log means: se^2 = cv_a^2/n_a + cv_b^2/n_b."""
    if min(n_a, n_b) < 2 or mean_a <= 0 or mean_b <= 0:
        return None
    se = math.sqrt((sd_a / mean_a) ** 2 / n_a + (sd_b / mean_b) ** 2 / n_b)
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    return ratio * math.exp(-z * se), ratio * math.exp(z * se)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by Lentz's continued fraction (Numerical Recipes 3rd ed., 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below this point: use symmetry
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for k in range(1, 300):
        for num in (
            k * (b - k) * x / ((a + 2 * k - 1) * (a + 2 * k)),
            -(a + k) * (a + b + k) * x / ((a + 2 * k) * (a + 2 * k + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return math.exp(log_front) * h / a


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (A&S 26.7.1 through the incomplete beta)."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on :func:`t_sf` (enough for thresholds; no scipy needed)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > 1.0 - p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_sf(mid, df) > 1.0 - p else (lo, mid)
        if hi - lo < 1e-10 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)
