"""effbench ab over several process pairs: a difference that belongs to one pair of worker processes (not to
either side) is not a verdict, a real slowdown still is, and blocks resume and fail like whole cases."""

import numpy as np
import pytest

from bench_lib.gate import ab, ab_pairs
from bench_lib.gate.ab_pairs import PairJournal, PairSettings
from bench_lib.gate.ab_render import to_markdown
from tests.gate.test_ab import TIMES, FakeWorker, Machine, Quiet, header, verdicts


class ProcessWorker(FakeWorker):
    """A fake worker whose every process has its own speed for some cases: ``biases[g]`` is the factor the
    g-th process (the first, then one per restart) puts on every call of the cases in ``biased``; ``quit``
    ends the process (the next request starts a fresh one, as :class:`bench_lib.gate.ab_sides.WorkerProcess`
    does). ``die_in`` = (process, case): that process dies when asked to time that case."""

    def __init__(self, machine, times, biases=(1.0,), biased=None, die_in=None, **kw):
        super().__init__(machine, times, **kw)
        self.biases, self.biased, self.die_in = list(biases), set(biased or times), die_in
        self.generation, self.builds = 0, []

    @property
    def pid(self):
        return 1000 + self.generation

    def quit(self):
        self.generation += 1

    def request(self, request, timeout_s=None):
        if request["op"] == "time" and self.die_in == (self.generation, self.built):
            self.generation += 1  # the process is gone; the next request starts another one
            raise ab_pairs.WorkerDied("side B's worker died (signal 9) while this case was running")
        return super().request(request, timeout_s)

    def serve(self, r):
        reply = super().serve(r)
        if r["op"] == "build":
            self.builds.append((self.generation, self.built))
        if r["op"] == "time" and self.built in self.biased:
            bias = self.biases[min(self.generation, len(self.biases) - 1)]
            reply = {**reply, "samples_s": [x * bias for x in reply["samples_s"]]}
        return reply


def run_processes(tmp_path, a, b, pairs=30, processes=3, name="ab"):
    h = header(pairs=pairs)
    h["pair_settings"]["processes"] = processes
    journal = PairJournal(tmp_path / f"{name}.jsonl")
    return ab.run(h, {"A": a, "B": b}, journal, Quiet(), fresh=True), journal


def test_block_bounds_split_the_pairs_on_even_indices():
    assert ab_pairs.block_bounds(PairSettings(pairs=30, processes=3)) == [(0, 10), (10, 20), (20, 30)]
    assert ab_pairs.block_bounds(PairSettings(pairs=20, processes=3)) == [(0, 6), (6, 14), (14, 20)]
    assert ab_pairs.block_bounds(PairSettings(pairs=7, processes=1)) == [(0, 7)]
    with pytest.raises(ValueError):
        PairSettings(pairs=5, processes=3)  # fewer than 2 pairs per process pair


def test_one_odd_pair_of_processes_is_a_false_verdict_alone_and_none_among_three(tmp_path):
    # side B's first process runs c0 6% fast: what eager s256 fwd did in an A/A on the test machine
    machine = Machine(1)
    one, _ = run_processes(tmp_path, ProcessWorker(machine, TIMES), ProcessWorker(machine, TIMES, [0.94], {"c0"}),
                           processes=1, name="one")
    c0 = next(c["time"] for c in one["cases"] if c["id"] == "c0")
    assert c0["verdict"] == "faster" and c0["ratio"] == pytest.approx(0.94, rel=0.02)  # the problem
    machine = Machine(1)
    b = ProcessWorker(machine, TIMES, [0.94, 1.0, 1.01], {"c0"})
    three, _ = run_processes(tmp_path, ProcessWorker(machine, TIMES), b, processes=3, name="three")
    c0 = next(c["time"] for c in three["cases"] if c["id"] == "c0")
    assert c0["verdict"] == "same" and c0["ratio"] == pytest.approx(1.0, abs=0.015)
    assert c0["process_ratios"] == pytest.approx([0.94, 1.0, 1.01], abs=0.015)
    assert set(verdicts(three).values()) == {"same"} and not three["regression"]


def test_a_real_slowdown_is_found_through_process_to_process_spread(tmp_path):
    rng = np.random.default_rng(3)
    biases = lambda: list(rng.lognormal(0.0, 0.02, 3))  # noqa: E731  every process +-2% on every case
    planted = {"c1", "c4", "c8"}
    machine = Machine(2)
    slower = {k: v * (1.10 if k in planted else 1.0) for k, v in TIMES.items()}
    result, _ = run_processes(tmp_path, ProcessWorker(machine, TIMES, biases()),
                              ProcessWorker(machine, slower, biases()))
    v = verdicts(result)
    assert {k for k, x in v.items() if x == "slower"} == planted
    assert all(x == "same" for k, x in v.items() if k not in planted)


