"""Precision suite: memory, speed and quality lost, per (model, precision, batch), in one record.

Per case (params ``model``, ``precision``, ``batch``, ``prompt_tokens``, ``new_tokens``):
- memory: ``weight_bytes`` / ``bits_per_param`` of the quantizable linear layers as loaded (quantization state
  included, see :func:`bench_lib.suites.quant.linear_weight_footprint`), ``weight_bytes_in_use`` after decoding
  (bitsandbytes repacks 4-bit weights for its CPU kernel on the first forward), ``model_bytes`` (whole
  model); the harness's memory probe gives the peak during generation.
- speed: ``load_s`` (``from_pretrained`` from a local checkpoint: read + cast/quantize + move), ``prefill_s``
  (one forward over the prompt), ``ttft_s`` (``generate`` of one token); the timed call is ``generate`` of
  exactly ``new_tokens`` greedy tokens (min = max, end-of-sequence suppressed) for a (batch, prompt_tokens)
  prompt, giving ``decode_tokens_per_s``.
- quality against the reference model on the same inputs: ``kl_vs_ref`` (mean over token positions of
  KL(ref || candidate) of the next-token distributions, nats), ``top1_agreement``, and with real weights
  ``perplexity`` of the bundled public-domain text. The reference is fp32, or the highest precision that
  fits (``reference_precision``); random-weight presets say ``synthetic_weights: true``.

Random weights give near-uniform next-token distributions, where top-1 agreement is a coin toss; presets
are therefore loaded with the final norm's gain scaled so logits have std :data:`SYNTHETIC_LOGIT_STD` (same
weights for every precision; every other weight keeps its usual init). Quality from random weights is
still not the quality of a trained model: it measures how much each format perturbs the same network.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
from importlib import resources

import torch

from bench_lib.harness import device as devices
from bench_lib.harness import profiles, timing
from bench_lib.harness.workload import Case, CaseFailed, Context, Unsupported, Workload
from bench_lib.suites import models, quant

# Gaussian logits of std 4 over 8k-50k tokens have 3.4-4.3 nats of entropy (top token ~0.25-0.3), near a
# trained LM's 2-3 nats; records carry the reference's measured entropy (``reference_entropy_nats``).
SYNTHETIC_LOGIT_STD = 4.0
EVAL_SEQS, EVAL_LEN = 4, 64  # quality inputs: 256 next-token distributions
PERPLEXITY_MAX_TOKENS = 512
REFERENCE_ORDER = ("fp32", "bf16", "fp16")  # the reference is the first of these that runs and fits
SEED = 0

_REFERENCES: dict[tuple, dict] = {}  # (source, seed, inputs) -> reference log-probs, kept in-process


@contextlib.contextmanager
def _quiet():
    """bitsandbytes logs a warning on every int8 matmul with fp32 inputs (it casts them to fp16)."""
    bnb_log = logging.getLogger("bitsandbytes.autograd._functions")
    level = bnb_log.level
    bnb_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        bnb_log.setLevel(level)


# ---------------------------------------------------------------- inputs
def bundled_text() -> str:
    return resources.files("bench_lib").joinpath("data/public_domain_text.txt").read_text(encoding="utf-8")


def _inputs(source, vocab: int, tokenizer, batch: int, prompt_tokens: int) -> tuple[torch.Tensor, ...]:
    """(prompt ids (batch, prompt_tokens), quality ids (EVAL_SEQS, EVAL_LEN), perplexity ids (1, n) or None).

    Random tokens for random weights; the bundled text for a real checkpoint (the same prompt in every row).
    """
    if tokenizer is None:
        g = torch.Generator().manual_seed(SEED)
        evals = torch.randint(0, vocab, (EVAL_SEQS, EVAL_LEN), generator=g)
        return torch.randint(0, vocab, (batch, prompt_tokens), generator=g), evals, None
    ids = tokenizer(bundled_text(), return_tensors="pt").input_ids[0]
    if ids.numel() < EVAL_SEQS * EVAL_LEN:
        raise RuntimeError(f"bundled text is only {ids.numel()} tokens with this tokenizer")
    prompt = ids[:prompt_tokens].expand(batch, -1).contiguous()
    return prompt, ids[: EVAL_SEQS * EVAL_LEN].view(EVAL_SEQS, EVAL_LEN), ids[:PERPLEXITY_MAX_TOKENS][None]


# ---------------------------------------------------------------- quality
@torch.no_grad()
def log_probs(model, ids: torch.Tensor) -> torch.Tensor:
    """Next-token log-probabilities (batch, seq, vocab), fp32 on CPU."""
    with _quiet():
        logits = model(input_ids=ids.to(model.device)).logits
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def kl_and_top1(ref_logp: torch.Tensor, cand_logp: torch.Tensor) -> dict[str, float]:
    """Mean over positions of KL(ref || cand) = sum_v p_ref (log p_ref - log p_cand) (nats), and the share
    of positions where both pick the same most likely token. Inputs: log-probs (..., vocab)."""
    ref_logp, cand_logp = ref_logp.double(), cand_logp.double()  # fp32 sums give tiny negative KLs
    kl = (ref_logp.exp() * (ref_logp - cand_logp)).sum(-1)
    top1 = (ref_logp.argmax(-1) == cand_logp.argmax(-1)).float()
    return {"kl_vs_ref": kl.mean().item(), "top1_agreement": top1.mean().item()}


def perplexity(logp: torch.Tensor, ids: torch.Tensor) -> float:
    """exp(mean negative log-likelihood of each next token): logp (1, n, vocab), ids (1, n)."""
    nll = -logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    return torch.exp(nll.mean()).item()


def _fits(n_params: int, precision_id: str, device: torch.device) -> bool:
    need = n_params * (4 if precision_id == "fp32" else 2) * 1.2  # weights + 20% for activations and buffers
    if device.type == "cuda":
        return need < torch.cuda.mem_get_info(device)[0]
    import psutil

    return need < psutil.virtual_memory().available


def reference_precision(n_params: int, device: torch.device) -> str | None:
    """fp32, or the highest precision that runs on ``device`` and fits in its free memory."""
    for pid in REFERENCE_ORDER:
        if quant.PRECISIONS[pid].support(device) is None and _fits(n_params, pid, device):
            return pid
    return None


# ---------------------------------------------------------------- the case
def _source(case: Case, ctx: Context):
    """(what load_model takes, n_params, vocab, tokenizer or None) for the case's preset or ``--model``."""
    path = ctx.options.get("model")
    if not path:
        p = models.preset(case.params["model"])
        return p, p.param_count(), p.vocab, None
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except OSError as exc:
        raise RuntimeError(f"could not load --model {path!r}: {exc}. On an offline machine give a local "
                           "checkpoint folder (config.json, weights, tokenizer), or omit --model.") from None
    with torch.device("meta"):
        n_params = AutoModelForCausalLM.from_config(config).num_parameters()
    return path, n_params, config.vocab_size, tokenizer


