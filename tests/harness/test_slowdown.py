"""The test-only planted slowdown: parsing, matching, the spin, and its one hook where the timed callable is made."""

import time

import pytest
import torch

from bench_lib.harness import profiles, runner, slowdown
from bench_lib.harness.workload import Case, Context, Unsupported, Workload

CPU = torch.device("cpu")


def test_parse_rules_and_reject_bad_ones_with_an_example():
    assert slowdown.parse("attention/eager-*=1.1, precision/*=1.05") == [("attention/eager-*", 1.1),
                                                                          ("precision/*", 1.05)]
    assert slowdown.parse(None) == [] and slowdown.parse("") == []
    for bad in ("attention/*", "=1.1", "attention/*=fast", "attention/*=0.9"):
        with pytest.raises(ValueError, match="GLOB=FACTOR"):
            slowdown.parse(bad)


def test_first_matching_glob_wins_and_the_rest_are_untouched():
    rules = slowdown.parse("attention/eager-*=1.2,attention/*=1.1")
    assert slowdown.factor_for("attention/eager-fwd-fp32-s256", rules) == 1.2
    assert slowdown.factor_for("attention/sdpa_math-fwd", rules) == 1.1
    assert slowdown.factor_for("precision/llama-7m-fp32", rules) == 1.0


def test_spin_lasts_factor_minus_one_times_the_calls_own_duration():
    now = [0.0]

    def clock():
        now[0] += 0.001  # every reading of the clock costs 1 ms of fake time
        return now[0]

    def work():
        now[0] += 0.100  # the real work: 100 ms
        return "out"

    synced = []
    slowed = slowdown.spinning(work, 1.5, lambda: synced.append(1), clock)
    assert slowed() == "out" and synced == [1]
    # start read at 1 ms; the call's own duration read as 101 ms (work + one tick); the spin stops at the
    # first reading at or past 1 ms + 1.5 x 101 ms = 152.5 ms
    assert 0.1525 <= now[0] < 0.1525 + 0.001


def test_planted_wraps_only_matching_workloads_and_leaves_memory_and_unsupported_alone():
    fn = lambda: None  # noqa: E731
    case = Case("attention", "eager-x", {})
    env = {slowdown.ENV_VAR: "attention/eager-*=2"}
    work = slowdown.planted(Workload(fn), case, CPU, env)
    assert work.fn is not fn and work.memory_fn is fn
    assert slowdown.planted(Workload(fn), Case("attention", "sdpa-x", {}), CPU, env).fn is fn
    assert slowdown.planted(Workload(fn), case, CPU, {}).fn is fn
    gone = Unsupported("no kernel")
    assert slowdown.planted(gone, case, CPU, env) is gone


def test_run_case_times_the_planted_callable(monkeypatch):
    # the hook sits where run_case builds the workload, so `effbench run` and pytest runs see it too
    monkeypatch.setenv(slowdown.ENV_VAR, "t/slow=2")
    ctx = Context(CPU, profiles.get("quick"))
    build = lambda c, x: Workload(lambda: time.sleep(0.01))  # noqa: E731
    slow = runner.run_case(build, Case("t", "slow", {}), ctx)
    # every sample is the sleep (>= 10 ms) plus a spin as long as the call itself: never under 20 ms
    assert slow["outcome"] == "ok" and min(slow["samples_s"]) >= 0.02