def test_process_pairs_that_disagree_on_the_direction_are_inconclusive(tmp_path):
    machine = Machine(4)
    b = ProcessWorker(machine, TIMES, [1.20, 1.15, 0.97], {"c3"})
    result, _ = run_processes(tmp_path, ProcessWorker(machine, TIMES), b)
    c3 = next(c["time"] for c in result["cases"] if c["id"] == "c3")
    assert c3["ratio"] == pytest.approx(1.15, rel=0.02) and c3["p_holm"] < 0.01  # beyond and "significant"
    assert c3["verdict"] == "inconclusive" and "process pairs disagree" in c3["note"]
    assert not result["regression"]
    assert "process pairs disagree" in to_markdown(result)


def test_every_block_is_a_fresh_process_that_builds_again_and_memory_is_probed_once(tmp_path):
    machine = Machine(5)
    a, b = ProcessWorker(machine, TIMES), ProcessWorker(machine, TIMES)
    result, _ = run_processes(tmp_path, a, b)
    for w in (a, b):
        assert w.generation == 2  # restarted twice: three processes
        assert sorted(w.builds) == sorted((g, c) for g in range(3) for c in TIMES)
        assert sum(r["op"] == "memory" for r in w.requests) == len(TIMES)
    case = result["cases"][0]
    assert [p["process"] for p in case["pairs"]] == [0] * 10 + [1] * 10 + [2] * 10
    assert [p["i"] for p in case["pairs"]] == list(range(30))
    assert [x["pids"]["A"] for x in case["processes"]] == [1000, 1001, 1002]
    assert case["memory"]["A"]["cpu_peak_rss_bytes"] > 0
    assert "3 fresh pairs of worker processes" in to_markdown(result)


def test_a_crash_in_a_later_block_ends_the_case_and_the_run_goes_on(tmp_path):
    machine = Machine(6)
    b = ProcessWorker(machine, TIMES, die_in=(1, "c2"))
    result, journal = run_processes(tmp_path, ProcessWorker(machine, TIMES), b)
    c2 = next(c for c in result["cases"] if c["id"] == "c2")
    assert c2["outcome"] == {"A": "ok", "B": "crashed"} and "died" in c2["reason"]["B"]
    assert c2["time"] is None and [x["process"] for x in c2["processes"]] == [0, 1]
    assert ("c2" not in {c for g, c in b.builds if g >= 2})  # no third block for it
    assert {(o["case"], o["kind"]) for o in result["outcomes"]} == {("s/c2", "regression")}
    assert all(c["outcome"] == {"A": "ok", "B": "ok"} for c in result["cases"] if c["id"] != "c2")
    assert set(verdicts(result).values()) == {"same"}


def test_resume_in_the_middle_of_the_second_process_pair(tmp_path):
    machine = Machine(7)
    times = {"c0": 0.01, "c1": 0.02}
    h = header(pairs=12)
    h["pair_settings"]["processes"] = 3
    full, _ = run_processes(tmp_path, ProcessWorker(machine, times), ProcessWorker(machine, times), pairs=12,
                            name="whole")
    lines = (tmp_path / "whole.jsonl").read_text().splitlines()
    # keep everything up to c0's 6th pair (its second block half done); c1 finished its first block only
    cut = next(n for n, line in enumerate(lines) if '"key": "s/c0", "i": 5,' in line)
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[: cut + 1]) + "\n")
    a, b = ProcessWorker(machine, times), ProcessWorker(machine, times)
    result = ab.run(h, {"A": a, "B": b}, PairJournal(tmp_path / "cut.jsonl"), Quiet(), fresh=False)
    assert (0, "c0") in a.builds and (0, "c1") in a.builds  # the fresh process continues block 1 of both
    assert len(a.builds) == 4  # block 1 of c0 and c1, then block 2 of both: block 0 is never taken again
    for case in result["cases"]:
        assert [p["i"] for p in case["pairs"]] == list(range(12))
        assert [p["process"] for p in case["pairs"]] == [0] * 4 + [1] * 4 + [2] * 4
    assert sorted(full["summary"]["time"].items()) == sorted(result["summary"]["time"].items())


def test_cli_refuses_too_few_pairs_for_the_processes(tmp_path, capsys):
    from bench_lib.cli import main

    rc = main(["ab", "--a", "python3", "--b", "python3", "--pairs", "5", "--processes", "3",
               "--output", str(tmp_path / "x.json")])
    assert rc == 2 and "--processes" in capsys.readouterr().err
