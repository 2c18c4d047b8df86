"""Convergence: what quality full fine-tuning and LoRA reach in the same steps (the tutorial's LoRA run, measured).

A small GPT-2-shaped model is pre-trained briefly on a generated corpus (:mod:`bench_lib.convergence_data`)
that states every country's capital in plain sentences; its real loss curve is kept (``pretrain_loss``).
Then, from the same pre-trained weights, each method fine-tunes on the instruction format
("Question: What is the capital of X?\\nAnswer: Y") for the training countries only, with fixed seeds,
batches and steps, through the same :func:`bench_lib.training.train_step` as the cost cases.

Measured per run: the loss curve (mean next-token loss over the whole example, prompt included, as a
plain causal-LM fine-tune computes it), ``initial_loss`` / ``final_loss`` (mean of the first / last
``window`` steps), held-out ``accuracy`` (greedy answer equals the capital, for countries never seen in the
instruction format), ``train_accuracy`` on the fine-tuning countries, ``heldout_answer_loss`` (mean loss of
the capital's tokens on held-out prompts) and wall times.

Pre-training runs once per process per :class:`Config` and is shared by every case (cached).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import torch

from bench_lib import convergence_data as data
from bench_lib import models, training


@dataclass(frozen=True)
class Config:
    """Sizes and schedule of the convergence experiment (all runs of one config share the pre-training).

    More pretrain_steps: the model knows more capitals, so held-out accuracy can rise. More finetune_steps:
    lower final loss for every method; too few hides the difference between ranks.
    """

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    vocab: int = 1024
    seq: int = 64
    pretrain_sentences: int = 20000
    pretrain_steps: int = 300
    pretrain_batch: int = 16
    pretrain_lr: float = 3e-3
    finetune_steps: int = 60
    finetune_batch: int = 16
    lr_full: float = 3e-4
    lr_lora: float = 3e-3
    window: int = 5  # steps averaged for initial_loss / final_loss
    max_new_tokens: int = 8
    seed: int = 0

    def preset(self) -> models.ModelPreset:
        return models.ModelPreset("convergence-gpt2", "gpt2", self.hidden, self.layers, self.heads, self.heads,
                                  4 * self.hidden, self.vocab, self.seq, True)


@dataclass
class Pretrained:
    tokenizer: object
    state_dict: dict
    loss_curve: list[float]
    wall_s: float


def _new_model(cfg: Config, device: torch.device):
    """The GPT-2-shaped model of ``cfg`` with dropout off (few steps: dropout only slows every method alike)."""
    from transformers import AutoModelForCausalLM

    hf = cfg.preset().hf_config()
    hf.resid_pdrop = hf.embd_pdrop = hf.attn_pdrop = 0.0
    torch.manual_seed(cfg.seed)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(hf, attn_implementation="sdpa")


def _cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warmup, then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@functools.lru_cache(maxsize=2)
def pretrained(cfg: Config, device_str: str) -> Pretrained:
    """Pre-train once: tokenizer, then ``pretrain_steps`` steps on random windows of the packed corpus."""
    device = torch.device(device_str)
    start = time.perf_counter()
    sentences = data.pretrain_sentences(cfg.pretrain_sentences, cfg.seed)
    tok = data.train_tokenizer(sentences + [data.example(c, k) for c, k in data.TRAIN], cfg.vocab)
    eos = tok.token_to_id(data.EOS)
    stream = torch.tensor([i for s in sentences for i in tok.encode(s).ids + [eos]])
    model = _new_model(cfg, device)
    trainer = training.prepare(model, training.Recipe("full", lr=cfg.pretrain_lr), "gpt2", device)
    sched = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer,
                                              lambda s: _cosine(s, cfg.pretrain_steps, cfg.pretrain_steps // 10))
    g = torch.Generator().manual_seed(cfg.seed)
    curve = []
    for _ in range(cfg.pretrain_steps):
        starts = torch.randint(0, len(stream) - cfg.seq, (cfg.pretrain_batch,), generator=g)
        ids = torch.stack([stream[s:s + cfg.seq] for s in starts.tolist()]).to(device)
        curve.append(training.train_step(trainer, {"input_ids": ids, "labels": ids}).item())
        sched.step()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Pretrained(tok, state, curve, time.perf_counter() - start)


def _encode_batch(tok, texts: list[str], device: torch.device) -> dict:
    """Right-padded batch; padding is masked from attention and from the loss (label -100)."""
    pad = tok.token_to_id(data.PAD)
    rows = [tok.encode(t).ids for t in texts]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


@torch.inference_mode()
def greedy_answer(model, tok, country: str, max_new_tokens: int, device: torch.device) -> str:
    """The model's greedy continuation of the question, up to end of text or end of line."""
    eos = tok.token_to_id(data.EOS)
    ids = torch.tensor([tok.encode(data.prompt(country)).ids], device=device)
    out = []
    for _ in range(max_new_tokens):
        nxt = int(model(input_ids=ids).logits[0, -1].argmax())
        if nxt == eos:
            break
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]], device=device)], dim=1)
    return tok.decode(out).split("\n")[0].strip()


