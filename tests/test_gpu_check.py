"""scripts/gpu_check.sh, exercised on CPU (device and suite overridden): one budget for the whole script, every
planned case in the run file even when the budget cuts the run, reruns and relative folders that work."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
SLOW = "tests/data/fake_suites/bench_slow.py"
BUDGET = "tests/data/fake_suites/bench_budget.py"  # suites alpha and beta, four cases each


def gpu_check(out, cwd=ROOT, suite=SLOW, tmpdir=None, **settings):
    env = {**os.environ, "EFFBENCH_GPU_CHECK_DEVICE": "cpu", "EFFBENCH_GPU_CHECK_PROFILE": "smoke",
           "EFFBENCH_GPU_CHECK_ARGS": f"--benchmarks {suite}"}
    env.update({f"EFFBENCH_{k.upper()}": str(v) for k, v in settings.items()})
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run(["bash", str(SCRIPT), str(out)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def cases(run_json: Path) -> list[dict]:
    return json.loads(run_json.read_text())["effbench"]["cases"]


@pytest.mark.slow
def test_script_leaves_run_journal_and_logs(tmp_path):
    proc = gpu_check(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [c["outcome"] for c in cases(tmp_path / "run.json")] == ["ok"] * 8
    for name in ("run.jsonl", "run.log", "gpu_check.log", "report.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    log = (tmp_path / "gpu_check.log").read_text()
    assert "machine_slug" in log  # `effbench env` ran first
    assert "== gpu_check took" in log  # written through to the end before the script exited


@pytest.mark.slow
def test_rerun_into_the_same_folder_is_a_new_run_and_keeps_the_previous_one(tmp_path):
    out = tmp_path / "out"
    first = gpu_check(out, suite=BUDGET)
    assert first.returncode == 0, first.stdout + first.stderr
    before = (out / "run.json").read_text()
    second = gpu_check(out, suite=BUDGET)
    assert second.returncode == 0, second.stdout + second.stderr  # was: refused (journal exists), exit 2
    (kept,) = (out / "previous").iterdir()
    assert (kept / "run.json").read_text() == before  # nothing measured is lost
    assert {"run.jsonl", "run.log", "report.md", "gpu_check.log"} <= {p.name for p in kept.iterdir()}
    after = json.loads((out / "run.json").read_text())["effbench"]
    assert after["started_at"] != json.loads(before)["effbench"]["started_at"]
    assert [c["outcome"] for c in after["cases"]] == ["ok"] * 8
    header_lines = [ln for ln in (out / "run.jsonl").read_text().splitlines() if '"type": "header"' in ln]
    assert len(header_lines) == 1
    assert (out / "report.md").exists()  # the old report went to previous/: this one is the new run's
    assert "exists; use --resume" not in (out / "gpu_check.log").read_text()


@pytest.mark.slow
def test_relative_output_folder_from_outside_the_checkout_keeps_log_and_run_together(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = gpu_check("rel/out", cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = elsewhere / "rel" / "out"
    for name in ("run.json", "run.jsonl", "run.log", "gpu_check.log", "report.md"):
        assert (out / name).stat().st_size > 0, name
    assert not (ROOT / "rel").exists()  # was: the run went to the checkout, the log to the caller's folder


@pytest.mark.slow
def test_budget_cut_keeps_every_case_leaves_no_weights_and_ends_within_the_budget(tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    budget_s = 120
    start = time.monotonic()
    # each case sleeps 8 s per call (one round + the memory repeat): the run's 60-85 s (the env step and the
    # child's start take 5-15 s each on a quiet 2-core machine; 90 s at a load of 13, where this test cannot
    # cut mid-run) end in the middle of the eight cases' ~130 s
    proc = gpu_check(tmp_path / "out", suite=BUDGET, tmpdir=tmpdir, gpu_check_budget_s=budget_s,
                     gpu_check_report_s=30, test_sleep_s=8)
    elapsed = time.monotonic() - start
    out = tmp_path / "out"
    assert proc.returncode == 124, proc.stdout + proc.stderr
    assert elapsed < budget_s, f"the whole script took {elapsed:.0f} s of its {budget_s} s budget"
    run = json.loads((out / "run.json").read_text())["effbench"]
    planned = [(p["suite"], p["id"]) for p in json.loads((out / "run.plan.json").read_text())["cases"]]
    # suites dealt round-robin: a cut loses the end of both, never all of one
    assert planned == [(s, f"{s}{i}") for i in range(4) for s in ("alpha", "beta")]
    recorded = [(c["suite"], c["id"]) for c in run["cases"]]
    not_run = [(c["suite"], c["id"]) for c in run["not_run"]]
    assert recorded + not_run == planned  # every planned case, once, in order
    outcomes = [c["outcome"] for c in run["cases"]]
    assert outcomes[-1] == "timeout" and "budget" in run["cases"][-1]["reason"]
    assert set(outcomes[:-1]) <= {"ok"}
    assert not_run and all("not started" in c["reason"] for c in run["not_run"])
    assert not (out / "run.running").exists()
    assert list(tmpdir.iterdir()) == []  # was: effbench-weights-* left behind by the killed child
