import math

import numpy as np
import pandas as pd
import pytest

from bench_lib.report import aggregate, load, tidy


@pytest.fixture(scope="module")
def cases(data_dir):
    runs, _ = load.load([data_dir / "cpu-a.json", data_dir / "cpu-b.json"])
    return tidy.tidy(runs)


@pytest.mark.parametrize("slope", [0.5, 1.0, 2.0, 2.7])
def test_fit_exponent_recovers_known_slope(slope):
    rng = np.random.default_rng(0)
    x = np.array([256, 512, 1024, 2048, 4096, 8192])
    y = 3e-7 * x**slope * np.exp(rng.normal(0, 0.05, len(x)))  # ~5% multiplicative noise
    k, r2, n = aggregate.fit_exponent(x, y)
    assert abs(k - slope) < 0.05 and r2 > 0.98 and n == 6


def test_fit_exponent_drops_unusable_points():
    k, _, n = aggregate.fit_exponent([1, 2, 4, 8], [0.0, 4.0, 16.0, float("nan")])
    assert n == 2 and k == pytest.approx(2.0)
    assert math.isnan(aggregate.fit_exponent([4, 4], [1.0, 2.0])[0])


def test_scaling_exponents_are_per_sequence():
    # constant tokens per batch: batch * seq = 8192. Per sequence, memory ~ s^2 materialized, ~ s flash.
    seq = np.array([512, 1024, 2048, 4096])
    rows = []
    for impl, per_seq in (("eager", lambda s: 16.0 * s**2), ("sdpa_flash", lambda s: 4096.0 * s)):
        for s in seq:
            b = 8192 // s
            rows.append({"machine": "m", "impl": impl, "direction": "fwd", "dtype": "fp32", "seq_len": s,
                         "batch": b, "extra_peak_bytes": b * per_seq(s), "time_s": b * 1e-9 * s**2})
    fits = aggregate.scaling_exponents(pd.DataFrame(rows))
    got = {(r.impl, r.metric): r.exponent for r in fits.itertuples()}
    assert got[("eager", "extra_peak_bytes")] == pytest.approx(2.0, abs=0.05)
    assert got[("sdpa_flash", "extra_peak_bytes")] == pytest.approx(1.0, abs=0.05)
    assert got[("eager", "time_s")] == pytest.approx(2.0, abs=0.05)
    assert set(fits["n_points"]) == {4}


def test_medians_over_runs_of_one_machine(cases):
    doubled = pd.concat([cases, cases.assign(run="again", time_s=cases["time_s"] * 3)])
    med = aggregate.medians(doubled)
    assert len(med) == (cases["outcome"] == "ok").sum()
    assert set(med["n_runs"]) == {2}
    one = cases[(cases["outcome"] == "ok")].iloc[0]
    got = med[(med["machine"] == one["machine"]) & (med["case_id"] == one["case_id"])].iloc[0]
    assert got["time_s"] == pytest.approx(one["time_s"] * 2)  # median of t and 3t


def test_ratio_to_baseline_pairs_same_workload(cases):
    med = aggregate.medians(cases)
    out = aggregate.ratio_to_baseline(med, "attention", "eager", "time_s")
    m = med["machine"].iloc[0]
    def t(impl, s):
        return med[(med["machine"] == m) & (med["impl"] == impl) & (med["seq_len"] == s) & (med["direction"] == "fwd")]["time_s"].iloc[0]
    row = out[(out["machine"] == m) & (out["impl"] == "sdpa_flash") & (out["seq_len"] == 1024) & (out["direction"] == "fwd")]
    assert row["time_s_vs_baseline"].iloc[0] == pytest.approx(t("sdpa_flash", 1024) / t("eager", 1024))
    # eager ran out of memory at 4096: no partner, NaN rather than a made-up ratio
    lone = out[(out["impl"] == "sdpa_flash") & (out["seq_len"] == 4096)]
    assert lone["time_s_vs_baseline"].isna().all()


