"""The gate's own sensitivity check, and the power the ``full`` profile gives the gate."""

import argparse

import numpy as np
import pytest
from runfactory import drifting_runs, synthetic_run, write

from bench_lib.gate import sensitivity
from bench_lib.gate.compare import Settings, compare_time
from bench_lib.harness import profiles
from bench_lib.harness.runfile import CaseRun


def run_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sensitivity.add_arguments(parser)
    return sensitivity.main(parser.parse_args(argv))


def test_same_code_runs_with_known_noise(tmp_path, capsys):
    # three runs drawn from one distribution (2% log-normal noise, 15 rounds): no drift between runs
    paths = [write(tmp_path, f"r{i}.json", synthetic_run(seed=i, noise=0.02)) for i in range(3)]
    ev = sensitivity.evaluate(paths, Settings(), factors=(1.02, 1.10, 1.30))
    assert ev["pairs"] == 6 and ev["case_comparisons"] == 36
    assert ev["false_alarm_pairs"] == []
    assert ev["detection"][1.02] < 0.2  # under the 5% threshold: never a regression, whatever the test says
    assert ev["detection"][1.10] >= 0.9 and ev["detection"][1.30] == 1.0
    assert ev["self_detection"][1.02] == 0.0 and ev["self_detection"][1.10] == 1.0 and ev["unjudged_pairs"] == 0
    assert 0.015 < ev["median_noise"] < 0.04  # relative IQR of a 2% log-normal is 1.349 * 0.02 = 2.7%
    assert run_main(paths + ["--factors", "1.1,1.3"]) == 0
    out = capsys.readouterr().out
    assert "(exit 1 between same-code runs): 0 of 6 trials" in out and "unsteady machine, exit 2): 0 of 6" in out
    assert "against the same run: +10%" in out


def test_needs_two_runs(tmp_path, capsys):
    assert run_main([write(tmp_path, "r.json", synthetic_run(1))]) == 2
    assert "at least 2 runs" in capsys.readouterr().err
    paths = [write(tmp_path, f"r{i}.json", synthetic_run(i)) for i in range(4)]
    assert run_main(paths + ["--baseline-runs", "3", "--confirm"]) == 2
    assert "at least 5 runs" in capsys.readouterr().err


def test_trials_never_let_a_candidate_inform_its_own_baseline():
    for bases, cand, rerun in sensitivity.trials(6, 3) + sensitivity.trials(6, 3, confirm=True):
        assert cand not in bases and rerun not in bases and rerun != cand and len(set(bases)) == 3
    assert len(sensitivity.trials(4, 3)) == 4 and len(sensitivity.trials(3, 1)) == 6
    assert len(sensitivity.trials(6, 3, confirm=True)) == 6


def test_drifting_machine_needs_history_and_a_rerun(tmp_path):
    # 6% drift between runs, 1% within: one baseline run false-alarms; three plus a rerun do not
    paths = [write(tmp_path, f"r{i}.json", r) for i, r in enumerate(drifting_runs(5, n_cases=30, drift=0.06, seed=9))]
    single = sensitivity.evaluate(paths, Settings(), factors=(1.5,))
    assert single["false_alarm_pairs"] or single["unjudged_pairs"]
    gate = sensitivity.evaluate(paths, Settings(), factors=(1.1, 3.0), baseline_runs=3, confirm=True)
    assert gate["false_alarm_pairs"] == [] and gate["unjudged_pairs"] == 0
    # three runs pin a 6% drift down loosely: the typical case's threshold is ~50%, +10% hides, 3x is caught
    assert 0.2 < gate["median_resolution"] < 1.0
    assert gate["detection"][3.0] >= 0.9 and gate["detection"][1.1] < 0.1


def detection_rate(rounds: int, rel_iqr: float, factor: float, trials: int = 200) -> float:
    """Fraction of simulated nights in which a true ``factor`` slowdown is a regression (log-normal noise)."""
    rng = np.random.default_rng(0)
    sigma = rel_iqr / 1.349  # IQR of a normal = 1.349 sigma
    hits = 0
    for _ in range(trials):
        base = CaseRun("c", samples_s=tuple(rng.lognormal(0.0, sigma, rounds)))
        cand = CaseRun("c", samples_s=tuple(factor * rng.lognormal(0.0, sigma, rounds)))
        hits += compare_time("c", base, cand, Settings()).regression
    return hits / trials


def test_full_profile_rounds_catch_a_10pct_slowdown_at_3pct_noise():
    # nightly GPU cases typically show 1-3% relative IQR; the gate must catch +10% there in >= 95% of nights
    rounds = profiles.PROFILES["full"].min_rounds
    assert detection_rate(rounds, 0.03, 1.10) >= 0.95
    assert detection_rate(rounds, 0.03, 1.00) <= 0.01  # and no alarm without a change


@pytest.mark.parametrize("rounds", [3, 4])
def test_fewer_than_five_rounds_can_never_fail_the_gate(rounds):
    assert detection_rate(rounds, 0.01, 2.0, trials=5) == 0.0
