"""bench_lib.suites.convergence and convergence_data: generated data, greedy evaluation, loss falling end to end."""

import pytest
import torch

from bench_lib.harness import profiles, runner
from bench_lib.harness.workload import Case, Context
from bench_lib.suites import convergence
from bench_lib.suites import convergence_data as data

CPU = torch.device("cpu")
# a fast config: the model learns the instruction format (not the facts) in a few dozen steps
TINY = {"hidden": 64, "layers": 1, "heads": 2, "vocab": 512, "seq": 32, "pretrain_sentences": 2000,
        "pretrain_steps": 30, "pretrain_batch": 8, "finetune_steps": 30, "finetune_batch": 8,
        "lr_full": 3e-3, "lr_lora": 1e-2}


# one torch thread for the whole module (its module-scoped model fixtures too): see tests/conftest.py
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- data
def test_held_out_countries_never_appear_in_the_instruction_format():
    assert len(data.HELD_OUT) == 16 and len(data.TRAIN) == 64
    assert not set(data.HELD_OUT) & set(data.TRAIN)
    assert len({c for c, _ in data.COUNTRIES}) == len({k for _, k in data.COUNTRIES}) == 80


def test_pretraining_states_held_out_facts_but_never_asks_for_a_capital():
    sentences = data.pretrain_sentences(3000, seed=0)
    assert sentences == data.pretrain_sentences(3000, seed=0)  # generated, fixed by the seed
    text = "\n".join(sentences)
    held = [f"The capital of {c} is {k}." for c, k in data.HELD_OUT]
    assert sum(s in text for s in held) >= 12  # most held-out facts appear in this phrasing alone
    assert "What is the capital" not in text and "Question: What is" in text  # the format's words are known


def test_tokenizer_round_trip():
    tok = data.train_tokenizer(data.pretrain_sentences(500, 0), 400)
    text = data.example("South Korea", "Seoul")
    ids = tok.encode(text).ids
    assert ids[-1] == tok.token_to_id(data.EOS)
    assert tok.decode(ids) == text.replace(data.EOS, "")  # decode drops the special token


# ---------------------------------------------------------------- evaluation
def test_batched_greedy_equals_one_at_a_time():
    cfg = convergence.Config(**{k: v for k, v in TINY.items() if not k.startswith("lr")})
    tok = data.train_tokenizer(data.pretrain_sentences(500, 0), cfg.vocab)
    model = convergence._model(cfg, CPU).eval()
    texts = [data.prompt("France"), data.statement_prompt("South Korea"), "Question: Is Rome a city?\nAnswer:"]

    @torch.inference_mode()
    def alone(text):
        ids = tok.encode(text).ids
        for _ in range(5):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        new = ids[len(tok.encode(text).ids):]
        eos = tok.token_to_id(data.EOS)
        new = new[:new.index(eos)] if eos in new else new
        return tok.decode(new).split("\n")[0].split(".")[0].strip()

    assert convergence.greedy_answers(model, tok, texts, 5, CPU) == [alone(t) for t in texts]


def test_accuracy_counts_exact_answers(monkeypatch):
    pairs = [("France", "Paris"), ("Peru", "Lima"), ("Mali", "Bamako"), ("Oman", "Muscat")]
    monkeypatch.setattr(convergence, "greedy_answers", lambda m, t, texts, n, d: ["Paris", "Lima", "Bamak", ""])
    assert convergence.accuracy(None, None, pairs, 8, CPU) == 0.5


# ---------------------------------------------------------------- end to end
def run(method, rank=None):
    params = {"group": "convergence", "method": method, "rank": rank, "targets": "attn" if rank else None, **TINY}
    rec = runner.run_case(convergence.build, Case("finetune", f"tiny-{method}-{rank}", params),
                          Context(CPU, profiles.get("smoke")))
    assert rec["outcome"] == "ok", rec["reason"]
    return rec


