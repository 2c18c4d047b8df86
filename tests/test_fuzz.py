"""Fuzz (issue 18): ``report``, ``compare``, ``plan`` and ``baseline`` fed mutated copies of real frozen runs.

Mutations, drawn with a fixed seed: wrong types, NaN/Inf, negative and huge numbers (``10**400``), missing
keys, deep nesting, and hostile strings (HTML, Markdown links and images, backticks, spreadsheet formulas,
path traversal) in every string field. Each command runs in-process to completion within a time limit, and:
- exits as documented (report 0/1/2, compare 0/1/2, plan 0/2, baseline 0/2), never with an exception;
- changes nothing outside its output folder (the working folder and the inputs are hashed before and after);
- writes no raw markup that came from a file (report.md, index.html, cases.csv, compare's Markdown).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import random
import re
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench_lib import cli

DATA = Path(__file__).parent / "data"
SEED = 18
TIME_LIMIT_S = 120  # per command; a shared 2-core machine stalls for seconds, a hang is minutes
N_MUTANTS = {"report": 3, "compare": 10, "plan": 10, "baseline": 10}
MUTATIONS_PER_FILE = 6

HOSTILE = [
    "<img src=https://evil.example/x.png><h1>ALL GREEN</h1>",
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "![pixel](https://evil.example/t.png)",
    "a`b``c`",
    "=HYPERLINK(\"https://evil.example\")",
    "+cmd|' /C calc'!A0",
    "@SUM(1)",
    "\t=1",
    "../../victim",
    "/etc/passwd",
    "line\nbreak\r| pipe |",
]
DEEP = "__deep__"  # replaced in the serialized text by a nesting no recursive parser survives
WRONG_TYPES = ["text", [], {}, True, None, 7, [1, "a"], {"k": [None]}]


class Timeout(Exception):
    pass


@contextmanager
def time_limit(seconds: int):
    def fire(signum, frame):
        raise Timeout(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _paths(node, prefix=()):
    """Every (path, value) in a JSON tree, containers included."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _set(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _delete(doc, path):
    node = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


