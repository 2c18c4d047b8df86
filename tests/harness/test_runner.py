import time

import pytest
import torch

from bench_lib.harness import profiles, runner
from bench_lib.harness.workload import Case, CaseFailed, Context, Unsupported, Workload

CPU = torch.device("cpu")
QUICK = profiles.get("quick")


def ctx(profile=QUICK):
    return Context(CPU, profile)


def case(i="c"):
    return Case("t", i, {"x": 1})


def test_ok_record_has_time_memory_and_derived_metrics():
    calls = []

    def build(c, x):
        return Workload(lambda: calls.append(1), metrics={"flop": 100}, check=lambda: {"max_rel_error": 0.0},
                        derive=lambda t: {"tflops": 100 / t / 1e12}, time_metric="step_s")

    rec = runner.run_case(build, case(), ctx())
    m = rec["metrics"]
    assert rec["outcome"] == "ok" and rec["reason"] is None
    assert m["step_s"] == m["time_s"] and m["rounds"] == len(rec["samples_s"]) >= QUICK.min_rounds
    assert m["warmup_rounds"] == QUICK.warmup_rounds
    assert m["tflops"] == pytest.approx(100 / m["time_s"] / 1e12)
    assert m["peak_bytes"] == rec["memory"]["cpu_peak_rss_bytes"] and m["extra_peak_bytes"] >= 0
    # a sub-microsecond call is timed in blocks lasting at least sample_min_s, on the host clock
    assert m["calls_per_sample"] > 100 and m["timer"] == "perf_counter" and m["l2_flush_bytes"] == 0
    # warmup (incl. the block that refined the estimate) + timed blocks + one untimed memory repeat
    assert m["warmup_calls"] > QUICK.warmup_rounds
    assert len(calls) == m["warmup_calls"] + m["rounds"] * m["calls_per_sample"] + 1
    assert "energy_j" not in m  # no energy window on CPU


def test_forced_rounds_and_series():
    def build(c, x):
        w = Workload(lambda: None, rounds=1)
        w.series["loss_curve"] = [3.0, 2.0]
        return w

    rec = runner.run_case(build, case(), ctx())
    assert rec["metrics"]["rounds"] == 1 and rec["series"] == {"loss_curve": [3.0, 2.0]}


def test_unsupported_keeps_its_reason():
    rec = runner.run_case(lambda c, x: Unsupported("flash-attn not installed"), case(), ctx())
    assert (rec["outcome"], rec["reason"]) == ("unsupported", "flash-attn not installed")


def test_wrong_result_is_error_with_metrics():
    def check():
        raise CaseFailed("max_rel_error 0.3 over tolerance 0.01", {"max_rel_error": 0.3})

    rec = runner.run_case(lambda c, x: Workload(lambda: None, check=check), case(), ctx())
    assert rec["outcome"] == "error" and rec["metrics"]["max_rel_error"] == 0.3
    assert "over tolerance" in rec["reason"]


def test_timeout_cuts_a_python_hang():
    start = time.monotonic()
    rec = runner.run_case(lambda c, x: Workload(lambda: time.sleep(60)), case(), ctx(), timeout_s=0.5)
    assert rec["outcome"] == "timeout" and time.monotonic() - start < 10