def test_loss_falls_and_runs_share_the_pretraining():
    full, lora = run("full"), run("lora", 4)
    for rec in (full, lora):
        m, curve = rec["metrics"], rec["series"]["loss_curve"]
        assert len(curve) == TINY["finetune_steps"] and m["rounds"] == 1
        assert m["initial_loss"] == curve[0] and m["final_loss"] == pytest.approx(sum(curve[-5:]) / 5)
        assert m["final_loss"] < 0.95 * m["initial_loss"]
        assert 0.0 <= m["accuracy"] <= 1.0 and m["finetune_s"] > 0
        assert len(rec["series"]["pretrain_loss"]) == TINY["pretrain_steps"]
    assert full["metrics"]["final_loss"] < 0.6 * full["metrics"]["initial_loss"]
    # one pre-training for both: same first batch, same pre-trained weights -> the same first loss
    assert full["metrics"]["initial_loss"] == lora["metrics"]["initial_loss"]
    assert full["metrics"]["pretrain_s"] == lora["metrics"]["pretrain_s"]
    assert lora["metrics"]["trainable_params"] == 1 * 4 * (64 + 192 + 64 + 64)  # c_attn + attn.c_proj, 1 layer


def test_qlora_runs_on_the_same_pretraining_with_an_nf4_base():
    pytest.importorskip("bitsandbytes")
    lora, qlora = run("lora", 4), run("qlora", 4)
    assert qlora["metrics"]["base_precision"] == "nf4" and lora["metrics"]["base_precision"] == "fp32"
    # same rank, same targets: the same trainable adapter; the same data and first batch
    assert qlora["metrics"]["trainable_params"] == lora["metrics"]["trainable_params"]
    assert qlora["metrics"]["initial_loss"] == pytest.approx(lora["metrics"]["initial_loss"], rel=0.05)
    assert qlora["metrics"]["final_loss"] < qlora["metrics"]["initial_loss"]
    for rec in (lora, qlora):
        m = rec["metrics"]
        assert m["accuracy_items"] == 16 and m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"]
        assert m["peak_bytes"] > 0 and m["pretrain_corpus"] == convergence.CORPUS


def test_an_unknown_method_is_unsupported():
    rec = runner.run_case(convergence.build, Case("finetune", "q", {"group": "convergence", "method": "full_amp",
                                                                    **TINY}),
                          Context(CPU, profiles.get("smoke")))
    assert rec["outcome"] == "unsupported" and "full, lora, qlora" in rec["reason"]


# ---------------------------------------------------------------- fully masked rows (CUDA's efficient kernel)
class NaNOnFullyMaskedRows(torch.nn.Module):
    """A model wrapper that behaves as CUDA's memory-efficient SDPA kernel does: a query position whose
    attention row is fully masked gives NaN, and the NaN reaches every later position of that row through
    the next layer's values (0 x NaN = NaN). CPU kernels return 0 there, which is why CPU tests need this."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, **kw):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kw)
        if attention_mask is not None:
            # causal: position t sees keys 0..t; it is fully masked when none of them is a real token
            fully_masked = attention_mask.cumsum(1) == 0
            poisoned = fully_masked.any(1)  # that row's later layers read the NaN values
            out.logits[poisoned] = float("nan")
        return out


def test_batched_greedy_is_safe_by_construction_against_nan_on_masked_rows():
    """Right padding: no real position has a fully masked row, so the NaN kernel changes nothing.
    (Left padding, the old code, gives every shorter text NaN logits here, and argmax reads garbage.)"""
    cfg = convergence.Config(**{k: v for k, v in TINY.items() if not k.startswith("lr")})
    tok = data.train_tokenizer(data.pretrain_sentences(500, 0), cfg.vocab)
    model = convergence._model(cfg, CPU).eval()
    texts = [data.prompt("France"), data.statement_prompt("South Korea"), "Question: Is Rome a city?\nAnswer:"]
    assert len({len(tok.encode(t).ids) for t in texts}) == 3  # different lengths: padding is needed
    want = convergence.greedy_answers(model, tok, texts, 5, CPU)
    assert convergence.greedy_answers(NaNOnFullyMaskedRows(model), tok, texts, 5, CPU) == want


def test_non_finite_logits_fail_the_evaluation_loudly():
    cfg = convergence.Config(**{k: v for k, v in TINY.items() if not k.startswith("lr")})
    tok = data.train_tokenizer(data.pretrain_sentences(500, 0), cfg.vocab)
    model = convergence._model(cfg, CPU).eval()

    class AllNaN(torch.nn.Module):
        def forward(self, **kw):
            out = model(**kw)
            out.logits[1] = float("nan")
            return out

    with pytest.raises(convergence.NonFiniteLogits, match=r"rows \[1\]"):
        convergence.greedy_answers(AllNaN(), tok, ["a", "b c"], 3, CPU)
