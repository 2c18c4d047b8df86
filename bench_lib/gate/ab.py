"""``effbench ab --a SIDE --b SIDE``: two environments on one machine, in one job, their rounds interleaved.

Separate runs on a shared machine differ by more than the changes users care about; two environments
measured in one job, sample next to sample in randomized order, share the machine's drift, and it cancels
in their paired ratios. A SIDE is a Python interpreter (a venv: other package versions) or a git ref of the
suite (other code), plus ``--a-env/--b-env KEY=VALUE``. One long-lived worker per side
(:mod:`bench_lib.gate.ab_worker`) builds each case once; the parent takes the pairs
(:mod:`bench_lib.gate.ab_pairs`) and judges them (:mod:`bench_lib.gate.ab_verdict`). Where the sides'
environments differ (torch, CUDA, driver, bitsandbytes, flash-attn, ...) the output says exactly what
differed: that is the point of the run.

Outputs: ``RUN.json`` (every pair, in the order taken, and every verdict), ``RUN.md``, the journal
``RUN.jsonl`` (``--resume RUN.json`` continues a killed run) and each worker's log ``RUN-a.log``/``RUN-b.log``.
Exit status as ``compare``'s: 0 no regression, 1 regression (time, memory or outcome of B against A),
2 bad input or nothing could be judged.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench_lib.gate import ab_pairs, ab_sides, ab_verdict
from bench_lib.gate.ab_pairs import SIDES, PairJournal, PairSettings
from bench_lib.gate.ab_render import to_markdown
from bench_lib.gate.compare import parse_fraction
from bench_lib.gate.machine_match import machine_differences
from bench_lib.gate.time_verdict import Settings
from bench_lib.harness.runfile import BadInput, Run

SCHEMA_VERSION = 1
DEFAULT_PROCESSES = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d, p = Settings(), PairSettings()
    parser.add_argument("--a", metavar="SIDE", help="side A (the reference): a Python interpreter (a venv's bin/python) "
                        "or a git ref of this repository")
    parser.add_argument("--b", metavar="SIDE", help="side B (the candidate), the same way")
    parser.add_argument("--a-env", action="append", metavar="KEY=VALUE", help="environment variable for side A (repeatable)")
    parser.add_argument("--b-env", action="append", metavar="KEY=VALUE", help="environment variable for side B (repeatable)")
    parser.add_argument("--benchmarks", nargs="+", default=None, metavar="NODEID",
                        help="benchmark files or pytest node ids (default: benchmarks)")
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--pairs", type=int, default=p.pairs, help=f"pairs per case (default {p.pairs}; on a shared CPU machine use 30 "
                        "with --cpus 0: the setting measured in results/ab-examples/README.md)")
    parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES, metavar="P",
                        help=f"fresh worker process pairs per case (default {DEFAULT_PROCESSES}): the pairs are taken in P blocks, "
                             "both workers restarted between them, and a verdict needs every process pair to agree on "
                             "its direction (one pair of processes can differ by itself: a steady -6%% in an A/A)")
    parser.add_argument("--sample-time", type=float, default=p.sample_time_s, metavar="S",
                        help=f"about how long one sample's calls take, seconds (default {p.sample_time_s:g})")
    parser.add_argument("--threshold", type=parse_fraction, default=d.threshold,
                        help="smallest relative time change that counts (default 5%%)")
    parser.add_argument("--memory-threshold", type=parse_fraction, default=None,
                        help="relative peak-memory increase that is a regression (default: --threshold)")
    parser.add_argument("--alpha", type=float, default=d.alpha, help="family-wise significance level (default 0.01)")
    parser.add_argument("--seed", type=int, default=p.seed, help="seed of the pair orders (recorded)")
    parser.add_argument("--cpus", metavar="LIST", default=None,
                        help="pin both workers to these same cores (e.g. 0, or 0-3): on a shared machine two sides on "
                             "different cores meet different neighbours, and that does not cancel in the pairs (recommended on a "
                             "shared CPU machine, with --pairs 30)")
    parser.add_argument("--priority", default="high", choices=ab_sides.PRIORITIES,
                        help="the workers' scheduling: high (nice -20, the default), realtime (SCHED_FIFO, with --cpus: "
                             "the least disturbed on a busy machine) or normal; raising it needs root or CAP_SYS_NICE, "
                             "and what each worker got is recorded")
    parser.add_argument("--reply-timeout", type=float, default=p.reply_timeout_s, metavar="S",
                        help="longest wait for one build or sample before the side's case is a timeout")
    parser.add_argument("--output", metavar="PATH.json", help="result file; journal, Markdown and worker logs beside it "
                        "(default results/<machine>/ab-<time>.json)")
    parser.add_argument("--resume", metavar="PATH.json", help="continue an interrupted ab run from its journal")
    parser.add_argument("--results-dir", default="results", help="where the default output goes")


def _header_from_args(args, sides: dict[str, ab_sides.Side]) -> dict[str, Any]:
    memory_threshold = args.threshold if args.memory_threshold is None else args.memory_threshold
    return {
        "type": "header", "kind": "ab", "schema_version": SCHEMA_VERSION, "started_at": ab_pairs.now(),
        "load_average_start": _load_average(),
        "sides": {name: side.describe() for name, side in sides.items()},
        "profile": args.profile, "device": args.device, "benchmarks": args.benchmarks or ["benchmarks"],
        "cpus": ab_sides.parse_cpus(args.cpus), "priority": args.priority,
        "settings": {"threshold": args.threshold, "alpha": args.alpha, "memory_threshold": memory_threshold},
        "pair_settings": dataclasses.asdict(PairSettings(args.pairs, args.sample_time, reply_timeout_s=args.reply_timeout,
                                                         seed=args.seed, processes=args.processes)),
    }


def environment_differences(env_a: dict, env_b: dict, side_a: dict, side_b: dict) -> list[str]:
    """What differs between the sides, as 'label: A value -> B value': machine facts and package versions
    (:mod:`bench_lib.gate.machine_match`), the suite's commit, and the variables given to one side only."""
    runs = [Run(f"side {n}", {"effbench": e}, None, {}) for n, e in (("A", env_a), ("B", env_b))]
    out, _ = machine_differences(*runs)
    commits = [(e.get("git") or {}).get("commit") for e in (env_a, env_b)]
    if None not in commits and commits[0] != commits[1]:
        out.append(f"suite commit: {commits[0][:12]} -> {commits[1][:12]}")
    for key in sorted(set(side_a.get("env") or {}) | set(side_b.get("env") or {})):
        va, vb = (side_a.get("env") or {}).get(key), (side_b.get("env") or {}).get(key)
        if va != vb:
            out.append(f"env {key}: {va if va is not None else '(unset)'} -> {vb if vb is not None else '(unset)'}")
    return out


