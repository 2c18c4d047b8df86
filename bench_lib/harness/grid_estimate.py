"""How long a profile takes: its case grid counted per suite, times a time per case, measured or assumed.

    python -m bench_lib.harness.grid_estimate --profile full --device cuda [--from RUN.json ...]

The counts are exact (the grids of :mod:`bench_lib.harness.profiles`). The time per case is, per suite, the
median wall time per case (``finished_at - started_at`` of its records) of the measured runs given with
``--from`` (best: a run of the same profile on the same GPU; a quick run underestimates the full one), else
the assumption below, which the output labels as such. The nightly workflow sizes its job timeouts by it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime

from bench_lib.harness import profiles

# Assumed seconds per case on one H100/H200-class GPU, not measured (replace with --from once a run exists).
# full: attention ~5 s (3 warmup calls, <= 2 s of timed rounds, check against the fp32 reference, memory
# repeat, energy window); precision ~90 s (load 1B-13B random weights per precision, 3 + 15 generate rounds
# of 64 tokens, bitsandbytes int8 decode the slowest); finetune ~60 s (build up to 7B, 18 steps; convergence:
# a short pretrain + 60 steps). quick: the grid comments' "~1.5 minutes per suite on an H200".
ASSUMED_S_PER_CASE = {
    ("cuda", "full"): {"calibration": 10.0, "attention": 5.0, "precision": 90.0, "finetune": 60.0},
    ("cuda", "quick"): {"calibration": 5.0, "attention": 1.3, "precision": 6.5, "finetune": 4.0},
}


@dataclass(frozen=True)
class SuiteEstimate:
    suite: str
    cases: int
    s_per_case: float | None
    source: str  # "measured (N cases)", "assumed" or "unknown"

    @property
    def total_s(self) -> float | None:
        return None if self.s_per_case is None else self.cases * self.s_per_case


def measured_s_per_case(runs: list[dict]) -> dict[str, tuple[float, int]]:
    """suite -> (median wall seconds per case, number of cases) over the case records of ``runs``."""
    walls: dict[str, list[float]] = {}
    for run in runs:
        for rec in (run.get("effbench") or {}).get("cases", []):
            try:
                wall = (datetime.fromisoformat(rec["finished_at"]) - datetime.fromisoformat(rec["started_at"]))
            except (KeyError, TypeError, ValueError):
                continue
            walls.setdefault(rec["suite"], []).append(wall.total_seconds())
    return {suite: (statistics.median(w), len(w)) for suite, w in walls.items()}


def estimate(profile: str, device_type: str, runs: list[dict] | None = None) -> list[SuiteEstimate]:
    """One row per suite of the grid of (profile, device type)."""
    measured = measured_s_per_case(runs or [])
    assumed = ASSUMED_S_PER_CASE.get((device_type, profile), {})
    rows = []
    for suite in profiles.GRIDS:
        n = len(profiles.cases(suite, profile, device_type))
        if suite in measured:
            s, count = measured[suite]
            rows.append(SuiteEstimate(suite, n, s, f"measured ({count} cases)"))
        elif suite in assumed:
            rows.append(SuiteEstimate(suite, n, assumed[suite], "assumed"))
        else:
            rows.append(SuiteEstimate(suite, n, None, "unknown"))
    return rows


def format_estimate(rows: list[SuiteEstimate], profile: str, device_type: str) -> str:
    lines = [f"profile {profile} on {device_type}:", f"{'suite':<12}{'cases':>7}{'s/case':>9}{'total':>10}  source"]
    for r in rows:
        s = "-" if r.s_per_case is None else f"{r.s_per_case:.1f}"
        t = "-" if r.total_s is None else f"{r.total_s / 60:.0f} min"
        lines.append(f"{r.suite:<12}{r.cases:>7}{s:>9}{t:>10}  {r.source}")
    known = [r.total_s for r in rows if r.total_s is not None]
    total = f"{sum(known) / 60:.0f} min = {sum(known) / 3600:.1f} h"
    lines.append(f"{'total':<12}{sum(r.cases for r in rows):>7}{'':>9}  {total}"
                 + ("" if len(known) == len(rows) else " (suites of unknown time left out)"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench_lib.harness.grid_estimate", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="full", choices=profiles.PROFILE_CHOICES)
    p.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    p.add_argument("--from", dest="runs", nargs="+", default=[], metavar="RUN.json",
                   help="measured runs: their median wall time per case, per suite, replaces the assumption")
    args = p.parse_args(argv)
    runs = []
    for path in args.runs:
        try:
            with open(path) as f:
                runs.append(json.load(f))
        except (OSError, ValueError) as exc:
            print(f"grid_estimate: cannot read {path} ({exc}); give an effbench run file", file=sys.stderr)
            return 2
    print(format_estimate(estimate(args.profile, args.device, runs), args.profile, args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
