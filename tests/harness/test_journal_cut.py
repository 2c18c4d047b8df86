"""journal.close_cut_run: a run cut from outside keeps every planned case (the running one as timeout)."""

import json

from bench_lib.harness import journal


def case(suite, id_, outcome="ok"):
    return {"type": "case", "suite": suite, "id": id_, "case": {"i": id_}, "outcome": outcome, "reason": None,
            "metrics": {"time_s": 1.0}, "memory": {}, "samples_s": [1.0, 1.1], "series": {},
            "started_at": "t0", "finished_at": "t1"}


def planned(*keys):
    return [{"suite": s, "id": i, "nodeid": f"b.py::test_{s}[{i}]", "case": {"i": i}} for s, i in keys]


def test_cut_run_records_the_running_case_as_timeout_and_lists_the_rest(tmp_path):
    path = tmp_path / "run.jsonl"
    j = journal.Journal(path)
    j.write_header({"profile": "quick", "device": "cpu", "started_at": "t0"})
    j.append(case("a", "a0"))
    j.append(case("b", "b0"))
    j.mark_running("a", "a1", "b.py::test_a[a1]", "t2")
    plan = planned(("a", "a0"), ("b", "b0"), ("a", "a1"), ("b", "b1"), ("a", "a2"))
    data = journal.close_cut_run(path, plan, "cut by a 330 s budget", "t9")
    cases = data["effbench"]["cases"]
    assert [(c["id"], c["outcome"]) for c in cases] == [("a0", "ok"), ("b0", "ok"), ("a1", "timeout")]
    assert cases[-1]["reason"] == "cut by a 330 s budget: still running at the cut"
    assert cases[-1]["case"] == {"i": "a1"} and cases[-1]["started_at"] == "t2"
    assert [(c["id"], c["reason"]) for c in data["effbench"]["not_run"]] == [
        ("b1", "cut by a 330 s budget: not started"), ("a2", "cut by a 330 s budget: not started")]
    assert len(data["benchmarks"]) == 2 and j.running() is None
    # the timeout is in the journal itself, once: closing again changes nothing
    again = journal.close_cut_run(path, plan, "cut by a 330 s budget", "t9")
    assert json.dumps(again) == json.dumps(data)


def test_cut_between_cases_adds_no_timeout(tmp_path):
    path = tmp_path / "run.jsonl"
    j = journal.Journal(path)
    j.write_header({"profile": "quick", "device": "cpu", "started_at": "t0"})
    j.append(case("a", "a0"))
    data = journal.close_cut_run(path, planned(("a", "a0"), ("a", "a1")), "cut", "t9")
    assert [c["outcome"] for c in data["effbench"]["cases"]] == ["ok"]
    assert [c["id"] for c in data["effbench"]["not_run"]] == ["a1"]


def test_a_case_the_supervisor_saw_interrupted_by_the_cut_is_the_timeout(tmp_path):
    # the cut's SIGTERM reaches effbench run's supervisor, which settles the running marker into an
    # `interrupted` line (to be run again on resume); the budget's record of that case is still `timeout`
    path = tmp_path / "run.jsonl"
    j = journal.Journal(path)
    j.write_header({"profile": "quick", "device": "cpu", "started_at": "t0"})
    j.append(case("a", "a0"))
    j.mark_running("b", "b0", "b.py::test_b[b0]", "t2")
    assert j.settle_running("t3", signal_name="SIGTERM")["type"] == "interrupted"
    assert j.running() is None
    data = journal.close_cut_run(path, planned(("a", "a0"), ("b", "b0"), ("a", "a1")), "cut", "t9")
    assert [(c["id"], c["outcome"]) for c in data["effbench"]["cases"]] == [("a0", "ok"), ("b0", "timeout")]
    assert [c["id"] for c in data["effbench"]["not_run"]] == ["a1"]