def mutate(doc: dict, rng: random.Random, n: int) -> tuple[dict, list[str]]:
    """``doc`` with ``n`` random mutations (and sometimes every string hostile); -> (doc, what was done)."""
    doc = copy.deepcopy(doc)
    done = []
    if rng.random() < 0.4:  # hostile strings in every string field (values and some keys)
        payloads = iter(HOSTILE * 100_000)
        for path, value in list(_paths(doc)):
            if isinstance(value, str) and path:
                _set(doc, path, next(payloads))
        done.append("every string hostile")
    # deep nesting stops a file at parsing, hiding the other mutations: one file in six gets it
    kinds = ["type", "nan", "negative", "huge", "missing", "hostile"] + (["deep"] if rng.random() < 1 / 6 else [])
    for _ in range(n):
        paths = [p for p, _ in _paths(doc) if p]
        path = rng.choice(paths)
        value = _get(doc, path)
        kind = rng.choice(kinds)
        if kind == "type":
            _set(doc, path, copy.deepcopy(rng.choice(WRONG_TYPES)))
        elif kind == "nan":
            _set(doc, path, rng.choice([float("nan"), float("inf"), float("-inf")]))
        elif kind == "negative":
            _set(doc, path, -abs(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value
                 else -9e9)
        elif kind == "huge":
            _set(doc, path, rng.choice([10**400, 1e308, 2**63, 10**30]))
        elif kind == "missing":
            _delete(doc, path)
        elif kind == "deep":
            _set(doc, path, DEEP)
        else:
            _set(doc, path, rng.choice(HOSTILE))
        done.append(f"{kind} at {'/'.join(map(str, path))[:80]}")
    return doc, done


def _get(doc, path):
    node = doc
    for key in path:
        node = node[key]
    return node


def serialize(doc) -> str:
    text = json.dumps(doc, allow_nan=True)  # NaN and Infinity, as Python's json writes and reads them
    return text.replace(json.dumps(DEEP), "[" * 100_000 + "]" * 100_000)


def tree_state(root: Path, skip: Path) -> dict[str, str]:
    """Every file and folder under ``root`` except ``skip``, with a hash of each file's bytes."""
    state = {}
    for p in sorted(root.rglob("*")):
        if p == skip or skip in p.parents:
            continue
        state[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return state


def raw_markup(markdown: str) -> list[str]:
    """HTML tags, links and images a Markdown renderer would make (escapes, code spans and our figures aside)."""
    text = re.sub(r"\\.", "", markdown)
    text = re.sub(r"(`+)(.+?)\1", "", text, flags=re.S)
    found = re.findall(r"<[a-zA-Z/!][^>]*>|!?\[[^\]]*\]\([^)]*\)", text)
    return [f for f in found if not re.fullmatch(r"!\[[^\]]*\]\(figures/[a-z0-9_]+\.png\)", f)]


def formula_cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    return [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r")) and not _is_number(c)]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _check_report(out: Path) -> list[str]:
    problems = []
    if (out / "report.md").exists():
        problems += [f"report.md: {m}" for m in raw_markup((out / "report.md").read_text(encoding="utf-8"))]
    if (out / "index.html").exists():
        page = (out / "index.html").read_text(encoding="utf-8")
        problems += [f"index.html: {t}" for t in ("<h1>ALL GREEN", "<script>alert", "<img src=https://evil")
                     if t in page]
    if (out / "cases.csv").exists():
        problems += [f"cases.csv: {c[:40]!r}" for c in formula_cells(out / "cases.csv")]
    return problems


def _cases(run_name: str, base: dict, command: str, rng: random.Random, tmp: Path, i: int, text: str):
    """(argv, allowed exit codes, output folder, extra check) for one mutant ``text`` of ``base``."""
    src = tmp / "inputs" / f"{command}-{i}.json"
    src.write_text(text, encoding="utf-8")
    out = tmp / "out" / f"{command}-{i}"
    if command == "report":
        return ["report", str(src), str(DATA / "report" / "smoke-precision.json"), "-o", str(out)], {0, 1, 2}, out
    if command == "compare":
        pair = [str(DATA / "compare" / run_name), str(src)]
        rng.shuffle(pair)
        out.mkdir(parents=True)
        return ["compare", *pair, "-o", str(out / "compare.md"), "--allow-unstable"], {0, 1, 2}, out
    if command == "plan":
        flag = rng.choice(["--calibrate", "--model"])
        argv = ["plan", "--method", "lora", "--format", "json"]
        argv += ["--model", "llama-7m", "--calibrate", str(src)] if flag == "--calibrate" else ["--model", str(src)]
        out.mkdir(parents=True)
        return argv, {0, 2}, out
    return ["baseline", "promote", str(src), "--dir", str(out / "baselines"), "--force"], {0, 2}, out


PRESET_CONFIG = {"model_type": "llama", "hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8,
                 "num_key_value_heads": 8, "intermediate_size": 1376, "vocab_size": 32000,
                 "max_position_embeddings": 2048, "tie_word_embeddings": False, "name": "fuzz"}


@pytest.mark.slow
def test_fuzz_report_compare_plan_baseline(tmp_path, monkeypatch, capsys):
    rng = random.Random(SEED)
    work = tmp_path / "work"  # the working folder: baseline's default results/, report's reports/
    (work / "inputs").mkdir(parents=True)
    (work / "out").mkdir()
    monkeypatch.chdir(work)
    bases = {"report": "smoke-finetune.json", "compare": "cpu-smoke-cal-attn.json", "plan": "smoke-finetune.json",
             "baseline": "smoke-finetune.json"}
    data_before = tree_state(DATA, DATA / "nonexistent")
    findings, tried = [], 0
    for command, n in N_MUTANTS.items():
        folder = "compare" if command == "compare" else "report"
        base = json.loads((DATA / folder / bases[command]).read_text())
        for i in range(n):
            use_config = command == "plan" and i % 2
            doc, done = mutate(PRESET_CONFIG if use_config else base, rng, MUTATIONS_PER_FILE)
            argv, allowed, out = _cases(bases[command], base, command, rng, work, i, serialize(doc))
            if use_config:
                argv = ["plan", "--method", "lora", "--format", "json", "--model", str(work / "inputs" / f"plan-{i}.json")]
            before = tree_state(work, out)
            tried += 1
            try:
                with time_limit(TIME_LIMIT_S):
                    rc = cli.main(argv)
            except Exception as exc:  # a traceback is a finding
                findings.append(f"{argv[0]} #{i} ({'; '.join(done)}): {type(exc).__name__}: {str(exc)[:200]}")
                continue
            finally:
                captured = capsys.readouterr()
            if rc not in allowed:
                findings.append(f"{argv[0]} #{i} ({'; '.join(done)}): exit {rc} not in {sorted(allowed)}: "
                                f"{captured.err[-300:]}")
            if tree_state(work, out) != before:
                findings.append(f"{argv[0]} #{i} ({'; '.join(done)}): changed files outside its output folder")
            problems = _check_report(out)
            if command == "compare" and (out / "compare.md").exists():
                problems += [f"compare.md: {m}" for m in raw_markup((out / "compare.md").read_text(encoding="utf-8"))]
            findings += [f"{argv[0]} #{i} ({'; '.join(done)}): raw markup from a file: {p}" for p in problems[:3]]
    assert tree_state(DATA, DATA / "nonexistent") == data_before  # the frozen inputs are untouched
    print(f"fuzz: {tried} mutants (seed {SEED}, {MUTATIONS_PER_FILE} mutations each), {len(findings)} findings")
    assert tried == sum(N_MUTANTS.values())
    assert findings == [], "\n".join(findings)


def test_mutations_cover_every_kind_and_deep_nesting_survives_serialization():
    rng = random.Random(SEED)
    doc = {"a": [1, 2.5, "x", {"b": None}], "c": {"d": "e"}}
    kinds = set()
    for _ in range(200):
        _, done = mutate(doc, rng, 3)
        kinds |= {d.split(" ")[0] for d in done}
    assert kinds >= {"type", "nan", "negative", "huge", "missing", "deep", "hostile", "every"}
    text = serialize({"x": DEEP})
    assert text.startswith('{"x": [[[[') and text.count("[") == 100_000
