"""How well does the compare gate work on this machine? False alarms and the smallest slowdown it catches.

Input: several runs of the same code on the same machine (same profile). With ``--baseline-runs 1``
(default) every ordered pair (baseline i, candidate j) is a trial; with k > 1, each run is the candidate
against every k-subset of the other runs as its baseline (the candidate never informs its own baseline,
as at night). Two measurements:
- false alarms: each trial is compared as the gate would; any time, memory or outcome regression between
  same-code runs is a false alarm. Reported per trial (a night that would have failed) and per case.
- detection: for each trial and each planted factor f, every case of the candidate is slowed by f
  (its raw samples scaled) and judged against the baseline; the detection rate at f is the fraction of
  case comparisons found ``slower`` (with ``--confirm``: slower in the candidate and in its rerun, both
  slowed). The trial's own run-to-run drift is part of the test, as it is at night (judged per case, as if
  the pair were steady). Also each run against a slowed copy of itself: what the
  within-run noise alone allows, i.e. the gate on a machine that does not drift.

``effbench sensitivity RUN.json RUN.json [RUN.json ...] [--baseline-runs K]`` prints both as Markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys

import numpy as np

from bench_lib.gate.compare import (
    Settings,
    cases_of,
    compare_runs,
    compare_time,
    match_by_id,
    parse_fraction,
    pool_baseline,
)
from bench_lib.harness.runfile import BadInput, CaseRun, load_run

FACTORS = (1.02, 1.05, 1.10, 1.15, 1.20, 1.30)


def _slowed(case: CaseRun, factor: float) -> CaseRun:
    """``case`` with every timing multiplied by ``factor`` (raw samples and summary alike)."""
    summary = {k: (v * factor if k in ("median", "mean", "stddev", "iqr") else v) for k, v in case.summary.items()}
    return dataclasses.replace(case, samples_s=tuple(x * factor for x in case.samples_s), summary=summary)




def trials(n_runs: int, baseline_runs: int, confirm: bool = False) -> list[tuple[tuple[int, ...], int, int | None]]:
    """(baseline run indices, candidate index, rerun index or None). Without confirmation: every ordered pair
    for one baseline run; for k runs, each run as the candidate against every k-subset of the others (the
    candidate never informs its baseline). With confirmation, runs in a circle: candidate j, its rerun j + 1,
    baseline the k runs after that."""
    if confirm:
        return [(tuple((j + 2 + i) % n_runs for i in range(baseline_runs)), j, (j + 1) % n_runs)
                for j in range(n_runs)]
    out = []
    for j in range(n_runs):
        others = [i for i in range(n_runs) if i != j]
        out += [(combo, j, None) for combo in itertools.combinations(others, baseline_runs)]
    return out


def evaluate(paths: list[str], settings: Settings, factors=FACTORS, baseline_runs: int = 1,
             confirm: bool = False) -> dict:
    """The numbers behind the report (see the module docstring); raises BadInput for unusable files."""
    runs = [load_run(p) for p in paths]
    needed = baseline_runs + 1 + confirm
    if len(runs) < needed:
        raise BadInput(f"need at least {needed} runs of the same code for {baseline_runs} baseline run(s), a "
                       "candidate" + (" and its rerun" if confirm else ""))
    pairs = trials(len(runs), baseline_runs, confirm)
    false_pairs, false_cases, unjudged, compared, drifts, noises, spreads = [], {}, 0, 0, [], [], []
    resolutions, not_reproduced = [], 0
    cross = {f: 0 for f in factors}
    self_hits = {f: 0 for f in factors}
    testable = self_testable = 0
    for bases, j, rerun in pairs:
        result = compare_runs([runs[i] for i in bases], runs[j], settings,
                              confirm=runs[rerun] if rerun is not None else None)
        once = baseline_runs > 1 or bases[0] < j  # each unordered pair once for the noise figures
        bad = result.regressions()
        not_reproduced += len(result.not_reproduced())
        if bad:
            false_pairs.append(("+".join(paths[i] for i in bases), paths[j], len(bad)))
        for r in bad:
            false_cases[r.case] = false_cases.get(r.case, 0) + 1
        unjudged += not result.time_judged
        compared += len(result.time)
        if result.resolution() is not None:
            resolutions.append(result.resolution())
        if result.stability.spread is not None and once:
            spreads.append(result.stability.spread)
        by_id = match_by_id([runs[i] for i in (*bases, j) + ((rerun,) if rerun is not None else ())])
        base_cases, _ = pool_baseline([runs[i] for i in bases], by_id)
        cand_cases = cases_of(runs[j], by_id)
        rerun_cases = cases_of(runs[rerun], by_id) if rerun is not None else None
        for t in result.time:
            if once and t.ratio is not None:
                drifts.append(abs(np.log(t.ratio)))
                if t.noise is not None:
                    noises.append(t.noise)
            if t.p_value is None:  # too few samples: no factor could be caught
                continue
            testable += 1
            for f in factors:
                change = compare_time(t.case, base_cases[t.case], _slowed(cand_cases[t.case], f), settings, t.drift)
                caught = bool(change and change.regression)
                if caught and rerun_cases is not None and rerun_cases.get(t.case) is not None:
                    again = compare_time(t.case, base_cases[t.case], _slowed(rerun_cases[t.case], f), settings,
                                         t.drift)
                    caught = bool(again and again.regression)  # a real slowdown is in the rerun too
                cross[f] += caught
    for run in runs:  # a run against a slowed copy of itself: the within-run noise alone
        for key, case in cases_of(run, match_by_id([run])).items():
            if case.outcome != "ok" or compare_time(key, case, case, settings) is None:
                continue
            if compare_time(key, case, case, settings).p_value is None:
                continue
            self_testable += 1
            for f in factors:
                self_hits[f] += compare_time(key, case, _slowed(case, f), settings).regression
    return {
        "runs": len(runs), "baseline_runs": baseline_runs, "confirm": confirm,
        "not_reproduced": not_reproduced, "pairs": len(pairs), "case_comparisons": compared,
        "testable": testable, "median_resolution": float(np.median(resolutions)) if resolutions else None,
        "false_alarm_pairs": false_pairs, "false_alarm_cases": false_cases, "unjudged_pairs": unjudged,
        "false_alarm_case_rate": sum(false_cases.values()) / compared if compared else 0.0,
        "median_noise": float(np.median(noises)) if noises else None,
        "median_drift": float(np.expm1(np.median(drifts))) if drifts else None,
        "p90_drift": float(np.expm1(np.percentile(drifts, 90))) if drifts else None,
        "median_spread": float(np.median(spreads)) if spreads else None,
        "detection": {f: (cross[f] / testable if testable else 0.0) for f in factors},
        "self_testable": self_testable,
        "self_detection": {f: (self_hits[f] / self_testable if self_testable else 0.0) for f in factors},
    }


def to_markdown(ev: dict, settings: Settings) -> str:
    pct = lambda x: "-" if x is None else f"{x * 100:.1f}%"  # noqa: E731
    n_false = len(ev["false_alarm_pairs"])
    lines = [
        f"## compare gate sensitivity: {ev['runs']} same-code runs, {ev['pairs']} trials of "
        f"{ev['baseline_runs']} baseline run(s) against 1 candidate"
        + (" confirmed by a rerun (another run)" if ev["confirm"] else ""),
        "",
        f"Settings: threshold {settings.threshold * 100:g}%, alpha {settings.alpha:g}, noise multiple "
        f"{settings.noise_multiple:g}. Typical within-run noise (relative IQR, median over cases): "
        f"{pct(ev['median_noise'])}; run-to-run drift of a case's median: median {pct(ev['median_drift'])}, "
        f"90th percentile {pct(ev['p90_drift'])}; spread of the cases' ratios in a pair (median over pairs): "
        f"{pct(ev['median_spread'])}. Median case threshold (the gate's resolution, median over trials): "
        f"{pct(ev['median_resolution'])}.",
        "",
        f"**False alarms** (exit 1 between same-code runs): {n_false} of {ev['pairs']} trials; "
        f"{sum(ev['false_alarm_cases'].values())} of {ev['case_comparisons']} case comparisons "
        f"({pct(ev['false_alarm_case_rate'])}). Pairs whose times were not judged (one baseline run and an unsteady "
        f"machine, exit 2): {ev['unjudged_pairs']} of {ev['pairs']}."
        + (f" Suspects cleared because the rerun did not show them: {ev['not_reproduced']}." if ev["confirm"] else ""),
    ]
    for case, count in sorted(ev["false_alarm_cases"].items(), key=lambda kv: -kv[1]):
        lines.append(f"- `{case}`: {count} pair(s)")
    lines += ["", "**Detection** of a slowdown planted into every case (fraction of case comparisons found slower):",
              "", f"| slowdown | vs another run ({ev['testable']}; per case, as if the pair were judged) "
              f"| vs the same run ({ev['self_testable']}) |", "|---|---|---|"]
    lines += [f"| +{(f - 1) * 100:g}% | {pct(ev['detection'][f])} | {pct(ev['self_detection'][f])} |"
              for f in ev["detection"]]
    for label, key in (("another run", "detection"), ("the same run", "self_detection")):
        caught = [f for f, rate in ev[key].items() if rate >= 0.9]
        smallest = f"+{(min(caught) - 1) * 100:g}%" if caught else "none of the planted factors"
        lines.append(f"\nSmallest slowdown caught in at least 90% of comparisons against {label}: {smallest}.")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Settings()
    parser.add_argument("runs", nargs="+", help="run files of the same code on the same machine")
    parser.add_argument("--threshold", type=parse_fraction, default=d.threshold)
    parser.add_argument("--alpha", type=float, default=d.alpha)
    parser.add_argument("--noise-multiple", type=float, default=d.noise_multiple)
    parser.add_argument("--baseline-runs", type=int, default=1, metavar="K",
                        help="baseline runs per trial (default 1); K > 1 measures each case's drift as the gate "
                             "does with a baseline folder")
    parser.add_argument("--confirm", action="store_true",
                        help="confirm each trial's regressions with a rerun (another of the runs), as the nightly "
                             "workflow does")
    parser.add_argument("--factors", default=",".join(f"{f:g}" for f in FACTORS),
                        help="planted slowdown factors, comma-separated (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    settings = Settings(args.threshold, args.alpha, args.noise_multiple, memory_threshold=args.threshold)
    try:
        factors = tuple(float(f) for f in args.factors.split(","))
        if args.baseline_runs < 1:
            raise ValueError("--baseline-runs must be at least 1")
        ev = evaluate(args.runs, settings, factors, args.baseline_runs, args.confirm)
    except (BadInput, ValueError) as exc:
        print(f"sensitivity: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(to_markdown(ev, settings))
    return 0


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m bench_lib.gate.sensitivity", description=__doc__.splitlines()[0])
    add_arguments(cli)
    sys.exit(main(cli.parse_args()))
