"""Statistics of paired samples: Wilcoxon signed-rank test, Hodges-Lehmann estimate and interval, Holm.

``effbench ab`` takes each B sample right next to an A sample, so a case's evidence is the list of paired
differences d_i = log(b_i / a_i): drift of the machine hits both members of a pair and cancels in d_i. These
are pure functions of such lists (numpy only, as :mod:`bench_lib.gate.stats`); the tests check them against
scipy where it is installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Largest number of non-zero differences for which the exact signed-rank distribution is used (cost ~ n^3/4).
EXACT_MAX_N = 200


@dataclass(frozen=True)
class SignedRankTest:
    """Two-sided Wilcoxon signed-rank test of "the differences are symmetric about 0".

    w_plus: sum of the ranks of |d_i| over the positive d_i (zeros dropped, Wilcoxon's convention);
    n: non-zero differences; method: ``exact`` (no ties among |d_i|) or ``normal`` (tie-corrected).
    """

    w_plus: float
    n: int
    p_value: float
    method: str


@lru_cache(maxsize=64)
def _exact_w_cdf(n: int) -> np.ndarray:
    """P(W+ <= w) for w = 0..n(n+1)/2 under H0, no ties: each rank k joins W+ with probability 1/2.

    The distribution is the coefficient list of prod_k (1 + x^k) / 2^n (Wilcoxon 1945), built one rank at a time.
    """
    pmf = np.zeros(n * (n + 1) // 2 + 1)
    pmf[0] = 1.0
    for k in range(1, n + 1):
        top = k * (k + 1) // 2
        pmf[k : top + 1] = 0.5 * pmf[k : top + 1] + 0.5 * pmf[: top + 1 - k]
        pmf[:k] *= 0.5
    cdf = np.cumsum(pmf)
    cdf.flags.writeable = False  # cached: shared by every caller
    return cdf


def min_p_value(n: int) -> float:
    """Smallest two-sided p the exact signed-rank test reaches with ``n`` pairs (all of one sign): 2 / 2^n."""
    return min(1.0, 2.0 ** (1 - n)) if n >= 1 else 1.0


def signed_rank(d) -> SignedRankTest:
    """Wilcoxon signed-rank test of the paired differences ``d`` (any unit); see :class:`SignedRankTest`.

    Normal approximation (ties among |d_i|, or n > EXACT_MAX_N): mean n(n+1)/4, variance
    n(n+1)(2n+1)/24 - sum(t^3 - t)/48 and a 0.5 continuity correction (Lehmann 1975, sec. 3.2), which is what
    scipy.stats.wilcoxon(method="approx", correction=True) computes.
    """
    d = np.asarray(d, dtype=float).ravel()
    d = d[d != 0.0]
    n = len(d)
    if n == 0:
        return SignedRankTest(0.0, 0, 1.0, "exact")
    absd = np.abs(d)
    order = np.argsort(absd, kind="mergesort")
    sorted_abs = absd[order]
    starts = np.flatnonzero(np.r_[True, sorted_abs[1:] != sorted_abs[:-1]])
    counts = np.diff(np.r_[starts, n])
    ranks = np.empty(n)
    ranks[order] = np.repeat(starts + (counts + 1) / 2.0, counts)  # average ranks for ties
    w_plus = float(ranks[d > 0].sum())
    if not (counts > 1).any() and n <= EXACT_MAX_N:
        cdf = _exact_w_cdf(n)
        k = int(round(w_plus))
        lower = cdf[k]
        upper = 1.0 - (cdf[k - 1] if k > 0 else 0.0)
        return SignedRankTest(w_plus, n, min(1.0, 2.0 * min(lower, upper)), "exact")
    mean = n * (n + 1) / 4.0
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float((counts**3 - counts).sum()) / 48.0
    if var <= 0:
        return SignedRankTest(w_plus, n, 1.0, "normal")
    z = max(0.0, abs(w_plus - mean) - 0.5) / math.sqrt(var)
    return SignedRankTest(w_plus, n, math.erfc(z / math.sqrt(2.0)), "normal")


def hodges_lehmann(d, confidence: float = 0.99) -> tuple[float, tuple[float, float] | None]:
    """Hodges-Lehmann estimate of the centre of ``d`` (median of the Walsh averages (d_i + d_j)/2, i <= j)
    and its distribution-free interval from the signed-rank distribution (Hollander & Wolfe 1999, sec. 3.3):
    the C-th smallest and C-th largest Walsh averages, C the largest c with P(W+ <= c - 1) <= (1 - confidence)/2.

    Exact for any n up to EXACT_MAX_N (ties only make it slightly conservative). The interval is None when
    the pairs are too few for it at this confidence (2 / 2^n above 1 - confidence).
    """
    d = np.asarray(d, dtype=float).ravel()
    n = len(d)
    if n == 0:
        raise ValueError("hodges_lehmann needs at least one difference")
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    estimate = float(np.median(walsh))
    tail = (1.0 - confidence) / 2.0
    if n > EXACT_MAX_N:  # normal quantile of W+: C = M/2 - z * sd, rounded down
        from statistics import NormalDist

        z = NormalDist().inv_cdf(1.0 - tail)
        c = int(math.floor(len(walsh) / 2.0 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)))
    else:
        cdf = _exact_w_cdf(n)
        below = np.flatnonzero(cdf <= tail)  # w with P(W+ <= w) <= tail; c - 1 is the largest of them
        c = int(below[-1]) + 1 if len(below) else 0
    if c < 1:
        return estimate, None
    return estimate, (float(walsh[c - 1]), float(walsh[len(walsh) - c]))


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (Holm 1979): reject where adjusted p < alpha, family-wise error <= alpha.

    Sorted ascending, p_(k) is multiplied by (m - k + 1) and made non-decreasing; never above 1. Uniformly
    more powerful than Bonferroni, with the same guarantee and no assumption on how the tests depend.
    """
    items = sorted(p_values.items(), key=lambda kv: kv[1])
    m, running, out = len(items), 0.0, {}
    for k, (key, p) in enumerate(items):
        running = max(running, min(1.0, (m - k) * p))
        out[key] = running
    return out
