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


def test_claims_hold_on_the_synthetic_runs_and_random_weights_decide_nothing(synthetic):
    table = claims.check(*synthetic)
    assert list(table["number"]) == list(range(1, 12))
    got = verdicts(table)
    assert {got[n] for n in (1, 2, 3, 4, 5, 6, 8, 9)} == {claims.HOLDS}, table[["claim", "measured"]].to_string()
    # these runs' nf4 quality is from random weights: it never decides claim 7; no merge or QLoRA convergence cases
    assert got[7] == got[10] == got[11] == claims.UNMEASURED
    measured = dict(zip(table["number"], table["measured"], strict=True))
    assert "16.00 bytes/param" in measured[2] and "112.0 GB" in measured[2]
    assert "FP32 (fp32, 32.00 bits): 28.0 GB" in measured[3] and "NF4 (nf4, 4.52 bits): 4.0 GB" in measured[3]
    assert "eager n^2.00, sdpa_flash n^1.00" in measured[5] and "too short" not in measured[5]
    assert "only random-weight nf4 cases" in measured[7] and "never decide" in measured[7]
    assert "peak 6.9 GB" in measured[9]


# ---------------------------------------------------------------- claim 7 on trained weights
def nf4_row(**over):
    row = {"suite": "precision", "precision": "nf4", "model": "trained-gpt2", "machine": "m", "machine_slug": "m",
           "synthetic_weights": False, "trained_weights": True, "kl_vs_ref": 0.01, "kl_vs_ref_ci_low": 0.008,
           "kl_vs_ref_ci_high": 0.012, "top1_agreement": 0.97, "top1_agreement_ci_low": 0.96,
           "top1_agreement_ci_high": 0.98, "quality_items": 32, "heldout_accuracy": 0.6, "heldout_accuracy_ci_low": 0.55,
           "heldout_accuracy_ci_high": 0.65, "heldout_accuracy_items": 400, "reference_heldout_accuracy": 0.61}
    return {**row, **over}


def claim7(*rows):
    med = pd.DataFrame(list(rows))
    return claims.nf4_quality(med, med)


def test_claim_7_holds_on_trained_weights_with_tight_intervals_and_prints_them():
    _, measured, verdict, basis = claim7(nf4_row())
    assert verdict == claims.HOLDS
    assert "KL 0.01 [0.008, 0.012] nats" in measured and "top-1 97.0% [96.0%, 98.0%]" in measured
    assert "60.0% [55.0%, 65.0%] on 400 items vs fp32 61.0%" in measured and "trained weights only" in basis


def test_claim_7_on_sixteen_task_items_is_inconclusive_and_says_why():
    _, measured, verdict, _ = claim7(nf4_row(heldout_accuracy=0.5, heldout_accuracy_ci_low=0.28,
                                             heldout_accuracy_ci_high=0.72, heldout_accuracy_items=16))
    assert verdict == claims.INCONCLUSIVE
    assert "16 task items give ±22.0%" in measured and "too few" in measured


def test_claim_7_fails_only_when_an_interval_lies_wholly_on_the_wrong_side():
    assert claim7(nf4_row(kl_vs_ref=0.3, kl_vs_ref_ci_low=0.2, kl_vs_ref_ci_high=0.4))[2] == claims.FAILS
    assert claim7(nf4_row(heldout_accuracy_ci_high=0.58))[2] == claims.FAILS  # clearly below fp32's 61%
    # straddling the KL threshold: neither holds nor fails
    assert claim7(nf4_row(kl_vs_ref=0.1, kl_vs_ref_ci_low=0.08, kl_vs_ref_ci_high=0.12))[2] == claims.INCONCLUSIVE


def test_claim_7_ignores_random_weight_rows_beside_trained_ones():
    bad_random = nf4_row(model="llama-7m", synthetic_weights=True, kl_vs_ref=1.2, kl_vs_ref_ci_low=1.1,
                         kl_vs_ref_ci_high=1.3, top1_agreement=0.24)
    _, measured, verdict, _ = claim7(bad_random, nf4_row())
    assert verdict == claims.HOLDS and "llama-7m" not in measured


# ---------------------------------------------------------------- claim 10: merge, claim 11: QLoRA vs LoRA
def merge_rows(merged_decode=1.0, within=True, unmerged_decode=1.3, base="fp32"):
    common = {"suite": "finetune", "group": "merge", "base": base, "machine": "m", "machine_slug": "m",
              "generate_s": 1.0, "generate_s_iqr": 0.01}
    return [{**common, "variant": "base", "decode_s": 1.0},
            {**common, "variant": "unmerged", "decode_s": unmerged_decode},
            {**common, "variant": "merged", "decode_s": merged_decode, "merge_max_abs_diff": 1e-6,
             "merge_tolerance": 1e-4, "merge_within_tolerance": within, "merge_top1_agreement": 1.0, "merge_s": 0.01}]


def test_merge_claim_verdicts():
    med = pd.DataFrame(merge_rows(1.02) + merge_rows(1.01, base="nf4", within=False))
    _, measured, verdict, _ = claims.merged_adapter_no_latency(med, med)
    assert verdict == claims.HOLDS, measured
    assert "fp32 base: decode merged/base 1.02×" in measured and "unmerged/base 1.30×" in measured
    assert "re-quantizes" in measured  # NF4's difference is reported, not judged against fp32's tolerance
    slow = pd.DataFrame(merge_rows(1.4))
    assert claims.merged_adapter_no_latency(slow, slow)[2] == claims.FAILS
    wrong = pd.DataFrame(merge_rows(1.0, within=False))
    assert claims.merged_adapter_no_latency(wrong, wrong)[2] == claims.FAILS


def conv_row(method, rank, loss, acc, lo, hi, weight_bytes, peak):
    return {"suite": "finetune", "group": "convergence", "method": method, "rank": rank, "machine": "m",
            "machine_slug": "m", "final_loss": loss, "accuracy": acc, "accuracy_ci_low": lo, "accuracy_ci_high": hi,
            "weight_bytes": weight_bytes, "peak_bytes": peak}


def test_qlora_claim_reports_quality_cost_and_memory_saved():
    rows = [conv_row("full", None, 0.9, 0.6, 0.4, 0.8, 4e6, 9e8), conv_row("lora", 16, 1.0, 0.5, 0.28, 0.72, 4e6, 8e8),
            conv_row("qlora", 16, 1.05, 0.4, 0.2, 0.64, 1e6, 7e8)]
    med = pd.DataFrame(rows)
    _, measured, verdict, _ = claims.qlora_matches_lora(med, med)
    assert verdict == claims.HOLDS
    assert "final loss QLoRA 1.05 vs LoRA 1 (+5.0%), full 0.9" in measured and "weights 0.25× LoRA's" in measured
    worse = pd.DataFrame(rows[:2] + [conv_row("qlora", 16, 1.5, 0.4, 0.2, 0.64, 1e6, 7e8)])
    assert claims.qlora_matches_lora(worse, worse)[2] == claims.FAILS


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
