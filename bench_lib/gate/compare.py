"""``effbench compare BASE CAND``: noise-aware regression verdicts for nightly CI.

Per case present in both runs:
- time: ratio of medians (candidate / baseline) with a (1 - alpha) bootstrap interval from the raw samples
  and a Mann-Whitney U test. A case is a regression only when the difference is significant (p < alpha)
  AND beyond the threshold: the ratio exceeds the case's threshold = max(global threshold, K x the
  baseline's relative IQR), so a noisy case needs a larger shift, and the candidate divided by
  (1 + global threshold) is still significantly slower (a minimum-effect test, robust to outliers where a
  bootstrap bound of a median is not), so drift of a point estimate does not fail the night. Too few
  samples for the test to ever reach alpha gives ``inconclusive``, never a regression.
- memory: each peak view; an increase beyond the threshold (and above an absolute floor) is a regression.
- outcome: ok -> oom/error/timeout/crashed is a regression; the reverse an improvement.
Machines are compared first: a different device, GPU or driver (or CPU model for CPU runs) is refused.

The baseline may be several runs of the same code (a baseline folder): their samples are pooled and each
case's run-to-run drift, measured across them, raises its threshold (:mod:`bench_lib.gate.drift`), so a machine
that moves between runs is judged by how far it moves. With a single baseline run nothing measures that, and
when the cases' ratios scatter like an unsteady machine's, time is not judged. ``--confirm RERUN`` makes
time and memory regressions count only when a rerun of the suspect cases shows them again.
Exit status: 0 no regression, 1 regression, 2 bad input, refused machines, time not judgeable, or a
resolution worse than ``--require-resolution``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench_lib.gate import drift as run_drift
from bench_lib.gate import stability
from bench_lib.gate.compare_render import to_markdown
from bench_lib.gate.machine_match import machine_differences
from bench_lib.gate.time_verdict import Settings, TimeChange, compare_time
from bench_lib.harness.runfile import BadInput, CaseRun, Run, load_run

__all__ = ["Comparison", "Settings", "TimeChange", "add_arguments", "compare_runs", "compare_time", "main"]

FAILED = ("oom", "error", "timeout", "crashed")
SCHEMA_VERSION = 1


@dataclass
class MemoryChange:
    case: str
    view: str
    base_bytes: float
    cand_bytes: float
    ratio: float
    regression: bool
    improvement: bool
    note: str = ""
    not_reproduced: bool = False  # a regression the confirming rerun did not show (not counted)


@dataclass
class OutcomeChange:
    case: str
    base: str
    cand: str
    kind: str  # regression | improvement | coverage-lost | coverage-gained | changed
    reason: str | None


@dataclass
class Comparison:
    base: str
    candidate: str
    settings: Settings
    machine_differences: list[str]
    time: list[TimeChange] = field(default_factory=list)
    memory: list[MemoryChange] = field(default_factory=list)
    outcomes: list[OutcomeChange] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stability: stability.Stability | None = None
    time_judged: bool = True  # False: the machine was unstable, time verdicts withheld
    baseline_runs: list[str] = field(default_factory=list)  # every baseline run; the first is ``base``
    drift: run_drift.DriftModel | None = None  # from several baseline runs; None with one
    confirm: str | None = None  # the rerun that time and memory regressions had to reproduce in
    suspects: list[dict] = field(default_factory=list)  # time/memory regressions before confirmation: what to rerun

    def not_reproduced(self) -> list:
        """Time and memory regressions the rerun did not show (not counted)."""
        return [t for t in self.time if t.verdict == "not-reproduced"] + [m for m in self.memory if m.not_reproduced]

    def resolution(self) -> float | None:
        """The median case's threshold: the smallest slowdown this comparison could call a regression for a
        typical case (None when no time was compared)."""
        thresholds = [t.threshold for t in self.time if t.p_value is not None]
        return float(np.median(thresholds)) if thresholds else None

    def regressions(self) -> list:
        return (
            [t for t in self.time if t.regression]
            + [m for m in self.memory if m.regression]
            + [o for o in self.outcomes if o.kind == "regression"]
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out["schema_version"] = SCHEMA_VERSION
        out["regression"] = bool(self.regressions())
        out["summary"] = {
            "regressions": len(self.regressions()),
            "time": {v: sum(t.verdict == v for t in self.time)
                     for v in ("slower", "faster", "same", "inconclusive", "not-reproduced")},
            "not_reproduced": len(self.not_reproduced()),
            "memory_regressions": sum(m.regression for m in self.memory),
            "outcome_regressions": sum(o.kind == "regression" for o in self.outcomes),
            "new": len(self.new),
            "missing": len(self.missing),
            "baseline_runs": len(self.baseline_runs),
            "resolution": self.resolution(),
        }
        return out


# Views that are not deterministic, with the least (relative, absolute) change that can be real for them.
# cpu_peak_rss_bytes is the process's high-water mark: it carries the allocator's history (glibc keeps freed
# pages), and same-code CPU quick runs moved it by up to 13.6% / 66 MiB (3 runs, 45 cases, 2-core machine).
NOISY_VIEWS = {"cpu_peak_rss_bytes": (0.20, 64 * 2**20)}


def compare_memory(key: str, base: CaseRun, cand: CaseRun, s: Settings) -> list[MemoryChange]:
    """Each peak view in both records; beyond threshold and floor (both raised for noisy views) counts."""
    out = []
    for view in sorted(base.memory.keys() & cand.memory.keys()):
        b, c = base.memory[view], cand.memory[view]
        if b <= 0:
            continue
        least_rel, least_abs = NOISY_VIEWS.get(view, (0.0, 0.0))
        threshold, floor = max(s.memory_threshold, least_rel), max(s.memory_floor_bytes, least_abs)
        ratio = c / b
        real = abs(c - b) > floor
        out.append(MemoryChange(
            key, view, b, c, ratio,
            regression=real and ratio > 1.0 + threshold,
            improvement=real and ratio < 1.0 / (1.0 + threshold),
        ))
    return out


def outcome_kind(base: str, cand: str) -> str:
    if base == "ok" and cand in FAILED:
        return "regression"
    if base in FAILED and cand == "ok":
        return "improvement"
    if base == "ok" and cand == "unsupported":
        return "coverage-lost"
    if base == "unsupported" and cand == "ok":
        return "coverage-gained"
    return "changed"


def match_by_id(runs: Sequence[Run]) -> bool:
    """The matching rule: ``suite/id`` when every run is an effbench run, else the pytest-benchmark fullname."""
    return all(r.by_id is not None for r in runs)


def cases_of(run: Run, by_id: bool) -> dict[str, CaseRun]:
    """The run's cases keyed by the rule :func:`match_by_id` chose."""
    return run.by_id if by_id else run.by_fullname


