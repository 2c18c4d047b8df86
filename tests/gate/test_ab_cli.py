"""effbench ab end to end with real worker processes on a tiny suite: a worker killed mid-case ends that case as
``crashed`` and the run goes on; a planted slowdown on one side is found; outputs and exit status."""

import json
import os
import sys
from pathlib import Path

import pytest

from bench_lib import cli

ROOT = Path(__file__).resolve().parents[2]

SUITE = '''
import os, signal

import pytest

from bench_lib.harness.workload import Case, Unsupported, Workload

IDS = ["first", "dies_on_b", "gone_on_b", "last"]


def grid(profile, device_type):
    return [Case("tiny", i, {"n": n}) for n, i in enumerate(IDS)]


def build(case, ctx):
    side = os.environ.get("TINY_SIDE")
    if case.id == "gone_on_b" and side == "b":
        return Unsupported("not on this side")
    calls = []

    def fn():
        calls.append(1)
        if case.id == "dies_on_b" and side == "b" and len(calls) > 4:
            os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of its pairs
        sum(range(20000))  # CPU work: a sleep's wake-up jitter on a loaded machine is larger than any effect

    return Workload(fn)


pytestmark = pytest.mark.effbench_suite("tiny", grid=grid)


def test_tiny(case, measure):
    measure(build, case)
'''


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ab")
    (tmp / "bench_tiny.py").write_text(SUITE)
    (tmp / "conftest.py").write_text('pytest_plugins = ["bench_lib.harness.pytest_plugin"]\n')
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp)
    mp.setenv("PYTHONPATH", str(ROOT))
    try:
        import sys

        rc = cli.main(["ab", "--a", sys.executable, "--b", sys.executable, "--b-env", "TINY_SIDE=b",
                       "--b-env", "EFFBENCH_PLANT_SLOWDOWN=tiny/last=2", "--benchmarks", "bench_tiny.py",
                       "--device", "cpu", "--pairs", "16", "--sample-time", "0.02", "--output", str(tmp / "out" / "ab.json")])
    finally:
        mp.undo()
    return tmp, rc


def test_dead_worker_is_crashed_and_the_run_goes_on(tiny_run):
    tmp, rc = tiny_run
    result = json.loads((tmp / "out" / "ab.json").read_text())
    outcomes = {c["id"]: (c["outcome"]["A"], c["outcome"]["B"]) for c in result["cases"]}
    assert outcomes == {"first": ("ok", "ok"), "dies_on_b": ("ok", "crashed"), "gone_on_b": ("ok", "unsupported"),
                        "last": ("ok", "ok")}
    died = next(c for c in result["cases"] if c["id"] == "dies_on_b")
    assert "signal 9" in died["reason"]["B"] and len(died["pairs"]) < 16  # its pairs up to the kill are kept
    kinds = {o["case"]: o["kind"] for o in result["outcomes"]}
    assert kinds == {"tiny/dies_on_b": "regression", "tiny/gone_on_b": "coverage-lost"}
    assert rc == 1


def test_planted_slowdown_found_with_real_workers(tiny_run):
    tmp, _ = tiny_run
    result = json.loads((tmp / "out" / "ab.json").read_text())
    time = {c["id"]: c["time"] for c in result["cases"] if c["time"]}
    assert time["last"]["verdict"] == "slower" and time["last"]["ratio"] > 1.5
    assert time["first"]["verdict"] != "slower"
    last = next(c for c in result["cases"] if c["id"] == "last")
    assert last["planted_factor"] == {"A": 1.0, "B": 2.0}
    # the default three process pairs: three real processes per side, each took its own block of pairs
    assert result["pair_settings"]["processes"] == 3
    assert len({x["pids"]["A"] for x in last["processes"]}) == len({x["pids"]["B"] for x in last["processes"]}) == 3
    assert sorted({p["process"] for p in last["pairs"]}) == [0, 1, 2] and len(time["last"]["process_ratios"]) == 3
    assert "env EFFBENCH_PLANT_SLOWDOWN: (unset) -> tiny/last=2" in result["differences"]


def test_outputs_beside_the_result(tiny_run):
    tmp, _ = tiny_run
    out = tmp / "out"
    assert (out / "ab.md").read_text().startswith("# effbench ab")
    kinds = [json.loads(line)["type"] for line in (out / "ab.jsonl").read_text().splitlines()]
    assert kinds[0] == "header" and kinds.count("case") == 4 and kinds.count("pair") >= 16 * 2
    assert (out / "ab-a.log").exists() and (out / "ab-b.log").exists()
    result = json.loads((out / "ab.json").read_text())
    assert result["priority"]["requested"] == "high"  # the default
    expected = "nice -20" if _can_raise_priority() else f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"
    assert result["priority"]["applied"] == {"A": expected, "B": expected}
    assert f"Worker priority high (as applied: A: {expected}, B: {expected})" in (out / "ab.md").read_text()


def _can_raise_priority() -> bool:
    return os.geteuid() == 0  # root (or CAP_SYS_NICE, which the test machines do not hand out otherwise)


@pytest.mark.parametrize("level", ["normal", "high", "realtime"])
def test_worker_priority_is_applied_or_its_refusal_recorded(level):
    from bench_lib.gate import ab_sides

    side = ab_sides.Side("A", "python", sys.executable, str(ROOT), None, {})
    worker = ab_sides.WorkerProcess(side, "smoke", "cpu", command=[sys.executable, "-c", "import sys; sys.stdin.read()"],
                                    cpus=[sorted(os.sched_getaffinity(0))[0]], priority=level)
    worker.start()
    try:
        own = f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"
        expected = {"normal": own, "high": "nice -20" if _can_raise_priority() else own,
                    "realtime": "SCHED_FIFO 1" if _can_raise_priority() else own}[level]
        assert worker.applied == expected
        assert ab_sides.applied_priority(worker.proc.pid) == expected  # what the kernel says the child runs at
    finally:
        worker.kill()