def assemble(header: dict, environments: dict, case_lists: dict, records: dict, pairs: dict,
             finished_at: str | None, priorities: dict | None = None) -> dict[str, Any]:
    """The result document: sides, what differed, every case with its pairs (in order) and its verdicts.

    ``priorities``: each side's worker's scheduling as applied (:func:`bench_lib.gate.ab_sides.applied_priority`)."""
    s = Settings(threshold=header["settings"]["threshold"], alpha=header["settings"]["alpha"],
                 memory_threshold=header["settings"]["memory_threshold"])
    keys_a = {f"{c['suite']}/{c['id']}" for c in case_lists["A"]}
    keys_b = {f"{c['suite']}/{c['id']}" for c in case_lists["B"]}
    both_ok = {k: pairs.get(k, []) for k, r in records.items() if all(r["outcome"].get(x) == "ok" for x in SIDES)}
    time = {c.case: c for c in ab_verdict.judge_time(both_ok, s)}
    cases, memory, outcomes = [], [], []
    for key, rec in records.items():
        mem = ab_verdict.judge_memory(key, rec["memory"].get("A"), rec["memory"].get("B"), s) if key in both_ok else []
        kind = ab_verdict.judge_outcome(rec["outcome"].get("A"), rec["outcome"].get("B"))
        if kind is not None:
            outcomes.append({"case": key, "a": rec["outcome"].get("A"), "b": rec["outcome"].get("B"), "kind": kind,
                             "reason": rec["reason"].get("B") or rec["reason"].get("A")})
        memory += [dataclasses.asdict(m) for m in mem]
        cases.append({**rec, "pairs": pairs.get(key, []),
                      "time": dataclasses.asdict(time[key]) if key in time else None})
    regressions = (sum(c["time"] is not None and c["time"]["regression"] for c in cases)
                   + sum(m["regression"] for m in memory) + sum(o["kind"] == "regression" for o in outcomes))
    verdicts = [c["time"]["verdict"] for c in cases if c["time"] is not None]
    return {
        "kind": "ab", "schema_version": SCHEMA_VERSION, "started_at": header["started_at"], "finished_at": finished_at,
        "sides": {n: {**header["sides"][n], "environment": environments.get(n)} for n in SIDES},
        "differences": environment_differences(environments.get("A") or {}, environments.get("B") or {},
                                               header["sides"]["A"], header["sides"]["B"]),
        "profile": header["profile"], "device": header["device"], "benchmarks": header["benchmarks"],
        "cpus": header.get("cpus"),
        "priority": {"requested": header.get("priority", "normal"), "applied": priorities or {}},
        "load_average": {"start": header.get("load_average_start"), "end": _load_average(),
                                                      "cores": os.cpu_count()},
        "settings": header["settings"], "pair_settings": header["pair_settings"],
        "cases": cases, "memory": memory, "outcomes": outcomes,
        "missing": sorted(keys_a - keys_b), "new": sorted(keys_b - keys_a),
        "regression": regressions > 0,
        "summary": {"regressions": regressions, "cases": len(cases),
                    "time": {v: verdicts.count(v) for v in ("slower", "faster", "same", "inconclusive")},
                    "memory_regressions": sum(m["regression"] for m in memory),
                    "outcome_regressions": sum(o["kind"] == "regression" for o in outcomes)},
    }


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: how shared the machine was (the output reports them)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _default_output(results_dir: str, device: str) -> Path:
    """results/<machine>/ab-<UTC time>.json, the machine named as ``effbench run`` names it."""
    from bench_lib.harness import env as envs  # imports torch: only when no --output was given

    gpu = envs.gpu_info() if device != "cpu" and envs.torch.cuda.is_available() else None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(results_dir) / envs.machine_slug(envs.cpu_info(), gpu) / f"ab-{stamp}.json"


