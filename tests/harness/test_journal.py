import json

import pytest

from bench_lib.harness import journal


def rec(i, outcome="ok", samples=(0.1, 0.2, 0.3)):
    return {"type": "case", "id": f"c{i}", "suite": "s", "nodeid": f"b.py::t[c{i}]", "case": {"i": i},
            "outcome": outcome, "reason": None, "metrics": {"time_s": 0.2}, "memory": {},
            "samples_s": list(samples) if outcome == "ok" else [], "series": {}, "started_at": "t0", "finished_at": f"t{i}"}


@pytest.fixture
def j(tmp_path):
    j = journal.Journal(tmp_path / "run.jsonl")
    j.write_header({"profile": "quick", "device": "cpu", "started_at": "t", "machine_info": {"node": "x"}})
    return j


def test_torn_last_line_is_skipped(j):
    j.append(rec(1))
    with open(j.path, "a") as f:
        f.write('{"type": "case", "id": "c2", "sui')  # killed mid-write
    with pytest.warns(UserWarning, match="last line 3 is cut off"):
        header, records = journal.read(j.path)
    assert header["profile"] == "quick" and [r["id"] for r in records] == ["c1"]


def test_header_is_written_once(j):
    with pytest.raises(FileExistsError, match="--resume"):
        j.write_header({})


def test_recover_crashed_records_the_running_case_once(j):
    j.append(rec(1))
    j.mark_running("s", "c2", "b.py::t[c2]", "t5")
    crashed = j.recover_crashed("t9")
    assert crashed["outcome"] == "crashed" and crashed["id"] == "c2"
    assert j.recover_crashed("t10") is None  # marker cleared: not recorded twice
    assert journal.done_keys(j.path) == {("s", "c1"), ("s", "c2")}


def test_recover_ignores_a_marker_for_a_case_already_recorded(j):
    j.mark_running("s", "c1", "n", "t")
    j.append(rec(1))
    assert j.recover_crashed("t9") is None


def test_assemble_builds_pytest_benchmark_entries_from_samples(j):
    j.append(rec(1))
    j.append(rec(2, "oom"))
    j.append(rec(1, samples=(1.0, 2.0, 3.0)))  # re-run after a crash: the last record wins
    run = journal.assemble(j.path, finished_at="tf")
    assert [c["id"] for c in run["effbench"]["cases"]] == ["c2", "c1"]
    (entry,) = run["benchmarks"]
    assert entry["stats"]["median"] == 2.0 and entry["stats"]["data"] == [1.0, 2.0, 3.0]
    assert entry["stats"]["rounds"] == 3 and entry["fullname"] == "b.py::t[c1]"
    assert entry["extra_info"]["outcome"] == "ok" and entry["params"] == {"i": 1}
    assert run["machine_info"] == {"node": "x"} and run["effbench"]["finished_at"] == "tf"
    json.dumps(run)


def test_assemble_needs_a_header(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps(rec(1)) + "\n")
    with pytest.raises(ValueError, match="no header"):
        journal.assemble(p)


def test_a_bad_line_before_the_last_is_not_a_torn_write(j):
    with open(j.path, "a") as f:
        f.write("not json\n")
    j.append(rec(1))
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        journal.read(j.path)


def test_entry_rebuilt_from_the_journal_says_how_the_samples_were_timed():
    blocked = rec(1)
    blocked["metrics"].update(calls_per_sample=20, timer="cuda_events")
    entry = journal.benchmark_entry(blocked)
    assert entry["stats"]["iterations"] == 20 and entry["options"]["timer"] == "cuda_events"
    assert journal.benchmark_entry(rec(2))["stats"]["iterations"] == 1  # records from before blocking
