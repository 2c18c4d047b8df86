"""Run-to-run drift: how far a case's median moves between runs of the same code on the same machine.

Within one run, a case's rounds share the machine's state of that moment; the next run meets another one
(other tenants on shared cores, clocks, thermals, where the allocator put things). The within-run IQR cannot
see that, so a gate that judges one run against one baseline run mistakes drift for change. With several
baseline runs of the same code, each case's drift is measured: the standard deviation of its log median
across those runs.

A sample standard deviation from 2-5 runs is itself very uncertain (a case whose runs agreed by chance
would get a threshold far below its real drift), so each case's variance is shrunk towards the machine's
pooled drift, the empirical-Bayes moderation of limma (Smyth 2004, eq. 6):

    s_mod^2 = max((nu * s^2 + d0 * s0^2) / (nu + d0), s^2),   df = nu + d0,

where nu = runs - 1, and the prior s0^2 and its weight d0 are fitted to all cases' variances by the method
of moments on log s^2 (Smyth 2004, section 6.2): cases whose drifts agree give a large d0 (each case leans on
the machine's pool, and the bound approaches a normal one); a machine where some cases drift far more than
others gives a small d0 (each case stands on its own few runs, and the bound widens, as it must). Shrinking
only ever raises a case's drift (the max): a case that drifted more than the pool keeps its own variance.
Cases whose variance is an outlier under the fitted prior are left out of the fit (``OUTLIER_ALPHA``).
A same-code candidate's log median then falls within

    t(df, 1 - alpha / cases) * s_mod * sqrt(1 + 1 / runs)

of the baseline runs' mean log median (a one-sided prediction interval, Bonferroni over the cases judged,
so that a night judging a hundred cases false-alarms with probability alpha, not a hundred times alpha).
That distance, as a relative change, is the case's drift threshold; compare takes the largest of it, the
global threshold and the within-run noise term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench_lib.gate import stats

MAX_PRIOR_DF = 1e4  # "infinite": every case's drift is the pool's
# The excess variance of log s^2 (the cases' real heterogeneity) is taken this many standard errors high:
# with 2 degrees of freedom per case, log s^2 scatters so much that the point estimate of d0 is often far
# too large, thresholds of the noisiest cases too narrow, and simulated nights false-alarmed at twice alpha
# (60 cases, d0 = 6); one standard error brings that to alpha or below (tests/test_drift.py).
PRIOR_CAUTION = 1.0
# A case whose baseline variance is beyond what the fitted prior allows at this level (Bonferroni over the
# cases) is an outlier: it is left out of the prior fit, so one jumpy case cannot make every case lean on its
# own few runs (the idea of limma's robust fit, Phipson et al. 2016, in a simpler form).
OUTLIER_ALPHA = 0.01


@dataclass(frozen=True)
class Drift:
    """runs: baseline runs that measured the case; sd: its own sd of log medians (None from one run);
    moderated_sd and df: after shrinking towards the pool; threshold: relative change a same-code run stays
    under with probability 1 - alpha / cases."""

    runs: int
    sd: float | None
    moderated_sd: float
    df: float
    threshold: float


@dataclass(frozen=True)
class DriftModel:
    """pooled_sd: the machine's typical drift (sd of a log median between runs, s0); prior_df: d0, how much
    each case leans on it; cases: per case."""

    runs: int
    pooled_sd: float
    prior_df: float
    cases: dict[str, Drift]


def digamma(x: float) -> float:
    """psi(x) for x > 0: recurrence up to x >= 10, then the asymptotic series (A&S 6.3.18)."""
    acc = 0.0
    while x < 10.0:
        acc -= 1.0 / x
        x += 1.0
    inv2 = 1.0 / (x * x)
    return acc + math.log(x) - 0.5 / x - inv2 * (1 / 12 - inv2 * (1 / 120 - inv2 * (1 / 252 - inv2 / 240)))


def trigamma(x: float) -> float:
    """psi'(x) for x > 0: recurrence up to x >= 10, then the asymptotic series (A&S 6.4.12)."""
    acc = 0.0
    while x < 10.0:
        acc += 1.0 / (x * x)
        x += 1.0
    inv, inv2 = 1.0 / x, 1.0 / (x * x)
    return acc + inv + 0.5 * inv2 + inv * inv2 * (1 / 6 - inv2 * (1 / 30 - inv2 * (1 / 42 - inv2 / 30)))