def _load(source, precision_id: str, ctx: Context):
    synthetic = isinstance(source, models.ModelPreset)
    return quant.load_model(source, precision_id, ctx.device, seed=SEED,
                            logit_std=SYNTHETIC_LOGIT_STD if synthetic else None)


def _reference(source, ref_id: str, ctx: Context, evals, ppl_ids, model=None) -> dict:
    """Reference log-probs on the quality inputs, computed once per (source, inputs) in this process."""
    key = (str(source), SEED, ref_id, str(ctx.device), evals.shape, int(evals.sum()))
    if key not in _REFERENCES:
        owned = model is None
        model = _load(source, ref_id, ctx) if owned else model
        logp = log_probs(model, evals)
        entry = {"logp": logp, "entropy": -(logp.exp() * logp).sum(-1).mean().item()}
        if ppl_ids is not None:
            entry["perplexity"] = perplexity(log_probs(model, ppl_ids), ppl_ids)
        if owned:  # free the reference before the candidate loads (they need not fit together)
            del model
            devices.release_memory(ctx.device)
        while len(_REFERENCES) >= 4:  # bounded: a sweep visits sources one after the other
            _REFERENCES.pop(next(iter(_REFERENCES)))
        _REFERENCES[key] = entry
    return _REFERENCES[key]