class Live:
    """The live line per case on stderr: overwritten while pairs come in (on a terminal), kept when done."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty = stream, stream.isatty()

    def progress(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()

    def done(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()


def case_line(n: int, total: int, rec: dict, pairs: list[dict], s: Settings) -> str:
    """One case's line as it finishes: outcomes, or the paired ratio with its (uncorrected) interval."""
    head = f"[{n}/{total}] {rec['key']}:"
    if not all(rec["outcome"].get(x) == "ok" for x in SIDES):
        return f"{head} A {rec['outcome'].get('A')}, B {rec['outcome'].get('B')} " + \
            f"({rec['reason'].get('B') or rec['reason'].get('A') or ''})"[:200]
    c = ab_verdict.judge_time({rec["key"]: pairs}, s)[0]
    if c.ratio is None:
        return f"{head} {c.note}"
    ci = f" [{c.ci[0]:.3f}, {c.ci[1]:.3f}]" if c.ci else ""
    return f"{head} B/A {c.ratio:.3f}{ci} over {c.pairs} pairs, p {c.p_value:.2g}"


def block_line(pairs: list[dict], process: int) -> str:
    """A block's line: this process pair's median B/A (the case's verdict comes with its last block)."""
    ratios = [p["b_s"] / p["a_s"] for p in pairs if p.get("process", 0) == process and p["a_s"] > 0]
    if not ratios:
        return "no pairs"
    ratios.sort()
    return f"B/A {ratios[len(ratios) // 2]:.3f} over {len(ratios)} pairs in this process pair"