def trigamma_inverse(y: float) -> float:
    """The x > 0 with psi'(x) = y (psi' falls monotonically), by bisection on log x."""
    lo, hi = 1e-8, 1e8
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if trigamma(mid) > y else (lo, mid)
        if hi / lo < 1.0 + 1e-12:
            break
    return math.sqrt(lo * hi)


def fit_prior(variances: list[float], nu: float) -> tuple[float, float]:
    """(s0^2, d0) from sample variances with ``nu`` degrees of freedom each (Smyth 2004, section 6.2):
    log s^2 has mean log s0^2 + psi(nu/2) - log(nu/2) - psi(d0/2) + log(d0/2) and variance
    psi'(nu/2) + psi'(d0/2); the excess over psi'(nu/2) is raised by ``PRIOR_CAUTION`` standard errors."""
    logs = [math.log(v) for v in variances if v > 0.0]
    if not logs:
        return 0.0, MAX_PRIOR_DF
    e = [z - digamma(nu / 2.0) + math.log(nu / 2.0) for z in logs]
    e_mean = float(np.mean(e))
    if len(e) < 2:
        return math.exp(e_mean), MAX_PRIOR_DF
    var_e = float(np.var(e, ddof=1))
    excess = var_e - trigamma(nu / 2.0) + PRIOR_CAUTION * math.sqrt(2.0 / (len(e) - 1)) * var_e
    if excess <= 0.0:  # the variances scatter no more than sampling alone makes them: one shared drift
        return math.exp(e_mean), MAX_PRIOR_DF
    d0 = min(2.0 * trigamma_inverse(excess), MAX_PRIOR_DF)
    return math.exp(e_mean + digamma(d0 / 2.0) - math.log(d0 / 2.0)), d0


def f_sf(f: float, d1: float, d2: float) -> float:
    """P(F > f) for Fisher's F with (d1, d2) degrees of freedom (A&S 26.6.2 through the incomplete beta)."""
    if f <= 0.0:
        return 1.0
    return stats._betainc(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * f))


def estimate(log_medians: dict[str, list[float]], runs: int, alpha: float) -> DriftModel | None:
    """The drift model from each case's log medians in the baseline runs (None: fewer than two runs).

    ``runs`` is the number of baseline runs; a case measured in fewer of them (failed in one) is judged with
    what it has. Cases measured once get the pooled drift with the prior's d0 degrees of freedom.
    """
    if runs < 2:
        return None
    full = {k: float(np.var(v, ddof=1)) for k, v in log_medians.items() if len(v) == runs}
    if not full:
        return None
    nu_full = runs - 1
    # start from the median variance as if every case shared it (Wilson-Hilferty median of chi^2/nu), so the
    # first outlier test is not blunted by the outliers themselves, then fit and test again until it settles
    s0_sq, d0 = float(np.median(list(full.values()))) / (1.0 - 2.0 / (9.0 * nu_full)) ** 3, MAX_PRIOR_DF
    outliers: set[str] | None = None
    for _ in range(6):
        found = {k for k, v in full.items()
                 if s0_sq > 0 and f_sf(v / s0_sq, nu_full, d0) < OUTLIER_ALPHA / len(full)}
        if found == outliers:
            break
        outliers = found if len(found) <= len(full) // 2 else set()
        s0_sq, d0 = fit_prior([v for k, v in full.items() if k not in outliers], nu_full)
    n_cases = max(len(log_medians), 1)
    # Bonferroni over the cases. A confirming rerun does not narrow the bound: on this project's test machine
    # consecutive runs shared slow periods of several minutes, so a rerun is not an independent second look
    tail = alpha / n_cases
    cases = {}
    for key, values in log_medians.items():
        m = len(values)
        nu = m - 1
        s_sq = float(np.var(values, ddof=1)) if m >= 2 else None
        mod_sq = ((nu * s_sq if s_sq is not None else 0.0) + d0 * s0_sq) / (nu + d0)
        if s_sq is not None:  # never below the case's own measured drift: shrinking only ever widens
            mod_sq = max(mod_sq, s_sq)
        df = nu + d0
        width = stats.t_quantile(1.0 - tail, df) * math.sqrt(mod_sq) * math.sqrt(1.0 + 1.0 / max(m, 1))
        cases[key] = Drift(m, math.sqrt(s_sq) if s_sq is not None else None, math.sqrt(mod_sq), df,
                           math.expm1(width))
    return DriftModel(runs, math.sqrt(s0_sq), d0, cases)
