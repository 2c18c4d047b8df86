import pandas as pd
import pytest

from bench_lib.report import aggregate, claims, load, tidy


def _tables(*paths):
    runs, _ = load.load(paths)
    cases = tidy.tidy(runs)
    return aggregate.medians(cases), cases


@pytest.fixture(scope="module")
def synthetic(data_dir):
    return _tables(data_dir / "cpu-a.json", data_dir / "gpu-h200.json")


def verdicts(table):
    return dict(zip(table["number"], table["verdict"], strict=True))


def test_nine_claims_hold_on_the_synthetic_runs(synthetic):
    table = claims.check(*synthetic)
    assert list(table["number"]) == list(range(1, 10))
    assert set(table["verdict"]) == {claims.HOLDS}, table[["claim", "measured"]].to_string()
    measured = dict(zip(table["number"], table["measured"], strict=True))
    assert "16.00 bytes/param" in measured[2] and "112.0 GB" in measured[2]
    assert "FP32 (fp32, 32.00 bits): 28.0 GB" in measured[3] and "NF4 (nf4, 4.52 bits): 4.0 GB" in measured[3]
    assert "eager n^2.00, sdpa_flash n^1.00" in measured[5] and "too short" not in measured[5]
    assert "random weights" in measured[7]
    assert "peak 6.9 GB" in measured[9]


def test_without_a_gpu_run_qlora_7b_is_not_measured(data_dir):
    table = claims.check(*_tables(data_dir / "cpu-a.json"))
    assert verdicts(table)[9] == claims.UNMEASURED


def test_nothing_measured_gives_not_measured_everywhere(data_dir):
    med, cases = _tables(data_dir / "real-smoke-calibration.json")
    assert set(claims.check(med, cases)["verdict"]) == {claims.UNMEASURED}


def test_lora_slower_than_full_is_said_plainly(synthetic):
    med, cases = synthetic
    med = med.copy()
    lora = (med["method"] == "lora") & (med["model"] == "llama-7m")
    med.loc[lora, "step_s"] = med.loc[lora, "step_s"] * 2
    table = claims.check(med, cases)
    row = table[table["number"] == 8].iloc[0]
    assert row["verdict"] == claims.FAILS and "NOT faster per step here on llama-7m" in row["measured"]


def test_flash_memory_growing_quadratically_fails_claim_5(synthetic):
    med, cases = synthetic
    med = med.copy()
    flash = med["impl"] == "sdpa_flash"
    med.loc[flash, "extra_peak_bytes"] = med.loc[flash, "extra_peak_bytes"] * med.loc[flash, "seq_len"]
    assert verdicts(claims.check(med, cases))[5] == claims.FAILS


def test_flat_rank_sweep_fails_diminishing_returns(synthetic):
    med, cases = synthetic
    med = med.copy()
    conv = (med["group"] == "convergence") & (med["method"] == "lora")
    med.loc[conv, "final_loss"] = 1.0 - 0.01 * med.loc[conv, "rank"]  # 32->64 gains more than 4->8
    assert verdicts(claims.check(med, cases))[6] == claims.FAILS


def test_qlora_oom_on_gpu_fails_claim_9(synthetic):
    med, cases = synthetic
    cases = cases.copy()
    q = cases["case_id"] == "llama-7b-qlora-r8-attn-ckpt"
    cases.loc[q, "outcome"] = "oom"
    row = claims.check(med, cases).iloc[8]
    assert row["verdict"] == claims.FAILS and "oom" in row["measured"]


def test_unexpected_shape_is_shown_not_raised():
    med = pd.DataFrame({"suite": ["precision"], "precision": ["nf4"], "kl_vs_ref": ["high"], "top1_agreement": [0.9],
                        "machine": ["m"], "machine_slug": ["m"], "case_id": ["c"], "outcome": ["ok"]})
    table = claims.check(med, med)
    assert table.iloc[6]["verdict"] == claims.UNMEASURED and "could not be checked" in table.iloc[6]["measured"]


def test_real_quick_attention_run(data_dir):
    table = claims.check(*_tables(data_dir / "quick-cal-attn.json"))
    v = verdicts(table)
    assert v[4] == claims.HOLDS and v[5] == claims.HOLDS
    assert {v[n] for n in (1, 2, 3, 6, 7, 8, 9)} == {claims.UNMEASURED}
    measured = table.set_index("number")["measured"]
    # both sweeps (fwd 256-4096, fwd_bwd 256-2048) have four or more lengths and are judged
    assert "fwd fp32 (256–4096): eager n^1.98, sdpa_flash n^1.00 (all lengths: n^1.80, n^1.15)" in measured[5]
    assert "fwd_bwd fp32 (256–2048): eager n^1.97, sdpa_flash n^1.00" in measured[5]
