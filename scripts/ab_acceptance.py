#!/usr/bin/env python3
"""Reproduce the acceptance figures of ``effbench ab`` (results/ab-examples/README.md) on this machine.

Three subcommands, each writing under OUT_DIR:

    scripts/ab_acceptance.py trial OUT_DIR NAME [--plant 1.10] [--cpus 0] [--pairs 30] [--processes 3] [--seed S]
                                  [--priority P] [--whole]
        one `effbench ab` of this interpreter against itself over the 15 attention cases (--whole: every
        quick attention case), with
        EFFBENCH_PLANT_SLOWDOWN on side B's 10 planted cases when --plant is given (a test-only, real
        slowdown: the cases spin inside the timed region)
    scripts/ab_acceptance.py runs OUT_DIR [--cpus 1]
        five separate `effbench run`s of the same cases (A1, B10, A2, B5, A3: baseline, +10%, baseline, +5%,
        baseline, interleaved in time) and their `effbench compare` verdicts: 3 baselines and 1 baseline
        against each candidate, and an A/A
    scripts/ab_acceptance.py summarize OUT_DIR [--json trials.json]
        one row per trial: cases caught, unplanted cases flagged, load, time; every case's ratio,
        interval, p and verdict in the JSON

Nothing here edits a number: the rows are read back from the ab result files.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# fp32, d64, causal: s256/s512 fwd and fwd_bwd, s1024 fwd, for eager, sdpa_math, sdpa_flash (15 cases on CPU)
CASES_K = ("(eager or sdpa_math or sdpa_flash) and fp32 and d64 and not noncausal and not compiled and not kv2 "
           "and (s256 or s512 or (s1024 and not fwd_bwd))")
# 10 of the 15: every fwd_bwd case, the s1024 forwards and eager's s512 forward
PLANT_GLOBS = ("attention/*-fwd_bwd-*", "attention/*-fwd-fp32-s1024-*", "attention/eager-fwd-fp32-s512-*")


def plant_rules(factor: float) -> str:
    return ",".join(f"{glob}={factor:g}" for glob in PLANT_GLOBS)


def node_ids(whole: bool = False) -> list[str]:
    """The 15 cases, or with ``whole`` every quick attention case (those that cannot run on CPU end
    ``unsupported`` on both sides and are not judged)."""
    select = [] if whole else ["-k", CASES_K]
    out = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/test_attention.py", "--collect-only", "-q",
                          "--profile", "quick", "--device", "cpu", *select, "-p", "no:cacheprovider"],
                         check=True, capture_output=True, text=True).stdout
    ids = [line.strip() for line in out.splitlines() if "::" in line]
    if not whole and len(ids) != 15:
        raise SystemExit(f"expected the 15 attention cases, collected {len(ids)}: {ids}")
    if not ids:
        raise SystemExit("collected no attention case")
    return ids


def cmd_trial(args: argparse.Namespace) -> int:
    out = Path(args.out_dir) / f"{args.name}.json"
    cmd = [sys.executable, "-m", "bench_lib", "ab", "--a", sys.executable, "--b", sys.executable,
           "--profile", "quick", "--device", "cpu", "--pairs", str(args.pairs), "--processes", str(args.processes),
           "--cpus", args.cpus,
           "--priority", args.priority, "--output", str(out), "--benchmarks", *node_ids(args.whole)]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]
    if args.plant:
        cmd += ["--b-env", f"EFFBENCH_PLANT_SLOWDOWN={plant_rules(args.plant)}"]
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd).returncode
    return 0 if rc in (0, 1) else rc  # 1 = a regression found, the point of a planted trial


def cmd_runs(args: argparse.Namespace) -> int:
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = [("runA1", None), ("runB10", 1.10), ("runA2", None), ("runB5", 1.05), ("runA3", None)]
    for name, factor in plan:
        env = dict(os.environ)
        env.pop("EFFBENCH_PLANT_SLOWDOWN", None)
        if factor:
            env["EFFBENCH_PLANT_SLOWDOWN"] = plant_rules(factor)
        cmd = ["taskset", "-c", args.cpus, "nice", "-n", "-20", sys.executable, "-m", "bench_lib", "run",
               "--profile", "quick", "--device", "cpu", "--benchmarks", "benchmarks/test_attention.py",
               "--output", str(out / f"{name}.json"), "--no-report", "--", "-k", CASES_K]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, env=env, check=True)
    judged = {"compare3-runB10": ["runA1", "runA2", "runA3", "runB10"],
              "compare3-runB5": ["runA1", "runA2", "runA3", "runB5"],
              "compare1-runB10": ["runA2", "runB10"], "compare1-runB5": ["runA2", "runB5"],
              "compare-aa": ["runA1", "runA2", "runA3"]}
    for name, runs in judged.items():
        cmd = [sys.executable, "-m", "bench_lib", "compare", *(str(out / f"{r}.json") for r in runs)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        (out / f"{name}.md").write_text(f"<!-- {' '.join(['effbench compare', *runs])}: exit {res.returncode} -->\n"
                                        + res.stdout + (f"\n{res.stderr}" if res.stderr else ""))
        print(f"{name}: exit {res.returncode}")
    return 0


def trial_row(path: Path) -> dict:
    d = json.loads(path.read_text())
    cases = []
    for c in d["cases"]:
        t = c.get("time") or {}
        cases.append({"case": c["key"], "planted_factor": (c.get("planted_factor") or {}).get("B", 1.0),
                      "rounds_per_sample": c.get("rounds_per_sample"), "verdict": t.get("verdict", c["outcome"]),
                      "ratio": t.get("ratio"), "ci": t.get("ci"), "p_value": t.get("p_value"),
                      "p_holm": t.get("p_holm"), "pairs": t.get("pairs"), "process_ratios": t.get("process_ratios"),
                      "note": t.get("note", "")})
    return {"trial": path.stem, "started_at": d["started_at"], "finished_at": d["finished_at"],
            "load_average": d["load_average"], "cpus": d["cpus"], "pair_settings": d["pair_settings"],
            "settings": d["settings"], "sides_env": {s: d["sides"][s]["env"] for s in ("A", "B")},
            "priority": d.get("priority"), "cases": cases}


def cmd_summarize(args: argparse.Namespace) -> int:
    rows = [trial_row(p) for p in sorted(Path(args.out_dir).glob("*.json"))
            if json.loads(p.read_text()).get("kind") == "ab"]
    rows.sort(key=lambda r: r["started_at"])
    print("| trial | priority | pairs | processes | cpus | cases judged | planted | caught "
          "| unplanted flagged (slower/faster) | inconclusive | load 1-min start -> end | UTC |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        planted = [c for c in r["cases"] if c["planted_factor"] != 1.0]
        other = [c for c in r["cases"] if c["planted_factor"] == 1.0]
        factor = f"{len(planted)} x{planted[0]['planted_factor']:g}" if planted else "0"
        caught = f"{sum(c['verdict'] == 'slower' for c in planted)}/{len(planted)}"
        flagged = (f"{sum(c['verdict'] == 'slower' for c in other)}/"
                   f"{sum(c['verdict'] == 'faster' for c in other)}")
        judged = sum(c["verdict"] in ("same", "slower", "faster", "inconclusive") for c in r["cases"])
        applied = (r["priority"] or {}).get("applied") or {}
        prio = (r["priority"] or {}).get("requested", "-") + (f" ({applied.get('A')})" if applied else "")
        la = r["load_average"]
        print(f"| {r['trial']} | {prio} | {r['pair_settings']['pairs']} | {r['pair_settings'].get('processes', 1)} | {r['cpus']} | {judged} | {factor} | {caught} "
              f"| {flagged} | {sum(c['verdict'] == 'inconclusive' for c in r['cases'])} | {la['start'][0]} -> {la['end'][0]} | {r['started_at'][11:16]}-{r['finished_at'][11:16]} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("trial")
    t.add_argument("out_dir")
    t.add_argument("name")
    t.add_argument("--plant", type=float, default=None, help="side B's factor on the 10 planted cases")
    t.add_argument("--cpus", default="0")
    t.add_argument("--pairs", type=int, default=30)
    t.add_argument("--processes", type=int, default=3, help="fresh worker process pairs per case (1: the series before)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--priority", default="high", choices=("normal", "high", "realtime"))
    t.add_argument("--whole", action="store_true",
                   help="every quick attention case instead of the 15 (about 44 run on CPU; a trial takes 20+ min)")
    r = sub.add_parser("runs")
    r.add_argument("out_dir")
    r.add_argument("--cpus", default="1")
    s = sub.add_parser("summarize")
    s.add_argument("out_dir")
    s.add_argument("--json", default=None)
    args = p.parse_args(argv)
    return {"trial": cmd_trial, "runs": cmd_runs, "summarize": cmd_summarize}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
