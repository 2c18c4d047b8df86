"""Session-level preparations: shared work (trained weights) done once before the cases, outside their limits."""

import json
import time
from types import SimpleNamespace

import torch

from bench_lib.harness import journal
from bench_lib.harness.profiles import Profile
from bench_lib.harness.pytest_plugin import EffbenchSession
from bench_lib.harness.workload import Preparation
from tests.harness.test_pytest_plugin import run_pytest


def test_preparations_run_before_the_cases_outside_their_limit_and_a_failure_ends_only_its_cases(tmp_path):
    proc = run_pytest(tmp_path, "bench_prepare.py", "--profile=quick", "--effbench-case-timeout=2",
                      f"--benchmark-json={tmp_path / 'run.json'}")
    run = json.loads((tmp_path / "run.json").read_text())
    outcomes = {c["id"]: c["outcome"] for c in run["effbench"]["cases"]}
    # the 3 s preparation is in no case's 2 s limit; the broken one fails only the case that needs it
    assert outcomes == {"needs-slow": "ok", "needs-broken": "error", "needs-nothing": "ok"}, proc.stdout
    reasons = {c["id"]: c["reason"] for c in run["effbench"]["cases"]}
    assert "planted preparation failure" in reasons["needs-broken"]
    prepared = {p["name"]: p for p in run["effbench"]["prepared"]}
    assert prepared["slow"]["outcome"] == "ok" and prepared["slow"]["trained_here_s"] == 3.0
    assert prepared["broken"]["outcome"] == "error" and "planted preparation failure" in prepared["broken"]["reason"]
    # journaled before the first case, and the run rebuilt from the journal keeps them
    lines = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert [line["type"] for line in lines[:3]] == ["header", "prepare", "prepare"]
    assert journal.assemble(tmp_path / "run.jsonl")["effbench"]["prepared"] == run["effbench"]["prepared"]


def test_a_resumed_session_prepares_only_for_the_cases_left_and_a_later_run_finds_the_work_done(tmp_path):
    first = ("--profile=quick", f"--effbench-journal={tmp_path / 'run.jsonl'}")
    run_pytest(tmp_path, "bench_prepare.py", *first, "-k", "needs-slow")
    run_pytest(tmp_path, "bench_prepare.py", *first, "--effbench-resume")  # needs-slow is done: nothing for it
    assert [(p["name"], p.get("reused")) for p in journal.preparations(tmp_path / "run.jsonl")] == [
        ("slow", False), ("broken", None)]
    run_pytest(tmp_path, "bench_prepare.py", "--profile=quick", f"--effbench-journal={tmp_path / 'again.jsonl'}",
               "-k", "needs-slow")
    assert [(p["name"], p["reused"]) for p in journal.preparations(tmp_path / "again.jsonl")] == [("slow", True)]


def _session(tmp_path, limit_s):
    profile = Profile("t", warmup_rounds=0, min_rounds=1, max_rounds=1, target_time_s=0.01, case_timeout_s=1,
                      prepare_timeout_s=limit_s)
    j = journal.Journal(tmp_path / "run.jsonl")
    j.write_header({"profile": "t"})
    return SimpleNamespace(profile=profile, device=torch.device("cpu"), prepared=[], journal=j)


def test_a_preparation_past_its_limit_is_a_timeout_and_its_cases_are_told(tmp_path):
    told = []
    eff = _session(tmp_path, limit_s=0.3)

    def forever():
        while True:
            time.sleep(0.01)

    EffbenchSession._prepare_one(eff, Preparation("w", forever, told.append), "suite")
    rec = eff.prepared[0]
    assert rec["outcome"] == "timeout" and "0.3 s" in rec["reason"] and "prepare_timeout_s" in rec["reason"]
    assert told == [rec["reason"]]
    assert journal.preparations(eff.journal.path)[0]["outcome"] == "timeout"


def test_the_profiles_give_preparations_a_limit_beyond_a_case(tmp_path):
    from bench_lib.harness import profiles

    for p in profiles.PROFILES.values():
        assert p.prepare_timeout_s > p.case_timeout_s


def test_effbench_run_shows_each_preparation_as_a_live_line():
    from bench_lib.harness.supervisor import prepare_line

    assert prepare_line({"name": "pretrain-x", "outcome": "ok", "trained_here_s": 90.2, "reused": False}) == \
        "[prep] ok          pretrain-x  trained in 90.20 s"
    assert prepare_line({"name": "pretrain-x", "outcome": "ok", "trained_here_s": 0.0, "reused": True}).endswith(
        "found in the cache")
    assert "planted" in prepare_line({"name": "w", "outcome": "error", "reason": "RuntimeError: planted"})