def pool_baseline(bases: Sequence[Run], by_id: bool) -> tuple[dict[str, CaseRun], dict[str, list[float]]]:
    """One baseline from several runs of the same code: each case's raw samples pooled (so the test sees the
    drift between them as spread), its memory the largest of the runs' peaks (a candidate must exceed every
    baseline run), its outcome the first run's; and each case's log median per run, for :mod:`bench_lib.gate.drift`."""
    primary = cases_of(bases[0], by_id)
    pooled, log_medians = {}, {}
    for key, first in primary.items():
        measured = [c for c in (cases_of(r, by_id).get(key) for r in bases) if c is not None and c.outcome == "ok"]
        if first.outcome != "ok" or len(bases) == 1:
            pooled[key] = first
        else:
            samples = tuple(x for c in measured for x in c.samples_s) if all(c.samples_s for c in measured) else ()
            memory = {view: max(c.memory[view] for c in measured if view in c.memory)
                      for view in first.memory}
            pooled[key] = dataclasses.replace(first, samples_s=samples or first.samples_s, memory=memory)
        medians = [_median_s(c) for c in measured]
        if first.outcome == "ok" and medians and all(m is not None and m > 0 for m in medians):
            log_medians[key] = [math.log(m) for m in medians]
    return pooled, log_medians


