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


def test_a_child_that_died_under_a_living_supervisor_is_crashed_once(j):
    j.append(rec(1))
    j.mark_running("s", "c2", "b.py::t[c2]", "t5")
    crashed = j.settle_running("t9", died="signal SIGSEGV")
    assert crashed["outcome"] == "crashed" and crashed["id"] == "c2" and "SIGSEGV" in crashed["reason"]
    assert j.settle_running("t10") is None  # marker cleared: not recorded twice
    assert journal.done_keys(j.path) == {("s", "c1"), ("s", "c2")}


def test_settle_ignores_a_marker_for_a_case_already_recorded(j):
    j.mark_running("s", "c1", "n", "t")
    j.append(rec(1))
    assert j.settle_running("t9") is None and j.running() is None


def test_an_unseen_stop_is_run_again_once_then_crashed_with_both_reasons(j):
    """SIGKILL of the whole run (or power loss) left the marker: not the case's fault the first time."""
    j.mark_running("s", "c1", "n", "t1")
    first = j.settle_running("t2")
    assert first["type"] == "interrupted" and "run again" in first["reason"]
    assert journal.done_keys(j.path) == set()  # so resume runs it again
    j.mark_running("s", "c1", "n", "t3")  # the retry dies unseen too
    second = j.settle_running("t4")
    assert second["type"] == "case" and second["outcome"] == "crashed"
    assert "stopped unseen again" in second["reason"] and "before: the run stopped from outside" in second["reason"]
    assert journal.done_keys(j.path) == {("s", "c1")}
    journal.assemble(j.path)  # interrupted lines are no case records


def test_a_retried_case_that_then_crashes_names_both_reasons(j):
    j.mark_running("s", "c1", "n", "t1")
    j.settle_running("t2")
    j.mark_running("s", "c1", "n", "t3")
    crashed = j.settle_running("t4", died="signal SIGKILL")
    assert crashed["outcome"] == "crashed"
    assert "SIGKILL" in crashed["reason"] and "before: the run stopped from outside" in crashed["reason"]


def test_a_signal_seen_by_the_supervisor_is_never_crashed(j):
    for t in ("t1", "t2", "t3"):  # Ctrl-C three times on the same long case
        j.mark_running("s", "c1", "n", t)
        line = j.settle_running(t + "x", signal_name="SIGINT")
        assert line["type"] == "interrupted" and "SIGINT" in line["reason"]
    assert journal.done_keys(j.path) == set()


def test_repair_drops_a_torn_tail_and_the_next_record_starts_a_fresh_line(j):
    j.append(rec(1))
    with open(j.path, "a") as f:
        f.write('{"type": "case", "id": "c2", "sui')  # power loss mid-write
    note = journal.repair_tail(j.path)
    assert "dropped a torn last line (33 bytes" in note
    j.append(rec(3))
    header, records = journal.read(j.path)  # no warning, no error: every line whole
    assert [r["id"] for r in records] == ["c1", "c3"]
    assert journal.repair_tail(j.path) is None


def test_append_after_a_torn_tail_never_glues_records(j):
    """The old code appended to the half line: that record was lost and the next resume failed."""
    j.append(rec(1))
    with open(j.path, "a") as f:
        f.write('{"type": "case", "id": "c2", "sui')
    with pytest.warns(UserWarning, match="torn last line"):
        j.append(rec(3))
    j.append(rec(4))
    assert [r["id"] for r in journal.read(j.path)[1]] == ["c1", "c3", "c4"]


def test_a_whole_last_record_without_its_newline_is_kept(j):
    with open(j.path, "a") as f:
        f.write(json.dumps(rec(1)))
    assert journal.repair_tail(j.path) is None
    j.append(rec(2))
    assert [r["id"] for r in journal.read(j.path)[1]] == ["c1", "c2"]


def test_a_full_disk_leaves_no_half_line(j, monkeypatch):
    """A fake writer: the disk takes 10 bytes of the line, then ENOSPC (the tmpfs test does it for real)."""
    import errno

    j.append(rec(1))
    size = j.path.stat().st_size
    real_write = journal.os.write

    def full(fd, data):
        real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal.os, "write", full)
    with pytest.raises(OSError) as exc:
        j.append(rec(2))
    assert journal.is_disk_full(exc.value)
    monkeypatch.undo()
    assert j.path.stat().st_size == size  # cut back to the last whole line
    j.append(rec(3))
    assert [r["id"] for r in journal.read(j.path)[1]] == ["c1", "c3"]


def test_the_lock_is_exclusive_and_inherited_only_on_the_same_file(j, monkeypatch, tmp_path):
    fd = j.lock()
    with pytest.raises(journal.JournalLocked, match="another effbench run is writing"):
        journal.Journal(j.path).lock()  # a second run: another open file, refused
    monkeypatch.setenv(journal.LOCK_FD_ENV, str(fd))
    assert journal.Journal(j.path).lock() == fd  # the supervisor's child
    other = journal.Journal(tmp_path / "other.jsonl")
    assert other.lock() != fd  # the variable names the journal's fd, not any file


def test_renames_and_new_files_fsync_their_folder(tmp_path, monkeypatch):
    synced = []
    from bench_lib.harness import durable

    monkeypatch.setattr(durable, "fsync_dir", lambda folder: synced.append(folder))
    monkeypatch.setattr(journal, "fsync_dir", lambda folder: synced.append(folder))
    journal.write_atomic(tmp_path / "run.json", "{}")
    j = journal.Journal(tmp_path / "run.jsonl")
    j.write_header({"profile": "quick"})
    j.append(rec(1))  # an append to an existing file: no new name, no folder sync
    assert synced == [tmp_path, tmp_path]


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