def build(case: Case, ctx: Context) -> Workload | Unsupported:
    precision_id, batch = case.params["precision"], case.params["batch"]
    prompt_tokens, new_tokens = case.params["prompt_tokens"], case.params["new_tokens"]
    reason = quant.PRECISIONS[precision_id].support(ctx.device)
    if reason:
        return Unsupported(reason)
    path = ctx.options.get("model")
    if path and case.params["model"] != profiles.checkpoint_label(path):
        return Unsupported(f"--model {path} replaces the preset ladder: its cases are named "
                           f"{profiles.checkpoint_label(path)}, not {case.params['model']}")
    if not path and case.params["model"].startswith("ckpt-"):
        return Unsupported(f"this case measures a checkpoint ({case.params['model']}): run with --model PATH")
    source, n_params, vocab, tokenizer = _source(case, ctx)
    synthetic = tokenizer is None
    prompt, evals, ppl_ids = _inputs(source, vocab, tokenizer, batch, prompt_tokens)
    ref_id = reference_precision(n_params, ctx.device)  # None: speed and memory are still measured
    if isinstance(source, models.ModelPreset):
        quant.checkpoint_dir(source, SEED, ctx.device, SYNTHETIC_LOGIT_STD)  # build the shared weights untimed
    ref = None
    if ref_id is not None and precision_id != ref_id:
        ref = _reference(source, ref_id, ctx, evals, ppl_ids)

    holder = {}
    load_s = timing.wall(lambda: holder.update(model=_load(source, precision_id, ctx)), ctx.device)
    model = holder.pop("model")
    if precision_id == ref_id:
        ref = _reference(source, ref_id, ctx, evals, ppl_ids, model=model)

    prompt = prompt.to(model.device)
    mask = torch.ones_like(prompt)
    gen_config = _generation_config(model, new_tokens)

    def generate(config=gen_config):
        with _quiet(), torch.no_grad():
            return model.generate(input_ids=prompt, attention_mask=mask, generation_config=config)

    def prefill():
        with _quiet(), torch.no_grad():
            return model(input_ids=prompt, attention_mask=mask, use_cache=True)

    measured = {}

    def check():
        out = generate()  # also the first forward: bitsandbytes' one-time CPU repacking happens here
        produced = out.shape[1] - prompt.shape[1]
        metrics = {"new_tokens": produced, "weight_bytes_in_use": quant.linear_weight_footprint(model)["weight_bytes"]}
        if produced != new_tokens:
            raise CaseFailed(f"generated {produced} tokens, not the fixed {new_tokens}", metrics)
        one, repeats = _generation_config(model, 1), min(3, ctx.profile.min_rounds)  # median of 3 (smoke: 1)
        measured["ttft_s"] = statistics.median(timing.wall(lambda: generate(one), ctx.device) for _ in range(repeats))
        metrics["ttft_s"] = measured["ttft_s"]
        metrics["prefill_s"] = statistics.median(timing.wall(prefill, ctx.device) for _ in range(repeats))
        if ppl_ids is not None:
            metrics["perplexity"] = perplexity(log_probs(model, ppl_ids), ppl_ids)
        if ref is None:
            return metrics
        metrics.update(kl_and_top1(ref["logp"], log_probs(model, evals)), reference_entropy_nats=ref["entropy"])
        if ppl_ids is not None:
            metrics["reference_perplexity"] = ref["perplexity"]
        if not all(torch.isfinite(torch.tensor(metrics[k])) for k in ("kl_vs_ref", "top1_agreement")):
            raise CaseFailed(f"{precision_id} gives non-finite quality metrics", metrics)
        return metrics

    footprint = quant.linear_weight_footprint(model)
    weight_bytes_total = quant.model_bytes(model)

    def derive(time_s: float) -> dict:
        # decode = generate minus time to first token (the optimum-benchmark convention): new_tokens - 1 steps
        decode_s = time_s - measured["ttft_s"]
        out = {"generate_tokens_per_s": batch * new_tokens / time_s}
        if decode_s > 0:
            out["decode_s"] = decode_s
            out["decode_tokens_per_s"] = batch * (new_tokens - 1) / decode_s
            # every decode step reads every weight once (gpt-fast's bandwidth estimate; counts the whole
            # embedding table, of which a step reads one row per sequence)
            out["decode_weight_bytes_per_s"] = weight_bytes_total * (new_tokens - 1) / decode_s
        return out

    metrics = {
        **footprint,
        "model_bytes": weight_bytes_total,
        "load_s": load_s,
        "batch": batch,
        "prompt_tokens": prompt.shape[1],
        "reference_precision": ref_id,  # None: no reference fits here, quality metrics are absent
        "synthetic_weights": synthetic,
        "compute_dtype": str(quant.FLOAT_DTYPES.get(precision_id) or quant.default_compute_dtype(ctx.device))
        .removeprefix("torch."),
        "model_source": ctx.options.get("model") or case.params["model"],
    }
    if synthetic:
        metrics["synthetic_logit_std"] = SYNTHETIC_LOGIT_STD
        metrics["weights_stored_dtype"] = str(quant.stored_dtype(source)).removeprefix("torch.")
    kernel = quant.cpu_4bit_kernel(model)
    if kernel:
        metrics["bnb_cpu_4bit_kernel"] = kernel

    def teardown():
        nonlocal model
        model = None

    return Workload(generate, metrics=metrics, check=check, derive=derive, time_metric="generate_s",
                    teardown=teardown)


def _generation_config(model, new_tokens: int):
    """Greedy, exactly ``new_tokens`` tokens: min = max, so end-of-sequence can never stop it early."""
    from transformers import GenerationConfig

    pad = model.config.pad_token_id
    if pad is None:
        pad = model.config.eos_token_id if model.config.eos_token_id is not None else 0
    if isinstance(pad, list):
        pad = pad[0]
    return GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                            num_beams=1, pad_token_id=pad, eos_token_id=model.config.eos_token_id)
