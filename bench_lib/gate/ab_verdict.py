"""The verdict of an ab run, from paired ratios: per case slower / faster / same / inconclusive.

Per case with pairs (a_i, b_i): d_i = log(b_i / a_i). The ratio is the median of b_i / a_i over the pairs,
with the Hodges-Lehmann interval of d (Wilcoxon signed-rank, exp'd back to a ratio). A case is ``slower``
when the effect is beyond the threshold (ratio > 1 + threshold) AND significant: the signed-rank test of
d against 0 after Holm's correction across the cases judged (p_holm < alpha), so that a run of many
same-code cases false-alarms with probability at most alpha whatever the machine's drift (which the pairs
cancel). ``faster`` symmetrically in log ratio. Too few pairs for the corrected test ever to reach alpha is
``inconclusive``.

This is asv's rule (a factor and a statistical difference), not compare's stricter minimum-effect test (the
change beyond the threshold with confidence), which compare needs because separate runs drift as wholes and
make every case "significant". Paired samples do not share that drift, and the minimum-effect test cost
most of the power: a planted +10% on the 2-core test machine at load 13-17 was caught in 4 of 10 cases
with 20 pairs, 7 of 10 with 40. Its corrected p-value is still reported (``p_beyond_holm``): below alpha,
the change is beyond the threshold with confidence. Memory views and outcomes are judged by
:func:`bench_lib.gate.compare.compare_memory` and :func:`bench_lib.gate.compare.outcome_kind`.

Several process pairs (``--processes``, :func:`bench_lib.gate.ab_pairs.block_bounds`): the pairs of one pair of
worker processes share those processes' own state (where the heap and the tensors landed, ...), which the
signed-rank test over pairs takes for the sides' difference: one A/A case read a steady 0.940 over all its 30
pairs. Then the ratio is the median over the process pairs of each one's median b_i / a_i (one odd process
pair cannot carry it), and a ``slower`` or ``faster`` also needs every process pair's ratio on that side of 1;
a case whose process pairs disagree about the direction while the ratio is beyond the threshold is
``inconclusive`` (the worker processes differ as much as the sides do), never a verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from bench_lib.gate import ab_stats
from bench_lib.gate.compare import MemoryChange, compare_memory, outcome_kind
from bench_lib.gate.time_verdict import Settings
from bench_lib.harness.runfile import CaseRun


@dataclass
class PairedChange:
    case: str
    verdict: str  # slower | faster | same | inconclusive
    regression: bool
    pairs: int
    ratio: float | None  # median of b_i / a_i
    hl_ratio: float | None  # exp of the Hodges-Lehmann estimate of log(b / a)
    ci: tuple[float, float] | None  # (1 - alpha) Hodges-Lehmann interval of the ratio (not corrected)
    p_value: float | None  # signed-rank test of log(b / a) against 0
    p_holm: float | None  # p_value after Holm's correction over the cases judged: the verdict's test
    p_beyond: float | None  # the same against log(1 + threshold), in the ratio's direction
    p_beyond_holm: float | None  # p_beyond after Holm's correction over the cases judged
    test: str
    threshold: float
    a_median_s: float | None
    b_median_s: float | None
    note: str = ""
    process_ratios: list[float] | None = None  # each process pair's median b_i / a_i, in process order


def process_ratios(pairs: list[dict]) -> list[float]:
    """Each block's (process pair's) median b_i / a_i, in process order; one entry without blocks."""
    groups: dict[int, list[float]] = {}
    for p in pairs:
        groups.setdefault(p.get("process", 0), []).append(p["b_s"] / p["a_s"])
    return [float(np.median(groups[k])) for k in sorted(groups)]


def _evidence(key: str, pairs: list[dict], s: Settings) -> PairedChange:
    a = np.array([p["a_s"] for p in pairs], dtype=float)
    b = np.array([p["b_s"] for p in pairs], dtype=float)
    empty = PairedChange(key, "inconclusive", False, len(pairs), None, None, None, None, None, None, None, "none",
                         s.threshold, float(np.median(a)) if len(a) else None, float(np.median(b)) if len(b) else None)
    if len(pairs) == 0:
        empty.note = "no pairs"
        return empty
    if (a <= 0).any() or (b <= 0).any():
        empty.note = "a sample is zero: the timer is too coarse for this case"
        return empty
    d = np.log(b / a)
    per_process = process_ratios(pairs)
    ratio = float(np.median(per_process)) if len(per_process) > 1 else float(np.median(b / a))
    test = ab_stats.signed_rank(d)
    up = ratio >= 1.0
    shift = math.log1p(s.threshold) * (1 if up else -1)
    beyond = ab_stats.signed_rank(d - shift)
    same_direction = (beyond.w_plus > beyond.n * (beyond.n + 1) / 4.0) == up
    hl, ci = ab_stats.hodges_lehmann(d, confidence=1.0 - s.alpha)
    return PairedChange(key, "same", False, len(pairs), ratio, math.exp(hl),
                        None if ci is None else (math.exp(ci[0]), math.exp(ci[1])),
                        test.p_value, None, beyond.p_value if same_direction else 1.0, None,
                        f"wilcoxon-signed-rank-{test.method}", s.threshold, float(np.median(a)), float(np.median(b)),
                        process_ratios=per_process if len(per_process) > 1 else None)


def judge_time(pairs_by_case: dict[str, list[dict]], s: Settings) -> list[PairedChange]:
    """Every case's paired verdict; Holm's correction runs over the cases that have pairs."""
    changes = [_evidence(key, pairs, s) for key, pairs in pairs_by_case.items()]
    judged = [c for c in changes if c.p_value is not None]
    p_holm = ab_stats.holm({c.case: c.p_value for c in judged})
    beyond_holm = ab_stats.holm({c.case: c.p_beyond for c in judged})
    m = len(judged)
    for c in judged:
        c.p_holm, c.p_beyond_holm = p_holm[c.case], beyond_holm[c.case]
        if ab_stats.min_p_value(c.pairs) * m > s.alpha:  # even all pairs one way could not pass the correction
            c.verdict = "inconclusive"
            c.note = f"too few pairs ({c.pairs}) for p < {s.alpha:g} over {m} cases"
            continue
        significant = c.p_holm < s.alpha
        beyond = c.ratio > 1.0 + s.threshold or c.ratio < 1.0 / (1.0 + s.threshold)
        if significant and beyond and c.process_ratios and not (all(r > 1.0 for r in c.process_ratios)
                                                                 or all(r < 1.0 for r in c.process_ratios)):
            c.verdict = "inconclusive"
            c.note = ("the process pairs disagree (B/A " + ", ".join(f"{r:.3f}" for r in c.process_ratios)
                      + "): the worker processes differ as much as the sides; raise --processes")
            continue
        if significant and c.ratio > 1.0 + s.threshold:
            c.verdict, c.regression = "slower", True
        elif significant and c.ratio < 1.0 / (1.0 + s.threshold):
            c.verdict = "faster"
        elif significant:
            c.note = "significant but within the threshold"
        if c.verdict in ("slower", "faster") and c.p_beyond_holm >= s.alpha:
            c.note = "beyond the threshold on the median, not with confidence"
    return changes


def judge_memory(key: str, a_memory: dict, b_memory: dict, s: Settings) -> list[MemoryChange]:
    """Each peak memory view on both sides, by compare's rules (threshold, floor, noisy views)."""
    views = lambda m: {k: v for k, v in (m or {}).items() if "peak" in k and k.endswith("_bytes")  # noqa: E731
                       and isinstance(v, (int, float))}
    return compare_memory(key, CaseRun(key, memory=views(a_memory)), CaseRun(key, memory=views(b_memory)), s)


def judge_outcome(a: str | None, b: str | None) -> str | None:
    """compare's kind of an outcome change (regression, improvement, coverage-lost, ...), None when equal."""
    if a == b or a is None or b is None:
        return None
    return outcome_kind(a, b)


def as_dict(change) -> dict:
    return asdict(change)
