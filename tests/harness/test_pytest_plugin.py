"""The plugin end to end in a child pytest: planted failures become outcomes and nothing is lost."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parents[1] / "data" / "fake_suites"
ROOT = Path(__file__).resolve().parents[2]


def run_pytest(tmp_path, suite, *args):
    shutil.copy(DATA / suite, tmp_path / suite)
    cmd = [sys.executable, "-m", "pytest", str(tmp_path / suite), "-p", "bench_lib.harness.pytest_plugin",
           "-p", "no:cacheprovider", "-q", f"--rootdir={tmp_path}", *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("planted")
    proc = run_pytest(tmp, "bench_planted.py", "--profile=quick", "--effbench-case-timeout=2",
                      f"--benchmark-json={tmp / 'run.json'}")
    return tmp, proc


def test_planted_failures_become_outcomes_and_later_cases_still_run(planted):
    tmp, proc = planted
    assert (tmp / "run.json").exists(), proc.stdout + proc.stderr
    run = json.loads((tmp / "run.json").read_text())
    outcomes = {c["id"]: c["outcome"] for c in run["effbench"]["cases"]}
    assert outcomes == {"first": "ok", "oom": "oom", "oom_in_timing": "oom", "hang": "timeout", "boom": "error",
                        "wrong": "error", "last": "ok"}
    reasons = {c["id"]: c["reason"] for c in run["effbench"]["cases"]}
    assert "planted exception" in reasons["boom"] and "2 s" in reasons["hang"]
    wrong = next(c for c in run["effbench"]["cases"] if c["id"] == "wrong")
    assert wrong["metrics"]["max_rel_error"] == 0.5
    assert proc.returncode == 1  # errors and timeouts fail the pytest run; oom is data (skipped)


def test_run_file_keeps_measured_cases_with_raw_samples(planted):
    tmp, _ = planted
    run = json.loads((tmp / "run.json").read_text())
    names = sorted(b["param"] for b in run["benchmarks"])
    assert names == ["first", "last"]
    for b in run["benchmarks"]:
        assert len(b["stats"]["data"]) == b["stats"]["rounds"] >= 5
        assert b["extra_info"]["outcome"] == "ok" and b["extra_info"]["suite"] == "planted"
        assert b["extra_info"]["metrics"]["time_s"] == pytest.approx(b["stats"]["median"])
        # a ~us call is timed in blocks: pytest-benchmark holds effbench's samples as measured, per call
        assert b["stats"]["iterations"] == b["extra_info"]["metrics"]["calls_per_sample"] > 1
        assert b["stats"]["data"] == b["extra_info"]["samples_s"]
        assert b["options"]["timer"] == b["extra_info"]["metrics"]["timer"] == "perf_counter"
    assert run["machine_info"]["effbench"]["schema_version"] == 1
    assert run["machine_info"]["node"] == run["machine_info"]["effbench"]["machine_slug"]


def test_journal_has_one_line_per_case(planted):
    tmp, _ = planted
    lines = [json.loads(line) for line in (tmp / "run.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "header"
    assert [rec["id"] for rec in lines[1:]] == ["first", "oom", "oom_in_timing", "hang", "boom", "wrong", "last"]
    assert not (tmp / "run.running").exists()


def test_pytest_benchmark_compare_reads_the_file(planted):
    tmp, _ = planted
    proc = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(tmp / "run.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "first" in proc.stdout


def test_unsupported_is_a_skip_with_its_reason(tmp_path):
    (tmp_path / "bench_u.py").write_text(
        "import pytest\nfrom bench_lib.harness.workload import Case, Unsupported\n"
        "def grid(p, d): return [Case('u', 'only', {})]\n"
        "pytestmark = pytest.mark.effbench_suite('u', grid=grid)\n"
        "def test_u(case, measure): measure(lambda c, x: Unsupported('needs a CUDA GPU'), case)\n")
    shutil.copy(tmp_path / "bench_u.py", tmp_path / "bench_u2.py")
    proc = subprocess.run([sys.executable, "-m", "pytest", "bench_u.py", "-p", "bench_lib.harness.pytest_plugin", "-rs", "-q",
                           "-p", "no:cacheprovider", "--benchmark-json=run.json", f"--rootdir={tmp_path}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout
    assert "unsupported: needs a CUDA GPU" in proc.stdout
    run = json.loads((tmp_path / "run.json").read_text())  # a skip never costs the run file
    assert run["effbench"]["cases"][0]["outcome"] == "unsupported"
    assert run["benchmarks"] == []


def test_existing_journal_is_not_overwritten(tmp_path):
    (tmp_path / "run.jsonl").write_text('{"type": "header"}\n')
    proc = run_pytest(tmp_path, "bench_slow.py", "--profile=smoke", f"--effbench-journal={tmp_path / 'run.jsonl'}")
    assert proc.returncode != 0
    assert "already holds a run" in proc.stdout + proc.stderr


def test_run_file_follows_the_contract(planted):
    from bench_lib.harness import schema

    tmp, _ = planted
    assert schema.validate(json.loads((tmp / "run.json").read_text())) == []


def test_schema_catches_a_broken_record():
    from bench_lib.harness import schema

    run = {"machine_info": {}, "benchmarks": [], "effbench": {"schema_version": 1, "cases": [
        {"id": "a", "suite": "s", "case": {}, "outcome": "exploded", "reason": None, "metrics": {}, "memory": {}}]}}
    problems = schema.validate(run)
    assert any("exploded" in p for p in problems) and any("environment record" in p for p in problems)