def _median_s(case: CaseRun) -> float | None:
    if case.samples_s:
        return float(np.median(case.samples_s))
    return case.summary.get("median")


def compare_runs(base: Run | Sequence[Run], cand: Run, settings: Settings, allow_different_machines: bool = False,
                 allow_unstable: bool = False, confirm: Run | None = None) -> Comparison:
    """Match cases (``suite/id`` when all runs are effbench runs, else pytest-benchmark fullname) and judge.

    ``base`` is one run or several runs of the same code on the same machine (the first one's cases and
    outcomes are the baseline's). With several, each case's run-to-run drift is measured and raises its
    threshold (:mod:`bench_lib.gate.drift`). With one, nothing says how far the machine drifts between runs, and
    time verdicts are withheld when the per-case ratios scatter like an unstable machine's
    (:mod:`bench_lib.gate.stability`) unless ``allow_unstable``.

    ``confirm``: a rerun of the candidate's suspect cases, made after this comparison flagged them (the
    nightly workflow reruns ``suspects``). A time or memory regression then counts only when the rerun,
    judged against the same baseline by the same rules, shows it too: a machine that stalled for a few
    seconds during one case does not stall again on demand, a slower kernel does. Outcome regressions
    always count (a flaky OOM or crash is a finding), and a suspect missing from the rerun stays a regression.
    Thresholds stay those of one look: a rerun soon after the candidate can share its slow period.
    """
    bases = [base] if isinstance(base, Run) else list(base)
    if not bases:
        raise BadInput("no baseline run given")
    differences, blocking = [], []
    for other in bases:
        diff, block = machine_differences(other, cand)
        prefix = f"{other.path}: " if len(bases) > 1 else ""
        differences += [prefix + d for d in diff if prefix + d not in differences]
        blocking += [prefix + b for b in block]
    for other in bases[1:]:  # the baseline runs must share one machine too, else their spread is not drift
        _, block = machine_differences(bases[0], other)
        blocking += [f"baseline runs {bases[0].path} and {other.path}: {b}" for b in block]
    if confirm is not None:  # the rerun is judged against the same baseline: it must come from its machine too
        blocking += [f"rerun {confirm.path}: {b}" for other in bases for b in machine_differences(other, confirm)[1]]
    if blocking and not allow_different_machines:
        raise BadInput(
            "refusing to compare runs from different machines (--allow-different-machines to override):\n  "
            + "\n  ".join(blocking)
        )
    by_id = match_by_id([*bases, cand] + ([confirm] if confirm is not None else []))
    base_cases, log_medians = pool_baseline(bases, by_id)
    cand_cases = cases_of(cand, by_id)
    if not any(k in cand_cases for k in base_cases):
        raise BadInput(f"no cases in common between {bases[0].path} ({len(base_cases)} cases) "
                       f"and {cand.path} ({len(cand_cases)} cases)")
    result = Comparison(bases[0].path, cand.path, settings, differences,
                        baseline_runs=[r.path for r in bases])
    result.drift = run_drift.estimate({k: v for k, v in log_medians.items()
                                       if k in cand_cases and cand_cases[k].outcome == "ok"},
                                      len(bases), settings.alpha)
    drift_thresholds = {k: d.threshold for k, d in result.drift.cases.items()} if result.drift else {}
    result.new = [k for k in cand_cases if k not in base_cases]
    result.missing = [k for k in base_cases if k not in cand_cases]
    _judge(result, base_cases, cand_cases, drift_thresholds, allow_unstable)
    suspect_keys = sorted({r.case for r in result.time + result.memory if r.regression})
    result.suspects = [{"case": k, "nodeid": base_cases[k].nodeid or cand_cases[k].nodeid} for k in suspect_keys]
    if confirm is not None:
        # the rerun is judged with the candidate's thresholds: a rerun of a few suspects must not refit the
        # drift model on those few cases alone
        check = Comparison(bases[0].path, confirm.path, settings, [], baseline_runs=result.baseline_runs,
                           drift=result.drift)
        _judge(check, base_cases, cases_of(confirm, by_id), drift_thresholds, allow_unstable)
        _apply_confirmation(result, check, confirm.path)
    return result


