"""`effbench run` survives kills, segfaults and native hangs; --resume finishes without repeating cases."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SLOW = Path(__file__).parents[1] / "data" / "fake_suites" / "bench_slow.py"
ROOT = Path(__file__).resolve().parents[2]
ALL = [f"case{i}" for i in range(8)]


def effbench(*args, env=None, **kw):
    cmd = [sys.executable, "-m", "bench_lib", "run", "--benchmarks", str(SLOW), "--no-report", *args]
    return cmd, {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}


def journal_cases(path):
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines[1:] if line.strip()]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path):
    out = tmp_path / "run.json"
    cmd, env = effbench("--profile", "smoke", "--output", str(out))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out.with_suffix(".jsonl")
    deadline = time.time() + 120
    while time.time() < deadline:
        if journal.exists() and len(journal_cases(journal)) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # the child dies with its parent (PDEATHSIG); nothing may be appended after this
    finished = journal_cases(journal)  # every line parses
    assert 3 <= len(finished) < len(ALL)
    assert len(journal_cases(journal)) == len(finished)
    assert not out.exists()

    cmd, env = effbench("--resume", str(out))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.exists(), done.stdout + done.stderr
    cases = json.loads(out.read_text())["effbench"]["cases"]
    ids = [c["id"] for c in cases]
    assert sorted(ids) == ALL, "every case exactly once"
    outcomes = [c["outcome"] for c in cases]
    assert outcomes.count("crashed") <= 1 and set(outcomes) <= {"ok", "crashed"}
    first = {c["id"]: c for c in finished}
    for c in cases:  # finished cases were not re-run
        if c["id"] in first:
            assert c["finished_at"] == first[c["id"]]["finished_at"]


@pytest.mark.slow
def test_segfault_is_crashed_and_native_hang_is_cut_by_the_watchdog(tmp_path):
    out = tmp_path / "run.json"
    cmd, env = effbench("--profile", "smoke", "--output", str(out), "--case-timeout", "5",
                        env={"EFFBENCH_TEST_SEGFAULT": "case2", "EFFBENCH_TEST_NATIVE_HANG": "case5",
                             "EFFBENCH_WATCHDOG_GRACE_S": "2"})
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    cases = json.loads(out.read_text())["effbench"]["cases"]
    outcomes = {c["id"]: c["outcome"] for c in cases}
    assert outcomes == {**dict.fromkeys(ALL, "ok"), "case2": "crashed", "case5": "timeout"}, done.stdout
    assert done.returncode == 1
    assert "crashed" in done.stdout and "timeout" in done.stdout  # live lines


def test_missing_benchmarks_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench_lib", "run", "--benchmarks", str(tmp_path / "nope"),
                           "--output", str(tmp_path / "r.json")], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 2 and "not found" in proc.stderr


@pytest.mark.slow
def test_sigterm_keeps_finished_cases_in_the_run_file(tmp_path):
    """What the GPU check's time budget does: TERM to `effbench run` still writes the run file."""
    out = tmp_path / "run.json"
    cmd, env = effbench("--profile", "smoke", "--output", str(out))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    journal = out.with_suffix(".jsonl")
    deadline = time.time() + 240
    while time.time() < deadline and not (journal.exists() and len(journal_cases(journal)) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout
    cases = json.loads(out.read_text())["effbench"]["cases"]
    assert 2 <= len(cases) < len(ALL) and "--resume" in stdout
