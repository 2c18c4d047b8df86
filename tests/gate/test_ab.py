"""effbench ab with fake workers: drift common to both sides cancels, a one-sided slowdown is found, a side whose
case cannot run is an outcome change, and a journal of pairs resumes where it stopped."""

import json
import math

import numpy as np
import pytest

from bench_lib.gate import ab, ab_pairs
from bench_lib.gate.ab_pairs import PairJournal, PairSettings
from bench_lib.gate.ab_render import to_markdown


class Machine:
    """A shared machine whose speed drifts: every sample either side takes is multiplied by the drift of the
    moment it is taken (steps of up to 3x and a slow wave: slow next to one pair, as a neighbour's job is),
    times a little noise of its own."""

    def __init__(self, seed=0):
        self.tick, self.rng = 0, np.random.default_rng(seed)

    def slowdown(self):
        self.tick += 1
        step = (1.0, 2.5, 1.3, 3.0, 1.0, 1.8)[(self.tick // 120) % 6]
        return step * (1.0 + 0.3 * math.sin(self.tick / 150.0)) * float(self.rng.lognormal(0.0, 0.02))


class FakeWorker:
    """Speaks ab_worker's requests in-process. ``times``: case id -> seconds per call on this side."""

    def __init__(self, machine, times, packages=None, unsupported=()):
        self.machine, self.times, self.unsupported = machine, times, set(unsupported)
        self.packages = packages or {"torch": "2.13.0"}
        self.built, self._reply = None, None
        self.requests = []

    def send(self, request):
        self.requests.append(request)
        self._reply = self.serve(request)

    def receive(self, timeout_s):
        return self._reply

    def request(self, request, timeout_s=None):
        self.send(request)
        return self.receive(timeout_s)

    def serve(self, r):
        op = r["op"]
        if op == "env":
            return {"ok": True, "env": {"device": "cpu", "cpu": {"model": "fake"}, "packages": self.packages}}
        if op == "collect":
            return {"ok": True, "cases": [{"nodeid": f"bench.py::t[{i}]", "suite": "s", "id": i, "params": {}}
                                          for i in self.times]}
        if op == "build":
            case_id = r["nodeid"].split("[")[1].rstrip("]")
            if case_id in self.unsupported:
                return {"ok": True, "outcome": "unsupported", "reason": "no kernel here", "metrics": {}}
            self.built = case_id
            return {"ok": True, "outcome": "ok", "reason": None, "metrics": {}, "estimate_s": self.times[case_id]}
        if op == "time":
            return {"ok": True, "samples_s": [self.times[self.built] * self.machine.slowdown()
                                              for _ in range(r["rounds"])]}
        if op == "memory":
            return {"ok": True, "memory": {"cpu_peak_rss_bytes": 500 * 2**20, "primary": "cpu_peak_rss_bytes"}}
        if op == "close":
            return {"ok": True}
        raise AssertionError(op)


def header(pairs=16, threshold=0.05, a_env=None, b_env=None):
    side = lambda env: {"spec": "python", "python": "python", "tree": ".", "ref": None, "env": env or {}}  # noqa: E731
    return {"type": "header", "kind": "ab", "schema_version": 1, "started_at": "t0",
            "sides": {"A": side(a_env), "B": side(b_env)}, "profile": "quick", "device": "cpu",
            "benchmarks": ["bench.py"], "cpus": None,
            "settings": {"threshold": threshold, "alpha": 0.01, "memory_threshold": threshold},
            "pair_settings": {**ab_pairs.PairSettings(pairs=pairs, sample_time_s=0.05).__dict__}}


class Quiet:
    def progress(self, text):
        pass

    def done(self, text):
        self.last = text


TIMES = {f"c{i}": 0.01 * (i + 1) for i in range(10)}


def run_fake(tmp_path, a_times, b_times, **kw):
    machine = Machine()
    workers = {"A": FakeWorker(machine, a_times, **kw.pop("a", {})), "B": FakeWorker(machine, b_times, **kw.pop("b", {}))}
    journal = PairJournal(tmp_path / "ab.jsonl")
    return ab.run(header(**kw), workers, journal, Quiet(), fresh=True), machine


def verdicts(result):
    return {c["id"]: c["time"]["verdict"] for c in result["cases"] if c["time"]}


def test_drift_that_hits_both_sides_cancels(tmp_path):
    result, _ = run_fake(tmp_path, TIMES, TIMES)
    # the drift is large: within one case, one side's samples span more than 2x
    spans = [max(p["a_s"] for p in c["pairs"]) / min(p["a_s"] for p in c["pairs"]) for c in result["cases"]]
    assert max(spans) > 2.0
    assert verdicts(result) == {k: "same" for k in TIMES}
    assert not result["regression"] and result["summary"]["regressions"] == 0
    ratios = [c["time"]["ratio"] for c in result["cases"]]
    assert all(abs(r - 1.0) < 0.05 for r in ratios)


def test_a_slowdown_on_one_side_is_found_and_only_there(tmp_path):
    slower = {k: v * (1.15 if k in ("c2", "c5", "c7") else 1.0) for k, v in TIMES.items()}
    # the default 20 pairs: one pair of c5 straddles a step of the machine (B's first call before it, every
    # other call after: B/A 0.64), which at 16 pairs leaves the signed-rank p at 5e-3, over Holm's 10 cases
    result, _ = run_fake(tmp_path, TIMES, slower, pairs=20)
    v = verdicts(result)
    assert {k for k, x in v.items() if x == "slower"} == {"c2", "c5", "c7"}
    assert all(x == "same" for k, x in v.items() if k not in ("c2", "c5", "c7"))
    c5 = next(c for c in result["cases"] if c["id"] == "c5")["time"]
    assert c5["ratio"] == pytest.approx(1.15, rel=0.03) and c5["ci"][0] > 1.05
    assert result["regression"]
    # separately measured medians would not say so: the drift alone moves them by more than the slowdown
    a_med = [np.median([p["a_s"] for p in c["pairs"]]) / TIMES[c["id"]] for c in result["cases"]]
    assert max(a_med) / min(a_med) > 1.15


def test_a_faster_side_is_faster_not_a_regression(tmp_path):
    result, _ = run_fake(tmp_path, TIMES, {k: v / 1.2 for k, v in TIMES.items()}, pairs=20)  # see the one above
    assert set(verdicts(result).values()) == {"faster"} and not result["regression"]


def test_every_pair_and_its_order_are_kept(tmp_path):
    result, _ = run_fake(tmp_path, TIMES, TIMES, pairs=8)
    case = result["cases"][0]
    assert [p["i"] for p in case["pairs"]] == list(range(8))
    orders = [p["order"] for p in case["pairs"]]
    assert set(orders) <= {"AB", "BA"} and orders == [ab_pairs.pair_order(0, case["key"], i) for i in range(8)]
    assert all(len(p["a_samples_s"]) == p["rounds"] == case["rounds_per_sample"] for p in case["pairs"])
    json.dumps(result)  # the whole document is JSON


def test_pair_orders_are_abba_blocks_with_a_random_phase():
    for key in ("s/x", "s/y", "s/z"):
        orders = [ab_pairs.pair_order(3, key, i) for i in range(20)]
        assert orders.count("AB") == 10 and all(orders[i] != orders[i + 1] for i in range(19))
    phases = {ab_pairs.pair_order(3, f"s/{k}", 0) for k in range(40)}
    assert phases == {"AB", "BA"}


def test_unsupported_on_one_side_is_an_outcome_change_and_packages_that_differ_are_listed(tmp_path):
    result, _ = run_fake(tmp_path, TIMES, TIMES, b={"unsupported": {"c3"}, "packages": {"torch": "2.14.0"}},
                         b_env={"EXTRA": "1"})
    assert {(o["case"], o["kind"]) for o in result["outcomes"]} == {("s/c3", "coverage-lost")}
    assert "s/c3" not in {c["key"] for c in result["cases"] if c["time"]}
    assert "package torch: 2.13.0 -> 2.14.0" in result["differences"]
    assert "env EXTRA: (unset) -> 1" in result["differences"]
    text = to_markdown(result)
    assert "package torch: 2.13.0 -> 2.14.0" in text and "coverage-lost" in text


def test_too_few_pairs_is_inconclusive_never_a_verdict(tmp_path):
    slower = {k: v * 1.5 for k, v in TIMES.items()}
    result, _ = run_fake(tmp_path, TIMES, slower, pairs=5)  # 5 pairs: p >= 2/32, never under 0.01
    assert set(verdicts(result).values()) == {"inconclusive"} and not result["regression"]


def test_resume_keeps_finished_cases_and_continues_a_case_from_its_last_pair(tmp_path):
    machine = Machine()
    times = {"c0": 0.01, "c1": 0.02}
    journal = PairJournal(tmp_path / "ab.jsonl")
    h = header(pairs=10)
    # a first run that measured c0 and 4 pairs of c1, then died
    first = {"A": FakeWorker(machine, times), "B": FakeWorker(machine, times)}
    journal.append({**h, "environments": {n: first[n].serve({"op": "env"})["env"] for n in "AB"}})
    case0 = {"nodeid": "bench.py::t[c0]", "suite": "s", "id": "c0"}
    journal.append(ab_pairs.measure_case(case0, first, PairSettings(pairs=10), [], journal.append))
    c1 = {"nodeid": "bench.py::t[c1]", "suite": "s", "id": "c1"}
    ab_pairs.measure_case(c1, first, PairSettings(pairs=4), [], journal.append)  # its pairs, but no case line
    with open(journal.path, "a") as f:
        f.write('{"type": "pair", "key": "s/c1", "i": 4, "ord')  # killed mid-write
    second = {"A": FakeWorker(machine, times), "B": FakeWorker(machine, times)}
    result = ab.run(h, second, journal, Quiet(), fresh=False)
    assert not any(r.get("nodeid") == "bench.py::t[c0]" for r in second["A"].requests if r["op"] == "build")
    c1_result = next(c for c in result["cases"] if c["id"] == "c1")
    assert [p["i"] for p in c1_result["pairs"]] == list(range(10))
    # the 6 missing pairs, one request per call: K calls of B in each
    assert sum(r["op"] == "time" for r in second["B"].requests) == 6 * c1_result["rounds_per_sample"]
    assert all(r["rounds"] == 1 for r in second["B"].requests if r["op"] == "time")


def test_resume_refuses_a_side_whose_packages_changed(tmp_path):
    machine = Machine()
    journal = PairJournal(tmp_path / "ab.jsonl")
    h = header()
    journal.append({**h, "environments": {"A": {"packages": {"torch": "2.13.0"}}, "B": {"packages": {"torch": "2.13.0"}}}})
    workers = {"A": FakeWorker(machine, TIMES), "B": FakeWorker(machine, TIMES, packages={"torch": "2.14.0"})}
    with pytest.raises(ab.BadInput, match="side B's packages changed"):
        ab.run(h, workers, journal, Quiet(), fresh=False)


def test_rounds_per_sample_sized_from_the_faster_side():
    s = PairSettings(sample_time_s=0.05, max_rounds_per_sample=100)
    assert ab_pairs.rounds_per_sample([0.01, 0.02], s) == 5
    assert ab_pairs.rounds_per_sample([0.3], s) == 3  # a slow case still gets the floor of calls per sample
    assert ab_pairs.rounds_per_sample([1e-6], s) == 100
    assert ab_pairs.rounds_per_sample([], s) == 3
    assert ab_pairs.rounds_per_sample([0.3], PairSettings(min_rounds_per_sample=1)) == 1
    with pytest.raises(ValueError):
        PairSettings(min_rounds_per_sample=200, max_rounds_per_sample=100)


def test_a_sample_is_the_fastest_of_its_calls_and_every_call_is_kept(tmp_path):
    # a neighbour that takes the core for part of a call only adds time: the fastest call is the sample
    assert ab_pairs.sample_of([0.031, 0.155, 0.047]) == 0.031
    result, _ = run_fake(tmp_path, TIMES, TIMES, pairs=6)
    for case in result["cases"]:
        assert case["rounds_per_sample"] >= 3
        for p in case["pairs"]:
            assert p["a_s"] == min(p["a_samples_s"]) and p["b_s"] == min(p["b_samples_s"])
            assert len(p["a_samples_s"]) == len(p["b_samples_s"]) == case["rounds_per_sample"]


def test_significant_but_within_the_threshold_is_same(tmp_path):
    # +3% on every case: the pairs see it clearly (noise 2%), but it is under the 5% threshold
    result, _ = run_fake(tmp_path, TIMES, {k: v * 1.03 for k, v in TIMES.items()}, pairs=30)
    cases = [c["time"] for c in result["cases"]]
    assert all(c["verdict"] == "same" for c in cases) and not result["regression"]
    assert sum(c["p_holm"] < 0.01 and c["note"] == "significant but within the threshold" for c in cases) >= 8


def test_a_same_code_run_false_alarms_rarely_whatever_the_drift(tmp_path):
    # 20 simulated A/A runs of 10 cases under the drifting machine (fixed seeds): not one false alarm
    alarms = 0
    for seed in range(20):
        machine = Machine(seed)
        workers = {"A": FakeWorker(machine, TIMES), "B": FakeWorker(machine, TIMES)}
        h = header(pairs=12)
        h["pair_settings"]["seed"] = seed
        result = ab.run(h, workers, PairJournal(tmp_path / f"aa{seed}.jsonl"), Quiet(), fresh=True)
        alarms += result["regression"]
    assert alarms == 0


class BurstyMachine:
    """A machine shared with bursty neighbours: each call is, with probability 0.3, slowed 1.5-5x for the part
    of it a neighbour held the core (contention only adds time), independently of the side that made it."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def slowdown(self):
        hit = self.rng.random() < 0.3
        return (float(self.rng.uniform(1.5, 5.0)) if hit else 1.0) * float(self.rng.lognormal(0.0, 0.01))


def bursty_trials(tmp_path, b_times, **pair_settings):
    """(slower verdicts per seed) over 5 seeds of 20 pairs under the bursty machine."""
    out = []
    for seed in range(5):
        machine = BurstyMachine(seed)
        workers = {"A": FakeWorker(machine, TIMES), "B": FakeWorker(machine, b_times)}
        h = header(pairs=20)
        h["pair_settings"].update(seed=seed, **pair_settings)
        journal = PairJournal(tmp_path / f"bursty-{len(list(tmp_path.iterdir()))}.jsonl")
        out.append({k for k, x in verdicts(ab.run(h, workers, journal, Quiet(), fresh=True)).items() if x != "same"})
    return out


def test_bursty_neighbours_neither_false_alarm_nor_hide_a_ten_percent_slowdown(tmp_path):
    planted = {"c1", "c4", "c8"}
    slower = {k: v * (1.10 if k in planted else 1.0) for k, v in TIMES.items()}
    assert bursty_trials(tmp_path, TIMES) == [set()] * 5  # A/A: nothing flagged
    flagged = bursty_trials(tmp_path, slower)
    assert all(f <= planted for f in flagged)  # nothing but the planted cases
    assert sum(len(f) for f in flagged) >= 13  # of 15 (14 when this was written)
    # one call per sample (the median of K=1 calls, as before) is what the bursts defeat (0 of 15)
    one_call = bursty_trials(tmp_path, slower, min_rounds_per_sample=1, sample_time_s=1e-3)
    assert sum(len(f) for f in one_call) <= 3