def _judge(result: Comparison, base_cases: dict[str, CaseRun], cand_cases: dict[str, CaseRun],
           drift_thresholds: dict[str, float], allow_unstable: bool) -> None:
    """Fill ``result`` with the outcome, time and memory verdicts of every case in both; withhold time
    verdicts when there is no drift model and the cases' ratios scatter like an unstable machine's."""
    settings = result.settings
    for key in (k for k in base_cases if k in cand_cases):
        b, c = base_cases[key], cand_cases[key]
        if b.outcome != c.outcome:
            result.outcomes.append(OutcomeChange(key, b.outcome, c.outcome, outcome_kind(b.outcome, c.outcome),
                                                 c.reason))
        if b.outcome == "ok" and c.outcome == "ok":
            change = compare_time(key, b, c, settings, drift_thresholds.get(key))
            if change is not None:
                result.time.append(change)
            result.memory.extend(compare_memory(key, b, c, settings))
    result.stability = stability.assess([t.ratio for t in result.time], settings.threshold)
    if result.drift is None and not result.stability.stable and not allow_unstable:
        result.time_judged = False
        for t in result.time:
            if t.verdict in ("slower", "faster"):
                t.verdict, t.regression, t.note = "inconclusive", False, "not judged: machine unstable"


def _apply_confirmation(result: Comparison, check: Comparison, path: str) -> None:
    """Keep the time and memory regressions of ``result`` that ``check`` (baseline vs the rerun) shows too."""
    result.confirm = path
    rerun_time = {t.case: t for t in check.time}
    rerun_memory = {(m.case, m.view): m for m in check.memory}
    for t in result.time:
        if not t.regression:
            continue
        again = rerun_time.get(t.case)
        if again is None:
            t.note = (t.note + "; " if t.note else "") + "not in the rerun: unconfirmed, still counted"
        elif again.regression:
            t.note = (t.note + "; " if t.note else "") + f"reproduced in the rerun ({(again.ratio - 1) * 100:+.1f}%)"
        else:
            change = "-" if again.ratio is None else f"{(again.ratio - 1) * 100:+.1f}%"
            t.verdict, t.regression = "not-reproduced", False
            t.note = (t.note + "; " if t.note else "") + f"did not reproduce in the rerun ({change}, {again.verdict})"
    for m in result.memory:
        if not m.regression:
            continue
        again = rerun_memory.get((m.case, m.view))
        if again is not None and not again.regression:
            m.regression, m.not_reproduced = False, True
            m.note = f"did not reproduce in the rerun ({(again.ratio - 1) * 100:+.1f}%)"
        elif again is not None:
            m.note = f"reproduced in the rerun ({(again.ratio - 1) * 100:+.1f}%)"
        else:
            m.note = "not in the rerun: unconfirmed, still counted"


def load_baseline(paths: Sequence[str]) -> list[Run]:
    """The baseline runs named on the command line; a folder stands for every ``*.json`` in it, by name."""
    runs = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = sorted(path.glob("*.json"))
            if not files:
                raise BadInput(f"baseline folder {path} holds no run files (*.json)")
            runs += [load_run(f) for f in files]
        else:
            runs.append(load_run(path))
    return runs


