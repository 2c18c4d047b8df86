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
    # check once + warmup + timed rounds + one untimed memory repeat
    assert len(calls) == QUICK.warmup_rounds + m["rounds"] + 1


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
