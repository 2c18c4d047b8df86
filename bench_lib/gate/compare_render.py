"""Markdown for ``effbench compare``: regressions first, then improvements, then every compared case.

Formatting only; every number was decided in :mod:`bench_lib.gate.compare`. Units are scaled here and labelled
(ms/us, MiB/GiB). This Markdown goes into PR comments and job summaries, so everything that comes from a
file (ids, outcomes, reasons, views, notes, machine differences) passes :func:`_esc` or :func:`_code`: no
raw HTML, link, image or code span from a file reaches the reader.
"""

from __future__ import annotations

from pathlib import Path

from bench_lib.harness.units import format_bytes

TIME_ORDER = {"slower": 0, "not-reproduced": 1, "faster": 2, "inconclusive": 3, "same": 4}


# "<" (which opens every tag and autolink) and "&" as entities; Markdown's punctuation (links, images,
# emphasis, code, tables) backslashed. A lone ">" opens nothing inside a line, so "a -> b" stays as written.
_ENTITIES = {"&": "&amp;", "<": "&lt;"}
_BACKSLASHED = set("\\`*_[]!|")


def _esc(text) -> str:
    """Plain text from a file, inert in GitHub-flavoured Markdown: shown as written, never as markup."""
    out = []
    for ch in str(text):
        if ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in _BACKSLASHED:
            out.append("\\" + ch)
        elif ch in "\r\n\t":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _code(text) -> str:
    """A case id as a code span that its own backticks cannot close (CommonMark: a fence longer than any run of
    backticks inside); HTML in a code span is shown as text. ``|`` is escaped for the table around it."""
    text = str(text).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    runs = [len(r) for r in "".join(c if c == "`" else " " for c in text).split()]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def fmt_seconds(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(s) >= scale:
            return f"{s / scale:.4g} {unit}"
    return f"{s / 1e-9:.4g} ns"


def fmt_change(ratio: float | None) -> str:
    return "-" if ratio is None else f"{(ratio - 1.0) * 100.0:+.1f}%"


def fmt_ci(ci) -> str:
    return f"[{fmt_change(ci[0])}, {fmt_change(ci[1])}]" if ci else "-"


def fmt_p(p) -> str:
    return "-" if p is None else f"{p:.2g}"


def _time_row(t) -> str:
    return (f"| {t.verdict} | {_code(t.case)} | {fmt_seconds(t.base_median_s)} | {fmt_seconds(t.cand_median_s)} "
            f"| {fmt_change(t.ratio)} {fmt_ci(t.ci)} | {fmt_p(t.p_value)} | {t.threshold * 100:.1f}% "
            f"| {t.n_base}/{t.n_cand} | {_esc(t.note)} |")


def _memory_row(m) -> str:
    return (f"| {_code(m.case)} | {_esc(m.view)} | {format_bytes(m.base_bytes)} | {format_bytes(m.cand_bytes)} "
            f"| {fmt_change(m.ratio)} | {_esc(m.note)} |")


TIME_HEADER = ("| verdict | case | baseline median | candidate median | change [CI] | p | threshold | rounds | note |\n"
               "|---|---|---|---|---|---|---|---|---|")
MEMORY_HEADER = "| case | view | baseline | candidate | change | note |\n|---|---|---|---|---|---|"
OUTCOME_HEADER = "| case | baseline | candidate | kind | reason |\n|---|---|---|---|---|"


def _outcome_row(o) -> str:
    return f"| {_code(o.case)} | {_esc(o.base)} | {_esc(o.cand)} | {o.kind} | {_esc(o.reason or '')} |"


def _drift_lines(result) -> list[str]:
    """What the baseline is made of, and the resolution that follows from it."""
    model, n = result.drift, len(result.baseline_runs)
    resolution = result.resolution()
    seen = "" if resolution is None else (
        f" The median case's threshold is {resolution * 100:.1f}%: slowdowns smaller than that are not seen "
        "for a typical case on this machine.")
    if model is None:
        return ["", f"Baseline: 1 run; run-to-run drift not measured (give several baseline runs to measure it).{seen}"]
    return ["", f"Baseline: {n} runs of the same code, samples pooled; each case's threshold also covers its "
                f"run-to-run drift (sd of its log median over the runs, shrunk towards the machine's "
                f"{model.pooled_sd * 100:.1f}%, one-sided prediction bound at alpha {result.settings.alpha:g} "
                f"shared by {len(model.cases)} cases).{seen}"]


def to_markdown(result) -> str:
    """The whole report as GitHub-flavoured Markdown (fits $GITHUB_STEP_SUMMARY)."""
    s = result.settings
    regressions = result.regressions()
    time_slow = [t for t in result.time if t.regression]
    mem_up = [m for m in result.memory if m.regression]
    out_bad = [o for o in result.outcomes if o.kind == "regression"]
    counts = {v: sum(t.verdict == v for t in result.time) for v in TIME_ORDER}
    lines = [
        f"## effbench compare: {_code(Path(result.base).name)} -> {_code(Path(result.candidate).name)}",
        "",
        f"**{'REGRESSION' if regressions else 'OK' if result.time_judged else 'NOT JUDGED'}: "
        f"{len(regressions)} regression(s)** "
        f"(time {len(time_slow)}, memory {len(mem_up)}, outcome {len(out_bad)}). "
        f"Time: {counts['slower']} slower, {counts['faster']} faster, {counts['same']} same, "
        f"{counts['inconclusive']} inconclusive"
        + (f", {counts['not-reproduced']} slower but not reproduced in the rerun" if result.confirm else "")
        + f"; {len(result.new)} new, {len(result.missing)} missing cases.",
        "",
        f"Rules: a case is slower when the Mann-Whitney p < {s.alpha:g}, the median ratio exceeds its threshold "
        f"= max({s.threshold * 100:g}%, {s.noise_multiple:g} x baseline IQR/median), and the candidate is still "
        f"significantly slower when divided by {1 + s.threshold:g}. Intervals: {(1 - s.alpha) * 100:g}% bootstrap "
        f"of the ratio of medians. Memory: a peak view up more than {s.memory_threshold * 100:g}% and "
        f"{format_bytes(s.memory_floor_bytes)} (process RSS: 20% and 64 MiB, it carries the allocator's history).",
    ]
    lines += _drift_lines(result)
    if result.confirm:
        lines += ["", f"Confirmation: time and memory regressions had to reproduce in the rerun "
                      f"{_code(Path(result.confirm).name)} (same baseline, same rules); outcome regressions count "
                      "without it."]
    st = result.stability
    if not result.time_judged:
        lines += ["", f"**Times not judged: the machine was not steady.** The middle half of the cases' time ratios "
                      f"spread over {st.spread * 100:.0f}% (limit {st.limit * 100:.0f}% for a {s.threshold * 100:g}% "
                      "threshold): load from other jobs, throttling or clock changes between or during the runs "
                      "(or a change that moved many cases by different amounts). One baseline run cannot say how "
                      "far this machine drifts: give several baseline runs of the same code (each case's drift "
                      "then sets its threshold), rerun on a quiet machine, or `--allow-unstable` to judge anyway. "
                      "Memory and outcomes are still judged."]
    elif st is not None and st.median_ratio is not None and abs(st.median_ratio - 1.0) > s.threshold:
        lines += ["", f"Note: the median case moved {fmt_change(st.median_ratio)}. When most cases move together the "
                      "machine (load, clocks, thermals) or a shared dependency is the first suspect."]
    packages = [d for d in result.machine_differences if "package " in d]
    machine = [d for d in result.machine_differences if d not in packages]
    if machine:
        lines += ["", "Machine and software differences:", ""] + [f"- {_esc(d)}" for d in machine]
    if packages:  # a new library version is the first suspect when many cases move together
        lines += ["", "Package versions (baseline -> candidate):", ""] + [f"- {_esc(d)}" for d in packages]
    if regressions:
        lines += ["", "### Regressions"]
        if time_slow:
            lines += ["", TIME_HEADER] + [_time_row(t) for t in sorted(time_slow, key=lambda t: -t.ratio)]
        if mem_up:
            lines += ["", MEMORY_HEADER] + [_memory_row(m) for m in sorted(mem_up, key=lambda m: -m.ratio)]
        if out_bad:
            lines += ["", OUTCOME_HEADER] + [_outcome_row(o) for o in out_bad]
    gone_time = [t for t in result.time if t.verdict == "not-reproduced"]
    gone_mem = [m for m in result.memory if m.not_reproduced]
    if gone_time or gone_mem:
        lines += ["", f"### Not reproduced in the rerun {_code(Path(result.confirm).name)} (not counted)"]
        if gone_time:
            lines += ["", TIME_HEADER] + [_time_row(t) for t in gone_time]
        if gone_mem:
            lines += ["", MEMORY_HEADER] + [_memory_row(m) for m in gone_mem]
    faster = [t for t in result.time if t.verdict == "faster"]
    mem_down = [m for m in result.memory if m.improvement]
    out_good = [o for o in result.outcomes if o.kind == "improvement"]
    if faster or mem_down or out_good:
        lines += ["", "### Improvements"]
        if faster:
            lines += ["", TIME_HEADER] + [_time_row(t) for t in sorted(faster, key=lambda t: t.ratio)]
        if mem_down:
            lines += ["", MEMORY_HEADER] + [_memory_row(m) for m in sorted(mem_down, key=lambda m: m.ratio)]
        if out_good:
            lines += ["", OUTCOME_HEADER] + [_outcome_row(o) for o in out_good]
    other = [o for o in result.outcomes if o.kind not in ("regression", "improvement")]
    if other:
        lines += ["", "### Other outcome changes", "", OUTCOME_HEADER] + [_outcome_row(o) for o in other]
    if result.new or result.missing:
        lines += ["", "### Cases new or missing", ""]
        lines += [f"- new: {_code(k)}" for k in result.new] + [f"- missing: {_code(k)}" for k in result.missing]
    if result.time:
        rows = sorted(result.time, key=lambda t: (TIME_ORDER[t.verdict], -abs((t.ratio or 1.0) - 1.0)))
        lines += ["", "### Time, every case in both runs", "", TIME_HEADER] + [_time_row(t) for t in rows]
    return "\n".join(lines) + "\n"
