"""bench_lib.suites.precision: quality formulas, the suite through the full harness, and its grid."""

import math

import pytest
import torch

from bench_lib.harness import profiles, runner
from bench_lib.harness.workload import Case, Context
from bench_lib.suites import precision, quant

pytest.importorskip("bitsandbytes")

CPU = torch.device("cpu")
ALL = ["fp32", "fp16", "bf16", "int8", "nf4", "nf4_dq", "fp4"]
AO = ["ao_int8wo", "ao_int8dq", "ao_int4wo", "ao_fp8wo", "ao_fp8dq"]  # torchao: not in smoke (time)


# one torch thread for the whole module (its module-scoped model fixtures too): see tests/conftest.py
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def case(pid, model="llama-7m", batch=2, new_tokens=4):
    return Case("precision", f"{model}-{pid}-b{batch}", {"model": model, "precision": pid, "batch": batch,
                                                          "prompt_tokens": 8, "new_tokens": new_tokens})


def ctx(**options):
    return Context(CPU, profiles.get("smoke"), options=options)


# ---------------------------------------------------------------- formulas
def test_kl_and_top1_hand_worked():
    ref = torch.tensor([[0.7, 0.3], [0.5, 0.5]]).log()
    cand = torch.tensor([[0.4, 0.6], [0.5, 0.5]]).log()
    got = precision.kl_and_top1(ref, cand)
    # row 1: 0.7 ln(0.7/0.4) + 0.3 ln(0.3/0.6) = 0.18380; row 2: 0; mean over rows
    assert got["kl_vs_ref"] == pytest.approx((0.7 * math.log(1.75) + 0.3 * math.log(0.5)) / 2, rel=1e-5)
    assert got["top1_agreement"] == 0.5  # row 1 disagrees (0 vs 1); row 2 ties resolve alike


def test_perplexity_of_uniform_is_vocab():
    logp = torch.full((1, 10, 50), -math.log(50))
    assert precision.perplexity(logp, torch.randint(0, 50, (1, 10))) == pytest.approx(50, rel=1e-5)


def test_bundled_text_is_there():
    text = precision.bundled_text()
    assert text.startswith("Four score and seven years ago") and len(text.split()) > 500


# ---------------------------------------------------------------- the suite through the harness
@pytest.fixture(scope="module")
def records():
    """llama-7m in every precision, same weights, batch 2, 4 new tokens, through runner.run_case."""
    return {pid: runner.run_case(precision.build, case(pid), ctx()) for pid in ALL}


def test_every_precision_runs(records):
    for pid, rec in records.items():
        if pid == "fp16" and rec["outcome"] == "unsupported":
            assert "fp16" in rec["reason"]
            continue
        assert rec["outcome"] == "ok", (pid, rec["reason"])
        m = rec["metrics"]
        assert m["reference_precision"] == "fp32" and m["synthetic_weights"] is True
        for key in ("load_s", "ttft_s", "prefill_s", "generate_s", "generate_tokens_per_s", "peak_bytes"):
            assert m[key] > 0, (pid, key)
        # decode, TTFT and inter-token latency from the per-token stamps of the timed calls themselves
        assert m["decode_tokens_per_s"] > 0 and m["decode_s"] > 0 and m["per_token_calls"] == m["rounds"]
        assert 0 < m["itl_p50_s"] <= m["itl_p90_s"] <= m["itl_p99_s"] and m["token_clock_overhead_frac"] < 0.02
        assert m["weight_bytes"] < m["model_bytes"]


def test_same_token_count_for_every_precision(records):
    counts = {pid: r["metrics"]["new_tokens"] for pid, r in records.items() if r["outcome"] == "ok"}
    assert set(counts.values()) == {4}, counts


def test_quality_ordered_on_same_weights(records):
    kl = {pid: r["metrics"]["kl_vs_ref"] for pid, r in records.items() if r["outcome"] == "ok"}
    top1 = {pid: r["metrics"]["top1_agreement"] for pid, r in records.items() if r["outcome"] == "ok"}
    assert all(math.isfinite(v) for v in kl.values())
    assert kl["fp32"] == 0 and top1["fp32"] == 1
    assert 0 < kl["bf16"] < kl["int8"] < kl["nf4"], kl
    assert all(0 <= v <= 1 for v in top1.values()) and top1["nf4"] < top1["bf16"]


def test_bits_per_param_in_records(records):
    bits = {pid: r["metrics"]["bits_per_param"] for pid, r in records.items() if r["outcome"] == "ok"}
    assert bits["fp32"] == 32 and bits["bf16"] == 16
    assert 8 <= bits["int8"] <= 9.5 and 4 <= bits["nf4"] <= 5 and bits["nf4_dq"] < bits["nf4"]


