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
Then the pair itself: when the cases' ratios scatter like an unsteady machine's, time is not judged.
Exit status: 0 no regression, 1 regression, 2 bad input, refused machines, or time not judgeable.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field

from bench_lib import stability
from bench_lib.compare_render import to_markdown
from bench_lib.machine_match import machine_differences
from bench_lib.runfile import BadInput, CaseRun, Run, load_run
from bench_lib.time_verdict import Settings, TimeChange, compare_time

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
            "time": {v: sum(t.verdict == v for t in self.time) for v in ("slower", "faster", "same", "inconclusive")},
            "memory_regressions": sum(m.regression for m in self.memory),
            "outcome_regressions": sum(o.kind == "regression" for o in self.outcomes),
            "new": len(self.new),
            "missing": len(self.missing),
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


def compare_runs(base: Run, cand: Run, settings: Settings, allow_different_machines: bool = False,
                 allow_unstable: bool = False) -> Comparison:
    """Match cases (``suite/id`` when both runs are effbench runs, else pytest-benchmark fullname) and judge.

    Time verdicts are withheld when the per-case ratios scatter like an unstable machine's
    (:mod:`bench_lib.stability`) unless ``allow_unstable``.
    """
    differences, blocking = machine_differences(base, cand)
    if blocking and not allow_different_machines:
        raise BadInput(
            "refusing to compare runs from different machines (--allow-different-machines to override):\n  "
            + "\n  ".join(blocking)
        )
    if base.by_id is not None and cand.by_id is not None:
        base_cases, cand_cases = base.by_id, cand.by_id
    else:
        base_cases, cand_cases = base.by_fullname, cand.by_fullname
    common = [k for k in base_cases if k in cand_cases]
    if not common:
        raise BadInput(f"no cases in common between {base.path} ({len(base_cases)} cases) "
                       f"and {cand.path} ({len(cand_cases)} cases)")
    result = Comparison(base.path, cand.path, settings, differences)
    result.new = [k for k in cand_cases if k not in base_cases]
    result.missing = [k for k in base_cases if k not in cand_cases]
    for key in common:
        b, c = base_cases[key], cand_cases[key]
        if b.outcome != c.outcome:
            result.outcomes.append(OutcomeChange(key, b.outcome, c.outcome, outcome_kind(b.outcome, c.outcome),
                                                 c.reason))
        if b.outcome == "ok" and c.outcome == "ok":
            change = compare_time(key, b, c, settings)
            if change is not None:
                result.time.append(change)
            result.memory.extend(compare_memory(key, b, c, settings))
    result.stability = stability.assess([t.ratio for t in result.time], settings.threshold)
    if not result.stability.stable and not allow_unstable:
        result.time_judged = False
        for t in result.time:
            if t.verdict in ("slower", "faster"):
                t.verdict, t.regression, t.note = "inconclusive", False, "not judged: machine unstable"
    return result


def parse_fraction(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage like 5% or a fraction like 0.05, not {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: write 5% or 0.05")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Settings()
    parser.add_argument("base", help="baseline run (.json, or an effbench journal .jsonl)")
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
    parser.add_argument("--output", "-o", help="write the report here instead of stdout")


def main(args: argparse.Namespace) -> int:
    if not 0.0 < args.alpha < 1.0:
        print("effbench compare: --alpha must be between 0 and 1", file=sys.stderr)
        return 2
    settings = Settings(
        threshold=args.threshold, alpha=args.alpha, noise_multiple=args.noise_multiple,
        memory_threshold=args.threshold if args.memory_threshold is None else args.memory_threshold,
    )
    try:
        base, cand = load_run(args.base), load_run(args.candidate)
        result = compare_runs(base, cand, settings, args.allow_different_machines, args.allow_unstable)
    except BadInput as exc:
        print(f"effbench compare: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result.to_dict(), indent=2) + "\n" if args.format == "json" else to_markdown(result)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if result.regressions():
        return 1
    if not result.time_judged:
        st = result.stability
        print(f"effbench compare: times not judged: the middle half of the cases' time ratios spread over "
              f"{st.spread * 100:.0f}% (limit {st.limit * 100:.0f}%), so the machine was not steady between or "
              "during the runs (or a change moved many cases by different amounts); rerun on a quiet machine, "
              "or --allow-unstable", file=sys.stderr)
        return 2
    return 0
