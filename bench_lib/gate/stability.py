"""Was the machine steady enough between two runs for their times to be judged at all?

Per-case tests compare a case's rounds within each run; they cannot see a machine that became slower or
faster between the runs, or during one (other jobs on shared cores, thermal throttling, clock changes).
The runs themselves show it: on a steady machine most cases keep their time, so the per-case ratios
(candidate / baseline median) cluster tightly, around 1 or around one shared factor when everything
moved together. When the middle half of the cases disagree with each other by more than twice the
threshold, the scatter is the machine's, and no per-case verdict would mean anything.

Blind spot, stated so nobody relies on it: a code change that moves a quarter to three quarters of the
cases, each by a different amount beyond the threshold, scatters the ratios the same way. compare then
withholds the time verdicts and exits 2 ("could not judge"), which still fails a nightly job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_CASES = 8  # fewer cases cannot tell the machine's scatter from a few cases' changes
SPREAD_MULTIPLE = 2.0  # unstable when the IQR of log ratios exceeds this many times log(1 + threshold)


@dataclass(frozen=True)
class Stability:
    """cases: ratios used; median_ratio: the shared factor; spread: IQR of the cases' ratios as a factor
    (exp(IQR of log ratio) - 1; 0.03: the middle half of the cases agree within 3%); limit: the spread above
    which the pair is unstable; stable: whether time verdicts can be given (True when too few cases to tell)."""

    cases: int
    median_ratio: float | None
    spread: float | None
    limit: float
    stable: bool


def assess(ratios: list[float], threshold: float) -> Stability:
    """Stability of a run pair from its per-case time ratios (candidate / baseline, > 0)."""
    limit = math.expm1(SPREAD_MULTIPLE * math.log1p(threshold))
    logs = np.log([r for r in ratios if r is not None and r > 0])
    if len(logs) == 0:
        return Stability(0, None, None, limit, True)
    median = float(np.exp(np.median(logs)))
    if len(logs) < MIN_CASES:
        return Stability(len(logs), median, None, limit, True)
    q1, q3 = np.percentile(logs, [25, 75])
    spread = float(np.expm1(q3 - q1))
    return Stability(len(logs), median, spread, limit, spread <= limit)