def run(header: dict, workers: dict, journal: PairJournal, live: Live, fresh: bool) -> dict[str, Any]:
    """Collect on both sides, then measure every common case not yet finished; return the result document."""
    try:
        environments, case_lists = _start(header, workers)
    except (ab_sides.WorkerDied, ab_sides.WorkerTimeout) as exc:
        logs = [w.stderr_path for w in workers.values() if getattr(w, "stderr_path", None)]
        raise BadInput(f"{exc} before measuring anything (does that interpreter have effbench's dependencies, "
                       f"torch and pytest?){'; see ' + ', '.join(logs) if logs else ''}") from None
    in_b = {c["nodeid"] for c in case_lists["B"]}
    common = [c for c in case_lists["A"] if c["nodeid"] in in_b]
    if not common:
        raise BadInput(f"no case collected on both sides from {' '.join(header['benchmarks'])} "
                       f"(A: {len(case_lists['A'])}, B: {len(case_lists['B'])})")
    if fresh:
        journal.append({**header, "environments": environments})
    else:
        journal.repair()
        _check_same_environments(journal, environments)
    _, records, pairs, blocks = journal.read_all()
    s = Settings(threshold=header["settings"]["threshold"], alpha=header["settings"]["alpha"])
    ps = PairSettings(**header["pair_settings"])
    bounds = ab_pairs.block_bounds(ps)
    used = False  # whether the running workers have measured anything yet
    for r, (_, stop) in enumerate(bounds):
        todo = [(n, c) for n, c in enumerate(common, 1)
                if f"{c['suite']}/{c['id']}" not in records and (f"{c['suite']}/{c['id']}", r) not in blocks]
        if not todo:
            continue
        if used:  # a fresh pair of processes for every block: each builds the case again
            for w in workers.values():
                if hasattr(w, "quit"):
                    w.quit()
        used = True
        round_tag = f"[process pair {r + 1}/{len(bounds)}] " if len(bounds) > 1 else ""
        for n, case in todo:
            key = f"{case['suite']}/{case['id']}"
            tag = f"{round_tag}[{n}/{len(common)}]"
            rec = ab_pairs.measure_case(case, workers, ps, pairs.get(key, []), journal.append,
                                        lambda text, tag=tag: live.progress(f"{tag} {text}"), process=r, stop=stop,
                                        probe_memory=r == len(bounds) - 1)
            done = r == len(bounds) - 1 or ab_pairs.block_failed(rec)
            if len(bounds) > 1:
                journal.append({**rec, "type": "block"})
                _, records, pairs, blocks = journal.read_all()
            if done:
                journal.append(ab_pairs.merge_blocks([blocks[(key, b)] for b in range(r + 1) if (key, b) in blocks]
                                                     if len(bounds) > 1 else [rec]))
            _, records, pairs, blocks = journal.read_all()
            if done:
                live.done(f"{round_tag}" + case_line(n, len(common), records[key], pairs.get(key, []), s))
            else:
                live.done(f"{tag} {key}: " + block_line(pairs.get(key, []), r))
    order = {f"{c['suite']}/{c['id']}": i for i, c in enumerate(common)}
    records = dict(sorted(records.items(), key=lambda kv: order.get(kv[0], len(order))))
    priorities = {n: getattr(workers[n], "applied", None) for n in SIDES}
    return assemble(header, environments, case_lists, records, pairs, ab_pairs.now(), priorities)


def _start(header: dict, workers: dict) -> tuple[dict, dict]:
    """Each side's environment record and collected cases (a restarted worker collects again by itself)."""
    environments = {}
    for name in SIDES:  # both workers start (import torch, ...) at the same time
        workers[name].send({"op": "env"})
    for name in SIDES:
        reply = workers[name].receive(header["pair_settings"]["reply_timeout_s"])
        if not reply.get("ok"):
            raise BadInput(f"side {name}'s worker could not describe its environment: {reply.get('error')}")
        environments[name] = reply["env"]
    case_lists = {}
    for name in SIDES:
        reply = workers[name].request({"op": "collect", "benchmarks": header["benchmarks"]},
                                      header["pair_settings"]["reply_timeout_s"])
        if not reply.get("ok"):
            raise BadInput(f"side {name} could not collect {' '.join(header['benchmarks'])}: {reply.get('error')}")
        case_lists[name] = reply["cases"]
        if hasattr(workers[name], "setup"):  # a restarted worker collects again before its next case
            workers[name].setup = [{"op": "collect", "benchmarks": header["benchmarks"]}]
    return environments, case_lists