@torch.inference_mode()
def answer_loss(model, tok, pairs, device: torch.device) -> float:
    """Mean loss of the answer tokens (" Capital" + end of text) given the question, over ``pairs``."""
    losses = []
    for country, capital in pairs:
        p = tok.encode(data.prompt(country)).ids
        full = tok.encode(data.example(country, capital)).ids
        ids = torch.tensor([full], device=device)
        labels = ids.clone()
        labels[0, :len(p)] = -100
        losses.append(float(model(input_ids=ids, labels=labels).loss))
    return sum(losses) / len(losses)


def accuracy(model, tok, pairs, max_new_tokens: int, device: torch.device) -> float:
    """Fraction of ``pairs`` whose greedy answer is exactly the capital."""
    hits = sum(greedy_answer(model, tok, c, max_new_tokens, device) == k for c, k in pairs)
    return hits / len(pairs)


def finetune(cfg: Config, method: str, rank: int | None, targets: str | None, device: torch.device, debug=False) -> dict:
    """Fine-tune the pre-trained model with ``method``; returns metrics and the loss curve (``series``)."""
    return _finetune_with(pretrained(cfg, str(device)), cfg, method, rank, targets, device)


def _finetune_with(pre, cfg, method, rank, targets, device):
    model = _new_model(cfg, device)
    model.load_state_dict(pre.state_dict)
    lr = cfg.lr_full if rank is None else cfg.lr_lora
    trainer = training.prepare(model, training.Recipe(method, rank, targets, lr=lr), "gpt2", device)
    g = torch.Generator().manual_seed(cfg.seed + 1)  # same batches for every method
    start = time.perf_counter()
    curve = []
    for _ in range(cfg.finetune_steps):
        picks = torch.randint(0, len(data.TRAIN), (cfg.finetune_batch,), generator=g).tolist()
        batch = _encode_batch(pre.tokenizer, [data.example(*data.TRAIN[i]) for i in picks], device)
        curve.append(training.train_step(trainer, batch).item())
    train_s = time.perf_counter() - start
    model.eval()
    w = cfg.window
    return {
        "metrics": {
            "initial_loss": sum(curve[:w]) / w,
            "final_loss": sum(curve[-w:]) / w,
            "accuracy": accuracy(model, pre.tokenizer, data.HELD_OUT, cfg.max_new_tokens, device),
            "train_accuracy": accuracy(model, pre.tokenizer, data.TRAIN, cfg.max_new_tokens, device),
            "heldout_answer_loss": answer_loss(model, pre.tokenizer, data.HELD_OUT, device),
            "trainable_params": training.trainable_params(trainer),
            "train_s": train_s,
            "pretrain_s": pre.wall_s,
            "pretrain_final_loss": sum(pre.loss_curve[-w:]) / w,
        },
        "series": {"loss_curve": curve, "pretrain_loss": list(pre.loss_curve)},
    }
