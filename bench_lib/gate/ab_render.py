"""Markdown of an ab result (:func:`bench_lib.gate.ab.assemble`): what differed, then one row per case.

No arithmetic beyond formatting: every number comes from the result document.
"""

from __future__ import annotations


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{(ratio - 1.0) * 100:+.1f}%"


def _p(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.3g} s" if seconds >= 1.0 else f"{seconds * 1e3:.3g} ms"


def _escape(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _side(name: str, side: dict) -> str:
    env = side.get("environment") or {}
    packages = env.get("packages") or {}
    versions = ", ".join(f"{k} {packages[k]}" for k in ("torch", "transformers", "bitsandbytes", "flash-attn")
                         if packages.get(k))
    what = f"git ref `{side['ref']}`" if side.get("ref") else f"interpreter `{side['python']}`"
    extra = "".join(f", `{k}={v}`" for k, v in sorted((side.get("env") or {}).items()))
    return f"- **{name}**: {what}{extra} ({versions or 'versions unknown'})"


def _load(load: dict | None) -> list[str]:
    if not load or not load.get("start"):
        return []
    end = load.get("end") or [None]
    return [f"Machine load (1-minute average) {load['start'][0]:g} at the start and "
            f"{end[0] if end[0] is not None else '?'} at the end, on {load.get('cores')} cores.", ""]


def _priority(priority: dict | None) -> list[str]:
    """The workers' scheduling, as asked and as each worker got it (a refused raise is said, not hidden)."""
    if not priority:
        return []
    applied = priority.get("applied") or {}
    got = ", ".join(f"{n}: {v or 'unknown'}" for n, v in sorted(applied.items())) or "not recorded"
    line = f"Worker priority {priority.get('requested')} (as applied: {got})."
    wanted = {"high": "nice -20", "realtime": "SCHED_FIFO"}.get(priority.get("requested"))
    if wanted and any(not (v or "").startswith(wanted) for v in applied.values()):
        line += (f" Not every worker got {wanted}: raising a process's priority needs root or CAP_SYS_NICE, and "
                 "without it the machine's other work preempts the timed calls (wider intervals, less power).")
    return [line, ""]


def to_markdown(result: dict) -> str:
    s, ps, summary = result["settings"], result["pair_settings"], result["summary"]
    lines = [
        "# effbench ab: B against A, interleaved on one machine",
        "",
        _side("A", result["sides"]["A"]),
        _side("B", result["sides"]["B"]),
        "",
        f"Profile `{result['profile']}`, device `{result['device']}`, "
        f"{'both workers on cores ' + ','.join(map(str, result['cpus'])) if result.get('cpus') else 'cores unpinned'}, "
        f"{ps['pairs']} pairs per case"
        f"{', taken by ' + str(ps['processes']) + ' fresh pairs of worker processes' if ps.get('processes', 1) > 1 else ''} "
        f"(order of each pair drawn from seed {ps['seed']}), samples of about {ps['sample_time_s']:g} s "
        f"(each the fastest of at least {ps.get('min_rounds_per_sample', 1)} calls); "
        f"threshold {s['threshold'] * 100:g}%, alpha {s['alpha']:g} (Holm over the cases judged).",
        "",
        *_load(result.get("load_average")),
        *_priority(result.get("priority")),
        "## What differed",
        "",
    ]
    lines += [f"- {_escape(d)}" for d in result["differences"]] or ["- nothing recorded: an A/A run"]
    t = summary["time"]
    lines += [
        "",
        f"**{'REGRESSION' if result['regression'] else 'no regression'}**: {t['slower']} slower, {t['faster']} faster, "
        f"{t['same']} same, {t['inconclusive']} inconclusive; {summary['memory_regressions']} memory and "
        f"{summary['outcome_regressions']} outcome regressions over {summary['cases']} cases.",
        "",
        "## Time (median of the paired ratios B/A" + (", over the process pairs' medians" if ps.get("processes", 1) > 1
                                                        else "") + "; the interval is over pairs)",
        "",
        "| case | verdict | B/A | interval | pairs | per process pair | p (Holm) | p beyond threshold (Holm) | A median "
        "| B median | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in result["cases"]:
        c = case.get("time")
        if c is None:
            continue
        ci = "-" if c["ci"] is None else f"{_pct(c['ci'][0])} .. {_pct(c['ci'][1])}"
        a, b = _time(c["a_median_s"]), _time(c["b_median_s"])
        per = ", ".join(_pct(r) for r in c.get("process_ratios") or []) or "-"
        lines.append(f"| {_escape(c['case'])} | {c['verdict']} | {_pct(c['ratio'])} | {ci} | {c['pairs']} | {per} | "
                     f"{_p(c['p_holm'])} | {_p(c['p_beyond_holm'])} | {a} | {b} | {_escape(c['note'])} |")
    changed = [m for m in result["memory"] if m["regression"] or m["improvement"]]
    lines += ["", "## Memory", ""]
    if changed:
        lines += ["| case | view | A | B | change | verdict |", "|---|---|---|---|---|---|"]
        for m in changed:
            lines.append(f"| {_escape(m['case'])} | {m['view']} | {m['base_bytes'] / 2**20:.1f} MiB | "
                         f"{m['cand_bytes'] / 2**20:.1f} MiB | {_pct(m['ratio'])} | "
                         f"{'regression' if m['regression'] else 'improvement'} |")
    else:
        lines.append(f"No peak memory view moved beyond {s['memory_threshold'] * 100:g}% "
                     f"({len(result['memory'])} views compared).")
    lines += ["", "## Outcomes", ""]
    if result["outcomes"]:
        lines += ["| case | A | B | kind | reason |", "|---|---|---|---|---|"]
        lines += [f"| {_escape(o['case'])} | {o['a']} | {o['b']} | {o['kind']} | {_escape(o['reason'] or '')[:160]} |"
                  for o in result["outcomes"]]
    else:
        lines.append("Every case ended the same way on both sides.")
    not_both = [c for c in result["cases"] if c.get("time") is None and c["outcome"].get("A") == c["outcome"].get("B")]
    if not_both:
        lines += ["", f"Not timed on either side ({len(not_both)}): "
                  + ", ".join(f"{_escape(c['key'])} ({c['outcome'].get('A')})" for c in not_both)]
    for label, keys in (("Only on A", result["missing"]), ("Only on B", result["new"])):
        if keys:
            lines += ["", f"{label}: " + ", ".join(_escape(k) for k in keys)]
    return "\n".join(lines) + "\n"