def _check_same_environments(journal: PairJournal, environments: dict) -> None:
    header, _, _ = journal.read()
    before = (header or {}).get("environments") or {}
    for name in SIDES:
        old, new = (before.get(name) or {}).get("packages"), (environments.get(name) or {}).get("packages")
        if old is not None and old != new:
            raise BadInput(f"side {name}'s packages changed since the journal was started ({old} -> {new}): "
                           "resuming would mix two environments in one side's pairs; start a new run")


def main(args: argparse.Namespace) -> int:
    try:
        return _main(args)
    except BadInput as exc:
        print(f"effbench ab: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    if not 0.0 < args.alpha < 1.0:
        raise BadInput("--alpha must be between 0 and 1")
    repo = Path.cwd()
    if args.resume:
        output = Path(args.resume)
        journal = PairJournal(output.with_suffix(".jsonl"))
        if not journal.exists():
            raise BadInput(f"{journal.path} holds no ab journal to resume")
        header, _, _ = journal.read()
        if header is None or header.get("kind") != "ab":
            raise BadInput(f"{journal.path} is not the journal of an effbench ab run")
        sides = {n: ab_sides.Side(n, header["sides"][n]["spec"], header["sides"][n]["python"], header["sides"][n]["tree"],
                                  header["sides"][n]["ref"], header["sides"][n]["env"]) for n in SIDES}
        fresh = False
    else:
        if not args.a or not args.b:
            raise BadInput("give both sides: --a SIDE --b SIDE (a venv's bin/python or a git ref), or --resume RUN.json")
        if args.pairs < 1 or args.sample_time <= 0:
            raise BadInput("--pairs must be at least 1 and --sample-time positive")
        if args.processes < 1 or (args.processes > 1 and args.pairs < 2 * args.processes):
            raise BadInput(f"--processes must be at least 1, with at least 2 pairs per process pair: "
                           f"--pairs {args.pairs} --processes {args.processes} gives fewer; raise --pairs or lower --processes")
        ab_sides.check_priority(args.priority, ab_sides.parse_cpus(args.cpus))
        sides = {"A": ab_sides.resolve("A", args.a, ab_sides.parse_env(args.a_env, "--a-env"), repo),
                 "B": ab_sides.resolve("B", args.b, ab_sides.parse_env(args.b_env, "--b-env"), repo)}
        header = _header_from_args(args, sides)
        output = Path(args.output) if args.output else _default_output(args.results_dir, args.device)
        journal = PairJournal(output.with_suffix(".jsonl"))
        if journal.exists():
            raise BadInput(f"{journal.path} already holds an ab run: continue it with --resume {output}, "
                           "or choose another --output")
        fresh = True
    with contextlib.ExitStack() as stack:
        ready = {n: stack.enter_context(ab_sides.checked_out(side, repo)) for n, side in sides.items()}
        output.parent.mkdir(parents=True, exist_ok=True)
        workers = {n: ab_sides.WorkerProcess(ready[n], header["profile"], header["device"],
                                             stderr_path=str(output.with_name(f"{output.stem}-{n.lower()}.log")),
                                             cpus=header.get("cpus"), priority=header.get("priority", "normal"))
                   for n in SIDES}
        stack.callback(lambda: [w.quit() for w in workers.values()])
        result = run(header, workers, journal, Live(), fresh)
    output.write_text(json.dumps(result, indent=1, allow_nan=True, default=str) + "\n", encoding="utf-8")
    markdown = to_markdown(result)
    output.with_suffix(".md").write_text(markdown, encoding="utf-8")
    sys.stdout.write(markdown)
    print(f"ab: {output} (Markdown {output.with_suffix('.md')}, journal {journal.path})", file=sys.stderr)
    if result["regression"]:
        return 1
    judged = result["summary"]["time"]
    if sum(judged.values()) and judged["inconclusive"] == sum(judged.values()):
        print("effbench ab: no case could be judged (too few pairs for the significance level): raise --pairs",
              file=sys.stderr)
        return 2
    return 0
