"""Run-to-run drift from several baseline runs: the moderated thresholds, and the false-alarm rate they give."""

import math

import numpy as np
import pytest

from bench_lib.gate import drift, stats


def test_special_functions_match_known_values():
    euler_gamma = 0.5772156649015329
    assert drift.digamma(1.0) == pytest.approx(-euler_gamma, abs=1e-10)
    assert drift.digamma(0.5) == pytest.approx(-euler_gamma - 2 * math.log(2), abs=1e-10)
    assert drift.trigamma(1.0) == pytest.approx(math.pi**2 / 6, abs=1e-10)
    assert drift.trigamma(0.5) == pytest.approx(math.pi**2 / 2, abs=1e-10)
    assert drift.trigamma_inverse(math.pi**2 / 6) == pytest.approx(1.0, rel=1e-9)
    assert stats.t_quantile(0.975, 10) == pytest.approx(2.228138852, abs=1e-8)
    assert stats.t_quantile(0.995, 2) == pytest.approx(9.924843200, abs=1e-7)
    assert stats.t_quantile(0.05, 4) == pytest.approx(-2.131846786, abs=1e-8)


def _variances(rng, sds, runs):
    return [float(np.var(rng.normal(0.0, s, runs), ddof=1)) for s in sds]


def test_prior_fit_recovers_a_shared_drift_and_a_scattered_one(monkeypatch):
    rng = np.random.default_rng(1)
    shared = _variances(rng, [0.02] * 400, 3)
    sds = 0.02 * np.sqrt(5 / rng.chisquare(5, 3000))  # case drifts scattered as a scaled inverse chi^2 with d0 = 5
    scattered = _variances(rng, sds, 3)
    cautious = drift.fit_prior(shared, nu=2)[1], drift.fit_prior(scattered, nu=2)[1]
    monkeypatch.setattr(drift, "PRIOR_CAUTION", 0.0)  # the plain moment estimator (Smyth 2004)
    s0_sq, d0 = drift.fit_prior(shared, nu=2)
    assert d0 >= 50 and math.sqrt(s0_sq) == pytest.approx(0.02, rel=0.1)  # one drift for all: lean on the pool
    s0_sq, d0 = drift.fit_prior(scattered, nu=2)
    assert d0 == pytest.approx(5, rel=0.35) and math.sqrt(s0_sq) == pytest.approx(0.02, rel=0.1)
    # the default leans less on the pool than the point estimate says, never more
    assert cautious[0] < 50 and cautious[1] < d0 and cautious[0] > cautious[1]


def test_one_baseline_run_measures_no_drift():
    assert drift.estimate({"a": [0.0], "b": [1.0]}, runs=1, alpha=0.01) is None


def test_a_case_that_drifted_in_its_baseline_runs_gets_a_wider_threshold():
    rng = np.random.default_rng(2)
    logs = {f"steady-{k}": list(rng.normal(0.0, 0.02, 3)) for k in range(40)}
    logs["jumpy"] = [0.0, math.log(3.0), math.log(1.2)]  # like this machine's bf16 matmul
    model = drift.estimate(logs, runs=3, alpha=0.01)
    steady = np.median([model.cases[k].threshold for k in logs if k.startswith("steady")])
    assert model.cases["jumpy"].threshold > 5 * steady
    assert model.cases["jumpy"].sd == pytest.approx(float(np.std(logs["jumpy"], ddof=1)))
    assert 0.02 < steady < 0.25


def test_measured_in_fewer_runs_leans_on_the_pool():
    logs = {f"c{k}": [0.0, 0.01 * (k % 5), -0.01 * (k % 3)] for k in range(30)}
    logs["once"] = [0.5]
    model = drift.estimate(logs, runs=3, alpha=0.01)
    once = model.cases["once"]
    assert once.runs == 1 and once.sd is None and once.moderated_sd == pytest.approx(model.pooled_sd)


@pytest.mark.parametrize("heterogeneous", [False, True])
def test_same_code_nights_false_alarm_at_about_alpha(heterogeneous):
    """Simulated nights: 60 cases whose log medians drift normally (each with its own sd when heterogeneous);
    3 baseline runs, then a same-code candidate. A night false-alarms when any case's candidate median is
    past its drift threshold; that must happen in about alpha of the nights, not alpha x cases."""
    rng = np.random.default_rng(3)
    alpha, nights, cases, alarms = 0.05, 400, 60, 0
    for _ in range(nights):
        sds = 0.03 * np.sqrt(6 / rng.chisquare(6, cases)) if heterogeneous else np.full(cases, 0.03)
        logs = {f"c{k}": list(rng.normal(0.0, sds[k], 3)) for k in range(cases)}
        model = drift.estimate(logs, runs=3, alpha=alpha)
        cand = rng.normal(0.0, sds)
        alarms += any(cand[k] - np.mean(logs[f"c{k}"]) > math.log1p(model.cases[f"c{k}"].threshold)
                      for k in range(cases))
    assert alarms / nights <= 2 * alpha  # 0.05 nominal; the fitted prior adds a little
    assert alarms > 0  # the bound is not so wide that nothing ever crosses it
