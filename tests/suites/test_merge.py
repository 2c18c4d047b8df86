"""bench_lib.suites.merge: merged and unmerged LoRA give the same outputs (fp32), NF4 re-quantizes, decode timed."""

import pytest
import torch

from bench_lib.harness import profiles, runner
from bench_lib.harness.workload import Case, Context
from bench_lib.suites import finetune, merge

pytest.importorskip("peft")
CPU = torch.device("cpu")
TINY = dict(profiles.TRAINED_CONFIG["smoke"])

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(base, variant):
    params = {"group": "merge", "base": base, "variant": variant, "rank": 4, "targets": "attn", "batch": 1,
              "prompt_tokens": 8, "new_tokens": 6, **TINY}
    return runner.run_case(finetune.build, Case("finetune", f"merge-{base}-{variant}", params),
                           Context(CPU, profiles.get("smoke")))


def test_merged_outputs_equal_unmerged_within_tolerance():
    rec = run("fp32", "merged")
    assert rec["outcome"] == "ok", rec["reason"]
    m = rec["metrics"]
    assert m["merge_within_tolerance"] is True and m["merge_max_abs_diff"] <= m["merge_tolerance"]
    assert m["merge_top1_agreement"] == 1.0 and m["merge_kl_vs_unmerged"] < 1e-6 and m["merge_s"] > 0
    for variant in ("base", "unmerged"):
        other = run("fp32", variant)
        assert other["outcome"] == "ok" and other["metrics"]["variant"] == variant
        assert other["metrics"]["decode_tokens_per_s"] > 0 and other["metrics"]["per_token_calls"] >= 1
    assert m["decode_tokens_per_s"] > 0 and m["itl_p50_s"] > 0


def test_a_wrong_merge_is_a_failed_case(monkeypatch):
    real = merge.merge_adapter

    def off_by_a_bit(peft_model):
        model = real(peft_model)
        with torch.no_grad():
            model.transformer.h[0].attn.c_attn.weight.add_(0.05)
        return model

    monkeypatch.setattr(merge, "merge_adapter", off_by_a_bit)
    rec = run("fp32", "merged")
    assert rec["outcome"] == "error" and "merged logits differ from unmerged" in rec["reason"]
    assert rec["metrics"]["merge_within_tolerance"] is False


def test_nf4_merge_requantizes_and_says_so():
    pytest.importorskip("bitsandbytes")
    rec = run("nf4", "merged")
    assert rec["outcome"] == "ok", rec["reason"]
    m = rec["metrics"]
    assert m["merge_requantized"] is True and m["base_precision"] == "nf4"
    assert m["merge_max_abs_diff"] > 0 and 0 < m["merge_top1_agreement"] <= 1  # recorded, not judged


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant in"):
        merge.build(Case("finetune", "m", {"base": "fp32", "variant": "half", **TINY}), Context(CPU, profiles.get("smoke")))


def test_every_profile_has_the_merge_cases():
    for profile in ("smoke", "quick", "full"):
        merges = [c.params for c in profiles.cases("finetune", profile, "cpu") if c.params["group"] == "merge"]
        assert {(m["base"], m["variant"]) for m in merges} == {(b, v) for b in merge.BASES for v in merge.VARIANTS}
        qlora = [c.params for c in profiles.cases("finetune", profile, "cpu") if c.params.get("method") == "qlora"
                 and c.params["group"] == "convergence"]
        lora_ranks = {c.params["rank"] for c in profiles.cases("finetune", profile, "cpu")
                      if c.params.get("method") == "lora" and c.params["group"] == "convergence"}
        assert len(qlora) == 1 and qlora[0]["rank"] in lora_ranks  # QLoRA at a rank LoRA also runs
