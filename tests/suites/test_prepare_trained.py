"""The trained weights quality cases load are prepared by the session, before the cases (issue 13)."""

import pytest
import torch

from bench_lib.harness import profiles
from bench_lib.harness.workload import Context
from bench_lib.suites import convergence, precision


def _ctx():
    return Context(torch.device("cpu"), profiles.get("smoke"))


def test_the_quality_cases_ask_for_the_pretraining_and_the_fine_tunes_they_load():
    ctx = _ctx()
    prec = precision.preparations(profiles.precision_grid("smoke", "cpu"), ctx)
    fine = convergence.preparations(profiles.finetune_grid("smoke", "cpu"), ctx)
    cfg = convergence.Config.from_params(profiles.TRAINED_CONFIG["smoke"])
    pretrain = convergence.pretrain_entry(cfg)
    full = convergence.finetune_entry(cfg, "full")[0]
    lora = convergence.finetune_entry(cfg, "lora", 4, "attn")[0]
    assert {p.name for p in prec} == {pretrain, full}
    assert {p.name for p in fine} == {pretrain, lora}  # cost cases need nothing; merge needs the LoRA adapter
    assert fine[0].name == pretrain  # the pre-training comes before what is fine-tuned from it
    # random-weight cases need nothing
    assert precision.preparations([c for c in profiles.precision_grid("smoke", "cpu")
                                   if c.params["model"] != precision.TRAINED_MODEL], ctx) == []


def test_a_failed_preparation_makes_its_cases_fail_at_once_naming_it(monkeypatch):
    monkeypatch.setattr(convergence, "_FAILED", {})
    cfg = convergence.Config.from_params(profiles.TRAINED_CONFIG["smoke"])
    prep = convergence.preparation(cfg, torch.device("cpu"))
    prep.failed("preparation exceeded its limit of 300 s")
    with pytest.raises(RuntimeError, match="could not be prepared before the cases .*300 s"):
        convergence.pretrained(cfg, torch.device("cpu"))  # no second training inside a case's limit
    with pytest.raises(RuntimeError, match="could not be prepared"):
        convergence.finetuned(cfg, torch.device("cpu"), "full")