def test_oom_is_caught_and_memory_released():
    held = []

    def build(c, x):
        held.append(torch.ones(32 * 2**20 // 4))
        torch.empty(10**13 // 4)  # the allocator refuses 40 TB

    rec = runner.run_case(build, case(), ctx())
    assert rec["outcome"] == "oom" and "allocate" in rec["reason"]
    # the next case runs normally
    assert runner.run_case(lambda c, x: Workload(lambda: None), case("next"), ctx())["outcome"] == "ok"


def test_teardown_runs_whatever_the_outcome():
    torn = []
    runner.run_case(lambda c, x: Workload(lambda: 1 / 0, teardown=lambda: torn.append(1)), case(), ctx())
    assert torn == [1]


def test_smoke_profile_runs_the_body_once_per_phase():
    calls = []
    rec = runner.run_case(lambda c, x: Workload(lambda: calls.append(1)), case(), ctx(profiles.get("smoke")))
    assert rec["metrics"]["rounds"] == 1 and len(calls) == 2  # one timed round + the memory repeat
    assert rec["metrics"]["calls_per_sample"] == 1 and rec["metrics"]["warmup_calls"] == 0


def test_around_context_is_entered_once_outside_every_call():
    state = {"inside": False, "entered": 0, "calls_outside": 0, "calls": 0}

    class Around:
        def __enter__(self):
            state["inside"] = True
            state["entered"] += 1

        def __exit__(self, *exc):
            state["inside"] = False

    def fn():
        state["calls"] += 1
        state["calls_outside"] += not state["inside"]

    def build(c, x):
        return Workload(fn, check=lambda: fn() or {}, around=Around)

    rec = runner.run_case(build, case(), ctx())
    assert rec["outcome"] == "ok"
    assert state["entered"] == 1 and state["calls"] > QUICK.min_rounds and state["calls_outside"] == 0
    assert not state["inside"]


def test_around_context_is_left_when_the_case_fails():
    left = []

    class Around:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            left.append(exc[0])

    rec = runner.run_case(lambda c, x: Workload(lambda: 1 / 0, around=Around), case(), ctx())
    assert rec["outcome"] == "error" and left == [ZeroDivisionError]


class _Probe:
    result, peak_bytes, extra_bytes = {"primary": "torch_peak_allocated_bytes"}, 1, 0


class _Counter:
    """NVML with a counter at 100 W that updates every 10 ms of real time (tests: harness energy)."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        return bus

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return int((time.perf_counter() - self.t0) // 0.01) * 1000  # 1 J per 10 ms step


@pytest.fixture
def fake_cuda(monkeypatch):
    from bench_lib.harness import device as devices
    from bench_lib.harness import energy, memory, nvml, timing

    class Event:
        def record(self):
            self.at = time.perf_counter()

        def elapsed_time(self, end):
            return (end.at - self.at) * 1e3

    monkeypatch.setattr(devices, "synchronize", lambda device: None)
    monkeypatch.setattr(devices, "release_memory", lambda device: None)
    monkeypatch.setattr(timing, "new_event", Event)
    monkeypatch.setattr(memory, "measure", lambda fn, device: fn() or _Probe())
    monkeypatch.setattr(energy, "_import_pynvml", _Counter)
    monkeypatch.setattr(nvml, "cuda_identity", lambda device: ("00000000:18:00.0", None))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return Context(torch.device("cuda:0"), profiles.Profile("e", 1, 3, 3, 0.01, 60, energy_window_s=0.1))


def test_cuda_case_gets_event_timing_and_its_own_energy_window(fake_cuda):
    calls = []
    rec = runner.run_case(lambda c, x: Workload(lambda: calls.append(time.sleep(0.002))), case(), fake_cuda)
    m = rec["metrics"]
    assert rec["outcome"] == "ok", rec["reason"]
    assert m["timer"] == "cuda_events" and m["rounds"] == 3
    assert m["energy_window_s"] >= 0.1 and m["energy_counter_updates"] >= 2
    timed = m["warmup_calls"] + m["rounds"] * m["calls_per_sample"] + 1
    assert len(calls) == timed + m["energy_window_calls"]  # the window is its own repeat of the call
    assert m["energy_j"] > 0 and m["avg_power_w"] == pytest.approx(100, rel=0.5)


def test_end_to_end_case_gets_no_energy_window(fake_cuda):
    calls = []
    rec = runner.run_case(lambda c, x: Workload(lambda: calls.append(1), rounds=1), case(), fake_cuda)
    assert rec["metrics"]["energy_j"] is None and "end-to-end" in rec["metrics"]["energy_reason"]
    assert len(calls) == 2  # one timed round and the memory repeat, nothing more


def test_on_timing_brackets_exactly_the_timed_calls(fake_cuda):
    # the per-token decode stamps rely on it: warm-up before "start", the memory repeat and the energy
    # window after "stop", and between them rounds x calls_per_sample calls
    log = []
    work = Workload(lambda: log.append("call") or time.sleep(0.002), memory_fn=lambda: log.append("memory"),
                    on_timing=log.append)
    rec = runner.run_case(lambda c, x: work, case(), fake_cuda)
    m = rec["metrics"]
    start, stop = log.index("start"), log.index("stop")
    assert start == m["warmup_calls"] and log[:start] == ["call"] * start
    assert log[start + 1:stop] == ["call"] * (m["rounds"] * m["calls_per_sample"])
    assert "memory" in log[stop:] and log[stop:].count("call") == m["energy_window_calls"] > 0