def test_realtime_without_pinned_cores_and_unknown_levels_are_refused():
    from bench_lib.gate import ab_sides

    with pytest.raises(ab_sides.BadInput, match="needs --cpus"):
        ab_sides.check_priority("realtime", None)
    with pytest.raises(ab_sides.BadInput, match="choose one of"):
        ab_sides.check_priority("urgent", [0])
    ab_sides.check_priority("realtime", [0])
    assert cli.main(["ab", "--a", sys.executable, "--b", sys.executable, "--priority", "realtime"]) == 2


def test_markdown_says_when_the_priority_was_refused():
    from bench_lib.gate.ab_render import _priority

    refused = _priority({"requested": "high", "applied": {"A": "nice 0", "B": "nice 0"}})
    assert "Not every worker got nice -20" in refused[0] and "CAP_SYS_NICE" in refused[0]
    granted = _priority({"requested": "realtime", "applied": {"A": "SCHED_FIFO 1", "B": "SCHED_FIFO 1"}})
    assert "Not every" not in granted[0]
    assert _priority({"requested": "normal", "applied": {"A": "nice 0", "B": "nice 0"}}) == [
        "Worker priority normal (as applied: A: nice 0, B: nice 0).", ""]


def test_bad_sides_exit_2(tmp_path, capsys):
    assert cli.main(["ab", "--a", str(tmp_path / "nope"), "--b", str(tmp_path / "nope")]) == 2
    assert "neither a Python interpreter" in capsys.readouterr().err
    assert cli.main(["ab", "--a", "x"]) == 2


def _git(*args):
    import subprocess

    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_sides_resolve_to_interpreter_venv_or_git_ref(tmp_path):
    import sys

    from bench_lib.gate import ab_sides

    py = ab_sides.resolve("A", sys.executable, {}, ROOT)
    assert (py.python, py.ref, py.tree) == (sys.executable, None, str(ROOT))
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    assert ab_sides.resolve("B", str(venv), {"K": "V"}, ROOT).python == str(venv / "bin" / "python")
    ref = ab_sides.resolve("B", "HEAD", {}, ROOT)
    assert ref.ref == "HEAD" and ref.python == sys.executable
    with pytest.raises(ab_sides.BadInput, match="neither"):
        ab_sides.resolve("A", "no-such-ref-or-file", {}, ROOT)
    with pytest.raises(ab_sides.BadInput, match="KEY=VALUE"):
        ab_sides.parse_env(["NOEQUALS"], "--a-env")
    assert ab_sides.parse_cpus("0") == [0]
    with pytest.raises(ab_sides.BadInput, match="cores"):
        ab_sides.parse_cpus("9999")


def test_a_git_ref_is_checked_out_and_removed_and_one_without_the_worker_is_refused():
    from bench_lib.gate import ab_sides

    side = ab_sides.resolve("B", "HEAD", {}, ROOT)
    with ab_sides.checked_out(side, ROOT) as ready:
        tree = Path(ready.tree)
        assert (tree / "bench_lib" / "gate" / "ab_worker.py").is_file()
        assert _git("-C", str(tree), "rev-parse", "HEAD") == _git("rev-parse", "HEAD")
    assert not tree.exists() and str(tree) not in _git("worktree", "list")
    added = _git("log", "--diff-filter=A", "--format=%H", "--", "bench_lib/gate/ab_worker.py").splitlines()[-1]
    before = ab_sides.resolve("A", f"{added}^", {}, ROOT)
    with pytest.raises(ab_sides.BadInput, match="predates effbench ab"), ab_sides.checked_out(before, ROOT):
        pass


@pytest.mark.slow
def test_two_git_refs_measured_end_to_end(tmp_path, monkeypatch):
    # both sides at HEAD, each in its own temporary worktree: an A/A of the committed suite code
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("EFFBENCH_TEST_SLEEP_S", "0.002")
    rc = cli.main(["ab", "--a", "HEAD", "--b", "HEAD", "--device", "cpu", "--pairs", "10", "--sample-time", "0.01",
                   "--benchmarks", "tests/data/fake_suites/bench_slow.py::test_slow[case0]",
                   "--output", str(tmp_path / "refs.json")])
    result = json.loads((tmp_path / "refs.json").read_text())
    assert rc in (0, 1) and [c["outcome"] for c in result["cases"]] == [{"A": "ok", "B": "ok"}]
    trees = {result["sides"][n]["environment"]["git"]["commit"] for n in "AB"}
    assert trees == {_git("rev-parse", "HEAD")}
    assert all(result["sides"][n]["ref"] == "HEAD" for n in "AB")


def test_a_side_whose_worker_cannot_start_is_bad_input(tmp_path, monkeypatch, capsys):
    import sys

    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'No module named torch' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.chdir(ROOT)
    rc = cli.main(["ab", "--a", sys.executable, "--b", str(broken), "--device", "cpu",
                   "--benchmarks", "tests/data/fake_suites/bench_slow.py::test_slow[case0]",
                   "--output", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "side B's worker died (exit status 1)" in err and "before measuring anything" in err
    assert "No module named torch" in (tmp_path / "x-b.log").read_text()