def parse_fraction(text: str, upper: float = 1.0) -> float:
    """'5%' or '0.05' -> 0.05 (below ``upper``)."""
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage like 5% or a fraction like 0.05, not {text!r}") from None
    if not (0.0 <= value < upper and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: write 5% or 0.05")
    return value


def parse_resolution(text: str) -> float:
    """Like :func:`parse_fraction`, but a noisy machine may need more than 100% ('150%': a 2.5x slowdown)."""
    return parse_fraction(text, upper=math.inf)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Settings()
    parser.add_argument("base", nargs="+",
                        help="baseline: a run (.json, or an effbench journal .jsonl), several runs of the same code "
                             "on the same machine, or a folder of them (results/baselines/<slug>/); with several, "
                             "each case's run-to-run drift is measured and raises its threshold")
    parser.add_argument("candidate", help="candidate run to judge against the baseline")
    parser.add_argument("--threshold", type=parse_fraction, default=d.threshold,
                        help="smallest relative time change that counts as a regression (default 5%%)")
    parser.add_argument("--alpha", type=float, default=d.alpha, help="significance level (default 0.01)")
    parser.add_argument("--noise-multiple", type=float, default=d.noise_multiple, metavar="K",
                        help="per-case threshold is max(--threshold, K x baseline IQR/median) (default 2)")
    parser.add_argument("--memory-threshold", type=parse_fraction, default=None,
                        help="relative peak-memory increase that is a regression (default: --threshold)")
    parser.add_argument("--format", choices=("md", "json"), default="md",
                        help="Markdown report (default) or the full comparison as JSON")
    parser.add_argument("--allow-different-machines", action="store_true",
                        help="compare even when device, GPU, driver or CPU model differ (differences are reported)")
    parser.add_argument("--allow-unstable", action="store_true",
                        help="judge times even when the cases' ratios scatter like an unstable machine's")
    parser.add_argument("--confirm", metavar="RERUN.json",
                        help="a rerun of the candidate's suspect cases (see 'suspects' in --format json); time and "
                             "memory regressions count only when they reproduce there")
    parser.add_argument("--require-resolution", type=parse_resolution, default=None, metavar="FRACTION",
                        help="exit 2 when the median case's threshold is above this (e.g. 10%%): the machine's "
                             "noise would hide a regression that size, so a pass would mean nothing")
    parser.add_argument("--output", "-o", help="write the report here instead of stdout")


def main(args: argparse.Namespace) -> int:
    if not 0.0 < args.alpha < 1.0:
        print("effbench compare: --alpha must be between 0 and 1", file=sys.stderr)
        return 2
    if not 0.0 <= args.noise_multiple < math.inf:  # NaN fails this too
        print("effbench compare: --noise-multiple must be a finite number >= 0", file=sys.stderr)
        return 2
    settings = Settings(
        threshold=args.threshold, alpha=args.alpha, noise_multiple=args.noise_multiple,
        memory_threshold=args.threshold if args.memory_threshold is None else args.memory_threshold,
    )
    try:
        bases, cand = load_baseline(args.base), load_run(args.candidate)
        rerun = load_run(args.confirm) if args.confirm else None
        result = compare_runs(bases, cand, settings, args.allow_different_machines, args.allow_unstable, rerun)
    except BadInput as exc:
        print(f"effbench compare: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result.to_dict(), indent=2) + "\n" if args.format == "json" else to_markdown(result)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:  # exit 1 means a regression: an unwritable -o is a bad argument
            print(f"effbench compare: cannot write --output {args.output}: {exc.strerror or exc}; no verdict "
                  "written (choose a writable path)", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    if result.regressions():
        return 1
    resolution = result.resolution()
    if args.require_resolution is not None and resolution is not None and resolution > args.require_resolution:
        print(f"effbench compare: no regression found, but the median case's threshold is {resolution * 100:.1f}%, "
              f"above --require-resolution {args.require_resolution * 100:g}%: this machine's noise would hide a "
              "regression of that size. Quieten the machine, add rounds (profile) or baseline runs.",
              file=sys.stderr)
        return 2
    if not result.time_judged:
        st = result.stability
        print(f"effbench compare: times not judged: the middle half of the cases' time ratios spread over "
              f"{st.spread * 100:.0f}% (limit {st.limit * 100:.0f}%), so the machine was not steady between or "
              "during the runs (or a change moved many cases by different amounts); rerun on a quiet machine, "
              "or --allow-unstable", file=sys.stderr)
        return 2
    return 0