def test_short_generation_is_a_failed_case(monkeypatch):
    real = precision._generation_config
    monkeypatch.setattr(precision, "_generation_config", lambda model, n: real(model, max(1, n - 1)))
    rec = runner.run_case(precision.build, case("bf16", model="llama-tiny", batch=1), ctx())
    assert rec["outcome"] == "error" and "generated 3 tokens, not the fixed 4" in rec["reason"]


def test_unsupported_precision_is_an_outcome(monkeypatch):
    monkeypatch.setattr(quant, "_probe_bnb", lambda device, pid: "bitsandbytes not installed (pip install 'effbench[quant]')")
    rec = runner.run_case(precision.build, case("nf4", model="llama-tiny"), ctx())
    assert rec["outcome"] == "unsupported" and "effbench[quant]" in rec["reason"]


def test_reference_falls_back_when_fp32_does_not_fit(monkeypatch):
    monkeypatch.setattr(precision, "_fits", lambda n, pid, device: pid != "fp32")
    assert precision.reference_precision(10**9, CPU) == "bf16"
    rec = runner.run_case(precision.build, case("nf4", model="llama-tiny", batch=1), ctx())
    assert rec["outcome"] == "ok" and rec["metrics"]["reference_precision"] == "bf16"
    monkeypatch.setattr(precision, "_fits", lambda n, pid, device: False)
    rec = runner.run_case(precision.build, case("nf4", model="llama-tiny"), ctx())
    assert rec["outcome"] == "ok" and rec["metrics"]["reference_precision"] is None
    assert "kl_vs_ref" not in rec["metrics"] and rec["metrics"]["generate_s"] > 0  # speed/memory still measured


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A local GPT-2-shaped checkpoint with a byte-level BPE tokenizer trained offline on the bundled text."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("ckpt")
    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator([precision.bundled_text()], trainers.BpeTrainer(
        vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=len(fast), n_positions=1024,
                        bos_token_id=fast.eos_token_id, eos_token_id=fast.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(path)
    return str(path)


def test_model_option_uses_the_checkpoint(checkpoint):
    label = profiles.checkpoint_label(checkpoint)
    ref = runner.run_case(precision.build, case("fp32", model=label), ctx(model=checkpoint))
    rec = runner.run_case(precision.build, case("nf4", model=label), ctx(model=checkpoint))
    assert rec["outcome"] == "ok", rec["reason"]
    m = rec["metrics"]
    assert m["synthetic_weights"] is False and m["model_source"] == checkpoint
    assert m["reference_perplexity"] == ref["metrics"]["perplexity"]
    assert math.isfinite(m["perplexity"]) and m["perplexity"] > 1 and m["kl_vs_ref"] > 0
    other = runner.run_case(precision.build, case("nf4", model="gpt2-tiny"), ctx(model=checkpoint))
    assert other["outcome"] == "unsupported" and "replaces the preset ladder" in other["reason"]
    alone = runner.run_case(precision.build, case("nf4", model=label), ctx())
    assert alone["outcome"] == "unsupported" and "run with --model PATH" in alone["reason"]


def test_model_option_turns_the_preset_ladder_into_the_checkpoint():
    grid = profiles.cases("precision", "quick", "cpu")
    first = grid[0].params["model"]
    cases = profiles.precision_cases_for_checkpoint(grid, "/models/Llama-2-7b-hf/")
    assert cases and all(c.params["model"] == "ckpt-llama-2-7b-hf" for c in cases)
    ladder = [c.id[len(first):] for c in grid if c.params["model"] == first]
    assert [c.id[len("ckpt-llama-2-7b-hf"):] for c in cases][:len(ladder)] == ladder  # its precisions and batches
    extra = cases[len(ladder):]  # torchao runs on CPU only on the trained weights: the checkpoint gets it too
    assert {c.params["precision"] for c in extra} == set(AO)
    assert {c.params["batch"] for c in extra} == {c.params["batch"] for c in grid if c.params["model"] == first}
    assert "ckpt-llama-2-7b-hf-ao_int8wo-b1-p16-n16" in {c.id for c in extra}
    assert all(c.id.startswith("ckpt-llama-2-7b-hf-") and first not in c.id for c in cases)
    assert {c.params["precision"] for c in cases} == {c.params["precision"] for c in grid}
    assert profiles.checkpoint_label("meta-llama/Llama-2-7b-hf") == "ckpt-llama-2-7b-hf"


# ---------------------------------------------------------------- grid
def test_cpu_quick_grid_has_two_sizes_in_every_precision():
    grid = [c for c in profiles.cases("precision", "quick", "cpu") if c.params["model"] != precision.TRAINED_MODEL]
    sizes = {c.params["model"] for c in grid}
    assert len(sizes) >= 2
    for size in sizes:
        rows = [c.params for c in grid if c.params["model"] == size]
        assert {r["precision"] for r in rows} == set(ALL)
        assert 1 in {r["batch"] for r in rows} and max(r["batch"] for r in rows) > 1
        assert len({r["new_tokens"] for r in rows}) == 1
    assert grid[0].params["precision"] == "fp32"


def test_gpu_full_grid_reaches_7b_and_13b():
    sizes = {c.params["model"] for c in profiles.cases("precision", "full", "cuda")}
    assert {"llama-7b", "llama-13b"} <= sizes
    smoke = {c.params["model"] for c in profiles.cases("precision", "smoke", "cpu")}
    assert smoke == {"llama-tiny", "gpt2-tiny", precision.TRAINED_MODEL}


@pytest.mark.parametrize("profile", ["smoke", "quick", "full"])
def test_every_profile_has_trained_weights_in_every_precision(profile):
    for device_type in ("cpu", "cuda"):
        trained = [c.params for c in profiles.cases("precision", profile, device_type)
                   if c.params["model"] == precision.TRAINED_MODEL]
        assert {t["precision"] for t in trained} == set(ALL) | (set() if profile == "smoke" else set(AO))
        # the same trained model as the convergence cases of that profile: one cached pre-training for both
        conv = [c.params for c in profiles.cases("finetune", profile, device_type) if c.params["group"] == "convergence"]
        cfg = {f: v for f, v in trained[0].items() if f in profiles.TRAINED_CONFIG["smoke"] or f == "seed"}
        assert cfg and all(conv[0].get(f) == v for f, v in cfg.items())
        assert all(t["prompt_tokens"] + t["new_tokens"] <= trained[0].get("seq", 64) for t in trained)


# ---------------------------------------------------------------- trained weights
TINY = dict(profiles.TRAINED_CONFIG["smoke"])


def trained_case(pid, batch=1, new_tokens=6):
    return Case("precision", f"trained-gpt2-{pid}-b{batch}", {"model": precision.TRAINED_MODEL, "precision": pid,
                                                             "batch": batch, "prompt_tokens": 8,
                                                             "new_tokens": new_tokens, **TINY})


@pytest.fixture(scope="module")
def trained_records():
    return {pid: runner.run_case(precision.build, trained_case(pid), ctx()) for pid in ("fp32", "int8", "nf4")}


def test_trained_cases_carry_quality_with_intervals(trained_records):
    for pid, rec in trained_records.items():
        assert rec["outcome"] == "ok", (pid, rec["reason"])
        m = rec["metrics"]
        assert m["synthetic_weights"] is False and m["trained_weights"] is True and m["reference_precision"] == "fp32"
        assert m["pretrain_corpus"] == "generated-capitals-v1" and "held-out" in m["quality_text"]
        assert m["heldout_accuracy_items"] == 16
        assert m["heldout_accuracy_ci_low"] <= m["heldout_accuracy"] <= m["heldout_accuracy_ci_high"]
        assert m["quality_items"] == precision.TRAINED_EVAL_SEQS and m["quality_positions"] == 32 * TINY["seq"]
        for q in ("kl_vs_ref", "top1_agreement"):
            assert m[f"{q}_ci_low"] <= m[q] <= m[f"{q}_ci_high"]
        assert math.isfinite(m["perplexity"]) and m["perplexity"] > 1
        assert m["decode_tokens_per_s"] > 0 and m["itl_p99_s"] > 0
    fp32, nf4 = trained_records["fp32"]["metrics"], trained_records["nf4"]["metrics"]
    assert fp32["kl_vs_ref"] == 0 and nf4["kl_vs_ref"] > 0 and nf4["reference_perplexity"] == fp32["perplexity"]
    assert nf4["reference_heldout_accuracy"] == fp32["heldout_accuracy"]
    # the weights were trained once (by the first case or an earlier test), then reused
    assert nf4["weights_trained_here_s"] == 0 and nf4["weights_cache"] == fp32["weights_cache"]


def test_ttft_and_decode_come_from_the_timed_calls_stamps(monkeypatch):
    """A fake per-token clock: every reading is 1 s after the last, so each traced call of n tokens reads
    ttft 1 s and decode n - 1 s; a separate TTFT measurement would not see this clock at all."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(precision, "CLOCK", lambda: float(next(ticks)))
    rec = runner.run_case(precision.build, trained_case("fp32", batch=2, new_tokens=4), ctx())
    m = rec["metrics"]
    assert rec["outcome"] == "ok", rec["reason"]
    assert m["ttft_s"] == 1.0 and m["decode_s"] == 3.0 and m["itl_p50_s"] == m["itl_p99_s"] == 1.0
    assert m["decode_tokens_per_s"] == pytest.approx(2 * 3 / 3.0)
    assert m["per_token_calls"] == m["rounds"]

