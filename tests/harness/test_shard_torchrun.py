"""A real ``torchrun --standalone --nproc-per-node=2 -m bench_lib run``: one run file, every case once; a rank
SIGKILLed mid-run, then --resume under torchrun, completes it."""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESUME = ROOT / "tests" / "data" / "fake_suites" / "bench_resume.py"
IDS = ["calibration/matmul_fp32"] + [f"resume/case{i}" for i in range(6)]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")]


def torchrun(*args):
    cmd = ["torchrun", "--standalone", "--nproc-per-node=2", "-m", "bench_lib", "run", "--benchmarks", str(RESUME),
           "--no-report", "--profile", "smoke", "--device", "cpu", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EFFBENCH_TEST_SLEEP_S": "0.4"}
    return cmd, env


def ids(run_json):
    return [f"{c['suite']}/{c['id']}" for c in json.loads(run_json.read_text())["effbench"]["cases"]]


def test_two_ranks_give_one_run_with_every_case_once(tmp_path):
    out = tmp_path / "run.json"
    cmd, env = torchrun("--output", str(out))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(ids(out)) == sorted(IDS)
    run = json.loads(out.read_text())
    ranks = {c["shard_rank"] for c in run["effbench"]["cases"]}
    assert ranks == {0, 1}
    assert [r["rank"] for r in run["effbench"]["shard"]["ranks"]] == [0, 1]


def rank_pid(parent: int, rank: str) -> int | None:
    """The process torchrun started for ``rank`` (its RANK variable), among ``parent``'s children."""
    for task in Path(f"/proc/{parent}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env:
                return int(child)
    return None


def test_sigkill_of_one_rank_then_resume_under_torchrun(tmp_path):
    out = tmp_path / "run.json"
    cmd, env = torchrun("--output", str(out))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    journal = tmp_path / "run.rank1.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (journal.exists() and len(journal.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    pid = rank_pid(proc.pid, "1")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, stdout
    assert not out.exists()
    cmd, env = torchrun("--resume", str(out))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, stdout + done.stdout + done.stderr
    got = ids(out)
    assert sorted(got) == sorted(IDS), "every case exactly once"
    assert {c["outcome"] for c in json.loads(out.read_text())["effbench"]["cases"]} == {"ok"}
