"""effbench ab end to end with real worker processes on a tiny suite: a worker killed mid-case ends that case as
``crashed`` and the run goes on; a planted slowdown on one side is found; outputs and exit status."""

import json
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
    planted = next(c for c in result["cases"] if c["id"] == "last")["planted_factor"]
    assert planted == {"A": 1.0, "B": 2.0}
    assert "env EFFBENCH_PLANT_SLOWDOWN: (unset) -> tiny/last=2" in result["differences"]


def test_outputs_beside_the_result(tiny_run):
    tmp, _ = tiny_run
    out = tmp / "out"
    assert (out / "ab.md").read_text().startswith("# effbench ab")
    kinds = [json.loads(line)["type"] for line in (out / "ab.jsonl").read_text().splitlines()]
    assert kinds[0] == "header" and kinds.count("case") == 4 and kinds.count("pair") >= 16 * 2
    assert (out / "ab-a.log").exists() and (out / "ab-b.log").exists()


def test_bad_sides_exit_2(tmp_path, capsys):
    assert cli.main(["ab", "--a", str(tmp_path / "nope"), "--b", str(tmp_path / "nope")]) == 2
    assert "neither a Python interpreter" in capsys.readouterr().err
    assert cli.main(["ab", "--a", "x"]) == 2
