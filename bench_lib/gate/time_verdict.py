"""The time verdict of one case: is the candidate slower, faster, the same, or can nobody tell?

Raw samples on both sides: Mann-Whitney U (is there a difference?), the same test with the candidate
moved back by (1 + threshold) (is the difference beyond the threshold?), and a bootstrap interval of the
ratio of medians for the reader. Summaries only (plain pytest-benchmark files without ``stats.data``):
Welch's t test on the means in the same two ways. Each case's threshold is max(global threshold,
K x the baseline's relative IQR), raised to the case's run-to-run drift threshold when the baseline is
several runs (:mod:`bench_lib.gate.drift`): a noisy case needs a larger shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench_lib.gate import stats
from bench_lib.harness.runfile import CaseRun


@dataclass(frozen=True)
class Settings:
    """threshold: smallest relative change that can fail the gate (0.05 = 5%); alpha: significance level;
    noise_multiple: K in threshold = max(threshold, K x relative IQR); memory_floor_bytes: smaller absolute
    memory changes are never regressions (allocator rounding)."""

    threshold: float = 0.05
    alpha: float = 0.01
    noise_multiple: float = 2.0
    memory_threshold: float = 0.05
    memory_floor_bytes: float = 8 * 2**20


@dataclass
class TimeChange:
    case: str
    verdict: str  # slower | faster | same | inconclusive
    regression: bool
    base_median_s: float
    cand_median_s: float
    ratio: float | None  # candidate / baseline median; None when a median is zero
    ci: tuple[float, float] | None  # (1 - alpha) bootstrap interval of the ratio
    p_value: float | None  # candidate vs baseline
    p_beyond: float | None  # candidate moved back by the global threshold vs baseline (same direction)
    test: str  # mann-whitney-exact | mann-whitney-normal | welch-summary | none
    threshold: float
    noise: float | None  # baseline relative IQR
    n_base: int
    n_cand: int
    note: str = ""
    drift: float | None = None  # run-to-run drift threshold from several baseline runs (bench_lib.gate.drift)


@dataclass
class _Evidence:
    """What two sets of timings say before any verdict: medians (s), rounds, baseline noise, test result."""

    base_median_s: float
    cand_median_s: float
    n_base: int
    n_cand: int
    noise: float | None
    p_value: float | None = None
    p_beyond: float | None = None  # same test with the candidate moved back by the global threshold
    test: str = "none"
    ci: tuple[float, float] | None = None
    note: str = ""


def _from_samples(base: CaseRun, cand: CaseRun, s: Settings) -> _Evidence:
    b, c = np.asarray(base.samples_s), np.asarray(cand.samples_s)
    ev = _Evidence(float(np.median(b)), float(np.median(c)), len(b), len(c),
                   noise=stats.relative_iqr(b) if len(b) >= 4 else None)
    if ev.base_median_s <= 0 or ev.cand_median_s <= 0:
        return ev  # no ratio to test; compare_time says why
    if stats.min_p_value(len(b), len(c)) > s.alpha:
        ev.note = f"too few samples ({len(b)} vs {len(c)}) for p < {s.alpha:g}"
        return ev
    rank = stats.mann_whitney(c, b)
    ev.p_value, ev.test = rank.p_value, f"mann-whitney-{rank.method}"
    # is the change beyond the threshold, not only different? Test the candidate scaled back by
    # (1 + threshold) towards the baseline; a significant result in the same direction says so.
    up = ev.cand_median_s >= ev.base_median_s
    shifted = stats.mann_whitney(c / (1.0 + s.threshold) ** (1 if up else -1), b)
    same_direction = (shifted.u > len(b) * len(c) / 2.0) == up
    ev.p_beyond = shifted.p_value if same_direction else 1.0
    ev.ci = stats.bootstrap_ratio_ci(b, c, confidence=1.0 - s.alpha)
    return ev


def _from_summaries(base: CaseRun, cand: CaseRun, s: Settings) -> _Evidence | None:
    bs, cs = _summary(base), _summary(cand)
    if "median" not in bs or "median" not in cs:
        return None
    nb, nc = int(bs.get("rounds", 1)), int(cs.get("rounds", 1))
    noise = bs["iqr"] / bs["median"] if "iqr" in bs and bs["median"] > 0 and nb >= 4 else None
    ev = _Evidence(bs["median"], cs["median"], nb, nc, noise)
    if min(nb, nc) < 3 or not {"mean", "stddev"} <= bs.keys() & cs.keys():
        ev.note = f"too few samples ({nb} vs {nc}) and no raw data"
        return ev
    args = (bs["mean"], bs["stddev"], nb, cs["mean"], cs["stddev"], nc)
    ev.p_value, ev.test = stats.welch_t_test(*args), "welch-summary"
    k = (1.0 + s.threshold) ** (1 if cs["mean"] >= bs["mean"] else -1)  # as in _from_samples, on the means
    same_direction = (cs["mean"] / k >= bs["mean"]) == (k > 1.0)
    ev.p_beyond = stats.welch_t_test(*args[:3], cs["mean"] / k, cs["stddev"] / k, nc) if same_direction else 1.0
    if ev.base_median_s > 0:
        ratio = ev.cand_median_s / ev.base_median_s
        ev.ci = stats.log_ratio_ci_from_summary(ratio, *args, confidence=1.0 - s.alpha)
    ev.note = "no raw samples: Welch t test on means"
    return ev


def _summary(case: CaseRun) -> dict[str, float]:
    if case.samples_s:  # one side has raw samples, the other only stats: summarise the raw side the same way
        x = np.asarray(case.samples_s)
        q1, q3 = np.percentile(x, [25, 75])
        sd = float(x.std(ddof=1)) if len(x) > 1 else 0.0
        return {"median": float(np.median(x)), "mean": float(x.mean()), "stddev": sd, "rounds": len(x),
                "iqr": float(q3 - q1)}
    return case.summary


def compare_time(key: str, base: CaseRun, cand: CaseRun, s: Settings,
                 drift: float | None = None) -> TimeChange | None:
    """The time verdict of one case measured in both runs (None when a side has no time at all).

    Raw samples on both sides: Mann-Whitney U and a bootstrap interval. Otherwise (plain pytest-benchmark
    files without ``stats.data``): Welch's t test on the summaries. ``drift``: the case's run-to-run drift
    threshold measured on several baseline runs (:mod:`bench_lib.gate.drift`); it raises the case's threshold.
    """
    if base.samples_s and cand.samples_s:
        ev = _from_samples(base, cand, s)
    else:
        ev = _from_summaries(base, cand, s)
        if ev is None:
            return None
    ratio = ev.cand_median_s / ev.base_median_s if ev.base_median_s > 0 and ev.cand_median_s > 0 else None
    if ratio is None:
        ev.p_value, ev.note = None, "a median time is zero: the timer is too coarse for this case"
    threshold = max(s.threshold, s.noise_multiple * ev.noise) if ev.noise is not None else s.threshold
    if drift is not None:
        threshold = max(threshold, drift)
    significant = ev.p_value is not None and ev.p_value < s.alpha
    # beyond the threshold: the median ratio past the case's threshold, and the change past the global
    # threshold with confidence (p_beyond), not only on the point estimate: run-to-run drift moves the
    # point estimate of every case a little, and a nightly gate judges dozens of cases
    beyond = ev.p_beyond is not None and ev.p_beyond < s.alpha
    if ev.p_value is None:
        verdict = "inconclusive"
    elif significant and beyond and ratio > 1.0 + threshold:
        verdict = "slower"
    elif significant and beyond and ratio < 1.0 / (1.0 + threshold):  # symmetric in log(ratio)
        verdict = "faster"
    else:
        verdict = "same"
        if significant and ratio != 1.0:
            ev.note = "significant but not beyond threshold with confidence"
    return TimeChange(key, verdict, verdict == "slower", ev.base_median_s, ev.cand_median_s, ratio, ev.ci,
                      ev.p_value, ev.p_beyond, ev.test, threshold, ev.noise, ev.n_base, ev.n_cand, ev.note, drift)
