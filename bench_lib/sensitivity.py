"""How well does the compare gate work on this machine? False alarms and the smallest slowdown it catches.

Input: several runs of the same code on the same machine (same profile). Two measurements:
- false alarms: every ordered pair (baseline i, candidate j) is compared as the gate would; any time,
  memory or outcome regression between same-code runs is a false alarm. Reported per pair (a night that
  would have failed) and per case comparison.
- detection: for each pair and each planted factor f, every case of the candidate is slowed by f
  (its raw samples scaled) and judged against the baseline; the detection rate at f is the fraction of
  case comparisons found ``slower``. The pair's own run-to-run drift is part of the test, as it is at night.

``python -m bench_lib.sensitivity RUN.json RUN.json [RUN.json ...]`` prints both as Markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys

import numpy as np

from bench_lib.compare import Settings, compare_runs, compare_time, parse_fraction
from bench_lib.runfile import BadInput, load_run

FACTORS = (1.02, 1.05, 1.10, 1.15, 1.20, 1.30)


def evaluate(paths: list[str], settings: Settings, factors=FACTORS) -> dict:
    """The numbers behind the report (see the module docstring); raises BadInput for unusable files."""
    runs = [load_run(p) for p in paths]
    if len(runs) < 2:
        raise BadInput("need at least two runs of the same code")
    pairs = list(itertools.permutations(range(len(runs)), 2))
    false_pairs, false_cases, compared, drifts, noises = [], {}, 0, [], []
    detected = {f: 0 for f in factors}
    testable = 0
    for i, j in pairs:
        result = compare_runs(runs[i], runs[j], settings)
        bad = result.regressions()
        if bad:
            false_pairs.append((paths[i], paths[j], len(bad)))
        for r in bad:
            false_cases[r.case] = false_cases.get(r.case, 0) + 1
        compared += len(result.time)
        by_id = runs[i].by_id is not None and runs[j].by_id is not None  # compare_runs' matching rule
        base_cases = runs[i].by_id if by_id else runs[i].by_fullname
        cand_cases = runs[j].by_id if by_id else runs[j].by_fullname
        for t in result.time:
            if i < j and t.ratio is not None:  # each unordered pair once for the noise figures
                drifts.append(abs(np.log(t.ratio)))
                if t.noise is not None:
                    noises.append(t.noise)
            if t.verdict == "inconclusive":
                continue
            testable += 1
            base, cand = base_cases[t.case], cand_cases[t.case]
            for f in factors:
                slowed = dataclasses.replace(
                    cand, samples_s=tuple(s * f for s in cand.samples_s),
                    summary={k: (v * f if k in ("median", "mean", "stddev", "iqr") else v) for k, v in cand.summary.items()},
                )
                change = compare_time(t.case, base, slowed, settings)
                detected[f] += bool(change and change.regression)
    return {
        "runs": len(runs), "pairs": len(pairs), "case_comparisons": compared, "testable": testable,
        "false_alarm_pairs": false_pairs, "false_alarm_cases": false_cases,
        "false_alarm_case_rate": sum(false_cases.values()) / compared if compared else 0.0,
        "median_noise": float(np.median(noises)) if noises else None,
        "median_drift": float(np.expm1(np.median(drifts))) if drifts else None,
        "p90_drift": float(np.expm1(np.percentile(drifts, 90))) if drifts else None,
        "detection": {f: (detected[f] / testable if testable else 0.0) for f in factors},
    }


def to_markdown(ev: dict, settings: Settings) -> str:
    pct = lambda x: "-" if x is None else f"{x * 100:.1f}%"  # noqa: E731
    n_false = len(ev["false_alarm_pairs"])
    lines = [
        f"## compare gate sensitivity: {ev['runs']} same-code runs, {ev['pairs']} ordered pairs",
        "",
        f"Settings: threshold {settings.threshold * 100:g}%, alpha {settings.alpha:g}, noise multiple "
        f"{settings.noise_multiple:g}. Typical within-run noise (relative IQR, median over cases): "
        f"{pct(ev['median_noise'])}; run-to-run drift of a case's median: median {pct(ev['median_drift'])}, "
        f"90th percentile {pct(ev['p90_drift'])}.",
        "",
        f"**False alarms**: {n_false} of {ev['pairs']} pairs ({n_false / ev['pairs'] * 100:.0f}%) would have failed; "
        f"{sum(ev['false_alarm_cases'].values())} of {ev['case_comparisons']} case comparisons "
        f"({pct(ev['false_alarm_case_rate'])}).",
    ]
    for case, count in sorted(ev["false_alarm_cases"].items(), key=lambda kv: -kv[1]):
        lines.append(f"- `{case}`: {count} pair(s)")
    lines += ["", f"**Detection** of a planted slowdown ({ev['testable']} testable case comparisons):", "",
              "| slowdown | detected |", "|---|---|"]
    lines += [f"| +{(f - 1) * 100:g}% | {pct(rate)} |" for f, rate in ev["detection"].items()]
    caught = [f for f, rate in ev["detection"].items() if rate >= 0.9]
    smallest = f"+{(min(caught) - 1) * 100:g}%" if caught else "none of the planted factors"
    lines += ["", f"Smallest slowdown caught in at least 90% of case comparisons: {smallest}."]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Settings()
    parser.add_argument("runs", nargs="+", help="run files of the same code on the same machine")
    parser.add_argument("--threshold", type=parse_fraction, default=d.threshold)
    parser.add_argument("--alpha", type=float, default=d.alpha)
    parser.add_argument("--noise-multiple", type=float, default=d.noise_multiple)
    parser.add_argument("--factors", default=",".join(f"{f:g}" for f in FACTORS),
                        help="planted slowdown factors, comma-separated (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    settings = Settings(args.threshold, args.alpha, args.noise_multiple, memory_threshold=args.threshold)
    try:
        factors = tuple(float(f) for f in args.factors.split(","))
        ev = evaluate(args.runs, settings, factors)
    except (BadInput, ValueError) as exc:
        print(f"sensitivity: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(to_markdown(ev, settings))
    return 0


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m bench_lib.sensitivity", description=__doc__.splitlines()[0])
    add_arguments(cli)
    sys.exit(main(cli.parse_args()))
