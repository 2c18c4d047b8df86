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
    assert {c["outcome"] for c in cases} == {"ok"}, "the killed case is run again, not crashed"
    assert done.returncode == 0, done.stdout + done.stderr
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


RESUME = Path(__file__).parents[1] / "data" / "fake_suites" / "bench_resume.py"
RESUME_IDS = ["calibration/matmul_fp32"] + [f"resume/case{i}" for i in range(6)]


def run_resume_suite(*args, timeout=300, **kw):
    cmd = [sys.executable, "-m", "bench_lib", "run", "--benchmarks", str(RESUME), "--no-report", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EFFBENCH_TEST_SLEEP_S": "0.3"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, **kw)


def metric_keys(run_json):
    cases = json.loads(run_json.read_text())["effbench"]["cases"]
    return {f"{c['suite']}/{c['id']}": sorted(c["metrics"]) for c in cases}


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    out = tmp_path_factory.mktemp("unbroken") / "run.json"
    done = run_resume_suite("--profile", "smoke", "--output", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return metric_keys(out)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_killed_at_a_random_case_then_resumed_is_whole(tmp_path, unbroken, sig):
    """The acceptance check: a signal to the whole process group mid-case, then --resume: every case exactly
    once, none crashed, exit 0, and the metric keys of an unbroken run (the calibration ceilings came back)."""
    import random

    assert "frac_of_measured_peak" in unbroken["resume/case3"]
    after = random.Random().randint(1, len(RESUME_IDS) - 1)  # finished cases before the kill
    out = tmp_path / "run.json"
    cmd = [sys.executable, "-m", "bench_lib", "run", "--benchmarks", str(RESUME), "--no-report", "--profile", "smoke",
           "--output", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EFFBENCH_TEST_SLEEP_S": "0.3"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    journal = out.with_suffix(".jsonl")
    deadline = time.time() + 240
    while time.time() < deadline and not (journal.exists() and len(journal_cases(journal)) >= after):
        time.sleep(0.02)
    time.sleep(0.1)  # into the next case
    os.killpg(proc.pid, sig)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 130), stdout
    time.sleep(0.5)
    done = run_resume_suite("--resume", str(out))
    assert done.returncode == 0, f"killed after {after} cases\n{stdout}\n{done.stdout}\n{done.stderr}"
    cases = json.loads(out.read_text())["effbench"]["cases"]
    ids = [f"{c['suite']}/{c['id']}" for c in cases]
    assert sorted(ids) == sorted(RESUME_IDS), "every case exactly once"
    assert {c["outcome"] for c in cases} == {"ok"}, "none crashed"
    assert metric_keys(out) == unbroken


def make_journal(path, header=None, lines=()):
    head = {"type": "header", "schema_version": 1, "profile": "smoke", "device": "cpu", "started_at": "t",
            "machine_info": {}, **(header or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in [head, *lines]))


def test_a_second_run_on_the_same_output_refuses(tmp_path):
    """The old code read the first run's marker as its own crash and both measured into one journal."""
    out = tmp_path / "run.json"
    cmd, env = effbench("--profile", "smoke", "--output", str(out), env={"EFFBENCH_TEST_SLEEP_S": "1"})
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        journal = out.with_suffix(".jsonl")
        deadline = time.time() + 120
        while time.time() < deadline and not (journal.exists() and journal_cases(journal)):
            time.sleep(0.05)
        cmd, env = effbench("--resume", str(out))
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "another effbench run is writing" in second.stderr, second.stderr
    finally:
        first.kill()
        first.wait()
    assert all(c["outcome"] == "ok" for c in journal_cases(journal))


def test_pytest_refusing_an_argument_shows_pytests_message(tmp_path):
    """The old code died with a FileNotFoundError traceback; pytest's message was only in run.log."""
    out = tmp_path / "run.json"
    cmd, env = effbench("--profile", "smoke", "--output", str(out), "--", "--bogus-flag")
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unrecognized arguments: --bogus-flag" in done.stderr and "Traceback" not in done.stdout + done.stderr


@pytest.mark.slow
def test_a_full_disk_stops_clearly_and_resume_completes(tmp_path):
    """The issue's probe: a 40 KiB tmpfs as the output folder. The old code: an ENOSPC traceback, a torn
    journal, and a resume that failed after space was freed."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); test_journal's fake writer covers ENOSPC")
    try:
        (mnt / "filler").write_bytes(b"\0" * 22000)  # leaves room for the header and a few cases
        out = mnt / "run.json"
        cmd, env = effbench("--profile", "smoke", "--output", str(out))
        full = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert full.returncode == 1, full.stdout + full.stderr
        assert f"free space and run --resume {out}" in full.stdout and "disk full" in full.stdout
        assert "Traceback" not in full.stdout + full.stderr
        before = journal_cases(out.with_suffix(".jsonl"))  # every line whole
        print(f"disk full after {len(before)} of {len(ALL)} cases: {full.stdout.splitlines()[-1]}")

        subprocess.run(["mount", "-o", "remount,size=4m", str(mnt)], check=True)  # space again
        cmd, env = effbench("--resume", str(out))
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        cases = json.loads(out.read_text())["effbench"]["cases"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    assert sorted(c["id"] for c in cases) == ALL and {c["outcome"] for c in cases} == {"ok"}
    kept = {c["id"]: c["finished_at"] for c in cases}
    assert all(kept[c["id"]] == c["finished_at"] for c in before), "nothing measured before the full disk is lost"


def test_resume_reloads_the_calibration_ceilings(tmp_path):
    """The old code forgot them: every case after a resume lacked frac_of_measured_peak."""
    j = tmp_path / "run.jsonl"
    base = [sys.executable, "-m", "pytest", str(RESUME), "--profile=smoke", f"--effbench-journal={j}", "-q",
            "-p", "no:cacheprovider"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run(base + ["-k", "calibration"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert [c["suite"] for c in journal_cases(j)] == ["calibration"], first.stdout
    rest = subprocess.run(base + ["--effbench-resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    cases = journal_cases(j)
    assert len(cases) == len(RESUME_IDS), rest.stdout
    assert all("frac_of_measured_peak" in c["metrics"] for c in cases if c["suite"] == "resume")
