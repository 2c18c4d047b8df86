"""Round-robin case order (bench_lib.harness.case_order) and the plan it leaves beside the journal."""

import json
import subprocess
import sys
from pathlib import Path

from bench_lib.harness import case_order

ROOT = Path(__file__).resolve().parents[2]
BUDGET = ROOT / "tests" / "data" / "fake_suites" / "bench_budget.py"


def test_interleave_deals_groups_round_robin_and_keeps_the_first_items_first():
    items = ["cal1", "a1", "a2", "a3", "b1", "cal2", "c1", "c2"]
    got = case_order.interleave(items, group_of=lambda s: s[0], first_of=lambda s: s.startswith("cal"))
    assert got == ["cal1", "cal2", "a1", "b1", "c1", "a2", "c2", "a3"]
    assert case_order.interleave([], str, bool) == []


def test_plugin_orders_the_run_and_writes_the_plan_once(tmp_path):
    journal = tmp_path / "run.jsonl"
    cmd = [sys.executable, "-m", "pytest", str(BUDGET), "--profile=smoke", "--device=cpu", "--collect-only", "-q",
           f"--effbench-journal={journal}", "-p", "no:cacheprovider", "-p", "bench_lib.harness.case_order"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [line.split("[")[1].rstrip("]") for line in proc.stdout.splitlines() if "::" in line]
    assert ids == ["alpha0", "beta0", "alpha1", "beta1", "alpha2", "beta2", "alpha3", "beta3"]
    plan = json.loads(case_order.plan_path(journal).read_text())["cases"]
    assert [p["id"] for p in plan] == ids and plan[0]["case"] == {"i": 0} and plan[1]["suite"] == "beta"
    # a resumed child sees fewer cases: the first plan stays
    proc = subprocess.run(cmd + ["--effbench-resume", "-k", "beta"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(json.loads(case_order.plan_path(journal).read_text())["cases"]) == 8