def test_finetune_ratio_ignores_rank_and_targets(cases):
    med = aggregate.medians(cases)
    out = aggregate.ratio_to_baseline(med, "finetune", "full", "step_s")
    lora = out[(out["case_id"] == "llama-7m-lora-r8-attn") & (out["machine"] == med["machine"].iloc[0])].iloc[0]
    full = med[(med["case_id"] == "llama-7m-full") & (med["machine"] == lora["machine"])].iloc[0]
    assert lora["step_s_vs_baseline"] == pytest.approx(lora["step_s"] / full["step_s"])


def test_fraction_of_measured_peak_uses_same_run_calibration(cases):
    out = aggregate.fraction_of_measured_peak(cases)
    ceilings = aggregate.calibration_ceilings(cases)
    assert len(ceilings) == 4  # two runs x (fp32, bf16)
    row = out[(out["run"] == "cpu-b") & (out["case_id"] == "eager-fwd-fp32-s512-b8-h4-d64")].iloc[0]
    peak = ceilings[(ceilings["run"] == "cpu-b") & (ceilings["dtype"] == "fp32")]["ceiling_tflops"].iloc[0]
    assert row["frac_of_measured_peak"] == pytest.approx(row["tflops"] / peak)
    cal = out[(out["run"] == "cpu-a") & (out["case_id"] == "matmul-fp32-n1024")].iloc[0]
    assert cal["frac_of_measured_peak"] == pytest.approx(1.0)


def test_bytes_per_param_of_full_fp32_adam_is_16(cases):
    out = aggregate.bytes_per_param(aggregate.medians(cases))
    full = out[out["case_id"] == "llama-7m-full"]
    assert full["static_bytes_per_param"].tolist() == pytest.approx([16.0, 16.0])
    assert (full["peak_bytes_per_param"] > 16).all()


def test_machine_comparison_ratios(cases):
    comp = aggregate.machine_comparison(aggregate.medians(cases))
    assert set(comp["machine"]) == set(cases["machine"]) and comp["reference"].nunique() == 1
    ref = comp["reference"].iloc[0]
    assert (comp.loc[comp["machine"] == ref, "ratio_to_reference"] == 1).all()
    other = comp[comp["machine"] != ref]
    assert len(other) == 67  # every ok case of the grid ran on both
    assert other["ratio_to_reference"].median() == pytest.approx(0.6, rel=0.05)  # cpu-b is 0.6x the time
    one = aggregate.medians(cases[cases["run"] == "cpu-a"])
    assert aggregate.machine_comparison(one).empty


def test_outcome_counts_and_reasons(cases):
    counts = aggregate.outcome_counts(cases).set_index("suite")
    assert list(counts.columns) == ["ok", "unsupported", "oom", "error", "timeout", "crashed", "total"]
    assert counts.loc["attention", "oom"] == 4 and counts.loc["finetune", "crashed"] == 2
    assert counts["total"].sum() == len(cases)
    reasons = aggregate.outcome_reasons(cases)
    fp16 = reasons[(reasons["suite"] == "precision")].iloc[0]
    assert fp16["outcome"] == "unsupported" and fp16["n_cases"] == 4 and "fp16" in fp16["reason"]


def test_fraction_recorded_by_the_suite_is_kept(cases):
    rows = cases.assign(frac_of_measured_peak=float("nan"))
    rows.loc[rows["case_id"] == "eager-fwd-fp32-s512-b8-h4-d64", "frac_of_measured_peak"] = 0.123
    out = aggregate.fraction_of_measured_peak(rows)
    kept = out[out["case_id"] == "eager-fwd-fp32-s512-b8-h4-d64"]["frac_of_measured_peak"]
    assert (kept == 0.123).all()
    assert out.loc[out["case_id"] == "eager-fwd-fp32-s256-b16-h4-d64", "frac_of_measured_peak"].notna().all()
