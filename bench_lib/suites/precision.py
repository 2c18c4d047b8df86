"""Precision suite: memory, speed and quality lost, per (model, precision, batch), in one record.

Per case (params ``model``, ``precision``, ``batch``, ``prompt_tokens``, ``new_tokens``):
- memory: ``weight_bytes`` / ``bits_per_param`` of the quantizable linear layers as loaded (quantization state
  included, see :func:`bench_lib.suites.quant.linear_weight_footprint`), ``weight_bytes_in_use`` after decoding
  (bitsandbytes repacks 4-bit weights for its CPU kernel on the first forward), ``model_bytes`` (whole
  model); the harness's memory probe gives the peak during generation.
- speed: ``load_s`` (``from_pretrained`` from a local checkpoint: read + cast/quantize + move), ``prefill_s``
  (one forward over the prompt); the timed call is ``generate`` of exactly ``new_tokens`` greedy tokens
  (min = max, end-of-sequence suppressed) for a (batch, prompt_tokens) prompt. Every token of every timed
  call is stamped inside the call (:mod:`bench_lib.suites.token_clock`): ``ttft_s``, ``decode_s``,
  ``decode_tokens_per_s`` and ``itl_p50_s``/``itl_p90_s``/``itl_p99_s`` come from those same samples, and
  ``token_clock_overhead_frac`` is the stamping's own cost as a share of the decode time.
- compile (param ``compile=compiled``, id suffix ``-compiled``): transformers' own compiled decode, a static
  KV cache with the decoding step's forward torch.compile'd (``CompileConfig``; on CPU too). The harness
  times the compiling call apart (``compile_s``) and fails the case on any recompilation in the timed
  rounds; ``tokens_match_eager`` compares its greedy tokens with the same weights decoding eagerly. A
  quantizer transformers will not compile (bitsandbytes') is ``unsupported`` with that reason.
- quality against the reference model on the same inputs: ``kl_vs_ref`` (mean over token positions of
  KL(ref || candidate) of the next-token distributions, nats), ``top1_agreement``, and with real weights
  ``perplexity``. The reference is fp32, or the highest precision that fits (``reference_precision``).

Weights: random presets (``synthetic_weights: true``: right for speed and memory, never for a quality
verdict), a ``--model`` checkpoint, or ``trained-gpt2``: the capitals model effbench pre-trains and
fine-tunes itself (:func:`bench_lib.suites.convergence.finetuned`, cached under ``EFFBENCH_CACHE``), loaded
through the same ``BitsAndBytesConfig`` paths as any checkpoint. Its quality is measured on held-out text of
its corpus (``quality_text``) with bootstrap intervals, plus ``heldout_accuracy`` on capitals the fine-tune
never asked about, with its Wilson interval and item count (:mod:`bench_lib.suites.quality`). When the
cache is empty the case trains the weights first, untimed, and says how long (``weights_trained_here_s``).

Random weights give near-uniform next-token distributions, where top-1 agreement is a coin toss; presets
are therefore loaded with the final norm's gain scaled so logits have std :data:`SYNTHETIC_LOGIT_STD` (same
weights for every precision; every other weight keeps its usual init). Quality from random weights is
still not the quality of a trained model: it measures how much each format perturbs the same network.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from dataclasses import dataclass
from importlib import resources

import torch

from bench_lib.harness import compiled as dynamo_counters
from bench_lib.harness import device as devices
from bench_lib.harness import profiles, timing
from bench_lib.harness.workload import Case, CaseFailed, Context, Unsupported, Workload
from bench_lib.suites import convergence, models, quality, quant, token_clock
from bench_lib.suites import convergence_data as data

# Gaussian logits of std 4 over 8k-50k tokens have 3.4-4.3 nats of entropy (top token ~0.25-0.3), near a
# trained LM's 2-3 nats; records carry the reference's measured entropy (``reference_entropy_nats``).
SYNTHETIC_LOGIT_STD = 4.0
EVAL_SEQS, EVAL_LEN = 4, 64  # quality inputs: 256 next-token distributions
PERPLEXITY_MAX_TOKENS = 512
REFERENCE_ORDER = ("fp32", "bf16", "fp16")  # the reference is the first of these that runs and fits
SEED = 0
TRAINED_MODEL = "trained-gpt2"  # the model name of cases on effbench's own trained weights
TRAINED_EVAL_SEQS = 32  # held-out sequences for trained quality: the bootstrap resamples these
HELDOUT_TEXT_SEED = 10_000  # the held-out text is generated with this seed, never the training seed
CLOCK = time.perf_counter  # the per-token clock (tests substitute a fake one)

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


kl_and_top1 = quality.kl_and_top1
perplexity = quality.perplexity


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
@dataclass
class Trained:
    """effbench's own fine-tuned capitals model: checkpoint folder, its config and tokenizer, cache info."""

    path: str
    cfg: convergence.Config
    tokenizer: object
    info: dict

    def __str__(self) -> str:
        return self.path


def _source(case: Case, ctx: Context):
    """(what load_model takes, n_params, vocab, tokenizer or None) for the case's preset, ``--model`` or the
    trained model (its tokenizer is a ``tokenizers.Tokenizer``)."""
    path = ctx.options.get("model")
    if case.params["model"] == TRAINED_MODEL:
        cfg = convergence.Config.from_params(case.params)
        folder, info = convergence.finetuned(cfg, ctx.device, "full")  # trains first when the cache is empty
        return Trained(str(folder), cfg, convergence.load_tokenizer(folder), info), cfg.preset().param_count(), \
            cfg.vocab, None
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


def preparations(cases: list[Case], ctx: Context) -> list:
    """What the trained-weight cases load (the pre-trained model and its full fine-tune), trained by the
    session before the first case when the cache lacks them (:func:`bench_lib.suites.convergence.preparation`)."""
    out = []
    for case in cases:
        if case.params["model"] == TRAINED_MODEL:
            cfg = convergence.Config.from_params(case.params)
            out += [convergence.preparation(cfg, ctx.device), convergence.preparation(cfg, ctx.device, "full")]
    return out


def heldout_text_ids(source: Trained) -> torch.Tensor:
    """Token ids of held-out text from the trained model's corpus: sentences generated with
    :data:`HELDOUT_TEXT_SEED` (not the training seed), each ended by end-of-text, as in pre-training."""
    cfg, tok = source.cfg, source.tokenizer
    eos = tok.token_to_id(data.EOS)
    need = TRAINED_EVAL_SEQS * cfg.seq
    ids: list[int] = []
    n = 256
    while len(ids) < need:
        ids = [i for enc in tok.encode_batch(data.pretrain_sentences(n, HELDOUT_TEXT_SEED)) for i in enc.ids + [eos]]
        n *= 2
    return torch.tensor(ids[:need])


def _trained_inputs(source: Trained, batch: int, prompt_tokens: int) -> tuple[torch.Tensor, ...]:
    stream = heldout_text_ids(source)
    evals = stream.view(TRAINED_EVAL_SEQS, source.cfg.seq)
    return stream[:prompt_tokens].expand(batch, -1).contiguous(), evals, evals


def _load(source, precision_id: str, ctx: Context):
    synthetic = isinstance(source, models.ModelPreset)
    return quant.load_model(str(source) if isinstance(source, Trained) else source, precision_id, ctx.device,
                            seed=SEED, logit_std=SYNTHETIC_LOGIT_STD if synthetic else None)


def _task_accuracy(model, source: Trained, device) -> int:
    """Held-out capitals answered right by greedy decoding (the fine-tune never asked about these)."""
    with _quiet():
        return convergence.correct_answers(model, source.tokenizer, data.HELD_OUT, source.cfg.max_new_tokens,
                                           device)


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
        if isinstance(source, Trained):
            entry["heldout_accuracy"] = _task_accuracy(model, source, ctx.device) / len(data.HELD_OUT)
        if owned:  # free the reference before the candidate loads (they need not fit together)
            del model
            devices.release_memory(ctx.device)
        while len(_REFERENCES) >= 4:  # bounded: a sweep visits sources one after the other
            _REFERENCES.pop(next(iter(_REFERENCES)))
        _REFERENCES[key] = entry
    return _REFERENCES[key]


def _weights_record(source, ctx: Context) -> dict:
    """What the record says about the weights: random, a checkpoint, or effbench's trained model."""
    if isinstance(source, models.ModelPreset):
        return {"synthetic_weights": True, "synthetic_logit_std": SYNTHETIC_LOGIT_STD,
                "weights_stored_dtype": str(quant.stored_dtype(source)).removeprefix("torch.")}
    if isinstance(source, Trained):
        pre = source.info["pretrain"]
        return {"synthetic_weights": False, "trained_weights": True, "pretrain_corpus": pre["pretrain_corpus"],
                "quality_text": f"held-out {pre['pretrain_corpus']} text (seed {HELDOUT_TEXT_SEED})",
                "weights_reused": bool(source.info["reused"]),
                # training that ran inside this case's build, apart from the case's timed calls (0: cached)
                "weights_trained_here_s": source.info["trained_here_s"] + pre["pretrain_trained_here_s"],
                "pretrain_s": pre["pretrain_s"], "finetune_s": source.info["finetune_s"],
                "weights_cache": source.path}
    return {"synthetic_weights": False, "quality_text": "bundled public-domain text"}


def build(case: Case, ctx: Context) -> Workload | Unsupported:
    precision_id, batch = case.params["precision"], case.params["batch"]
    prompt_tokens, new_tokens = case.params["prompt_tokens"], case.params["new_tokens"]
    reason = quant.PRECISIONS[precision_id].support(ctx.device)
    if reason:
        return Unsupported(reason)
    path = ctx.options.get("model")
    trained_case = case.params["model"] == TRAINED_MODEL
    if path and not trained_case and case.params["model"] != profiles.checkpoint_label(path):
        return Unsupported(f"--model {path} replaces the preset ladder: its cases are named "
                           f"{profiles.checkpoint_label(path)}, not {case.params['model']}")
    if not path and case.params["model"].startswith("ckpt-"):
        return Unsupported(f"this case measures a checkpoint ({case.params['model']}): run with --model PATH")
    source, n_params, vocab, tokenizer = _source(case, ctx)
    if isinstance(source, Trained):
        prompt, evals, ppl_ids = _trained_inputs(source, batch, prompt_tokens)
    else:
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
    compiled = case.params.get("compile", "eager") == "compiled"
    if compiled:  # transformers' own compiled decode: a static KV cache, its decoding forward torch.compile'd
        reason = _compile_support(model, precision_id)
        if reason:
            return Unsupported(reason)
        from transformers import CompileConfig

        gen_config.cache_implementation = "static"
        # transformers compiles only on GPUs unless told: _compile_all_devices makes CPU compile the same way
        gen_config.compile_config = CompileConfig(fullgraph=False, dynamic=False)
        gen_config.compile_config._compile_all_devices = True

    def generate(processors=()):
        with _quiet(), torch.no_grad():
            return model.generate(input_ids=prompt, attention_mask=mask, generation_config=gen_config,
                                  logits_processor=list(processors))

    traces: list = []  # (t0, per-token stamps) of every traced call: warm-up, timed rounds, energy window
    timed_generate = token_clock.traced(generate, ctx.device, traces, CLOCK)
    window: dict[str, int] = {}  # the runner says where its timed calls start and stop in ``traces``

    def prefill():
        with _quiet(), torch.no_grad():
            return model(input_ids=prompt, attention_mask=mask, use_cache=True)

    kept: dict = {}

    frames_at_build = compiled_frames()

    def check():
        if compiled and compiled_frames() == frames_at_build:  # the harness's compile call ran before check
            raise CaseFailed("generate ran uncompiled: transformers did not compile the decoding forward")
        out = generate()  # also the first forward: bitsandbytes' one-time CPU repacking happens here
        produced = out.shape[1] - prompt.shape[1]
        metrics = {"new_tokens": produced, "weight_bytes_in_use": quant.linear_weight_footprint(model)["weight_bytes"]}
        if compiled:  # the compiled decode's greedy tokens against the same weights decoding eagerly
            with _quiet(), torch.no_grad():
                eager = model.generate(input_ids=prompt, attention_mask=mask,
                                       generation_config=_generation_config(model, new_tokens))
            new = slice(prompt.shape[1], None)
            metrics["tokens_match_eager"] = (out[:, new] == eager[:, new]).float().mean().item()
            if metrics["tokens_match_eager"] < 0.5:  # greedy paths may part late on a near-tie, never early
                raise CaseFailed(f"compiled decode agrees with eager on only {metrics['tokens_match_eager']:.0%} "
                                 "of the greedy tokens", metrics)
        if produced != new_tokens:
            raise CaseFailed(f"generated {produced} tokens, not the fixed {new_tokens}", metrics)
        repeats = min(3, ctx.profile.min_rounds)  # median of 3 (smoke: 1)
        metrics["prefill_s"] = statistics.median(timing.wall(prefill, ctx.device) for _ in range(repeats))
        metrics["token_clock_call_s"] = kept["clock_call_s"] = token_clock.clock_overhead_s(ctx.device, clock=CLOCK)
        if ppl_ids is not None:
            metrics["perplexity"] = perplexity(log_probs(model, ppl_ids), ppl_ids)
        if isinstance(source, Trained):
            metrics.update(quality.accuracy_with_interval(_task_accuracy(model, source, ctx.device),
                                                          len(data.HELD_OUT)))
        if ref is None:
            return metrics
        cand = log_probs(model, evals)
        if isinstance(source, Trained):
            metrics.update(quality.kl_and_top1_with_intervals(ref["logp"], cand))
            metrics["reference_heldout_accuracy"] = ref["heldout_accuracy"]
        else:
            metrics.update(kl_and_top1(ref["logp"], cand))
        metrics["reference_entropy_nats"] = ref["entropy"]
        if ppl_ids is not None:
            metrics["reference_perplexity"] = ref["perplexity"]
        if not all(torch.isfinite(torch.tensor(metrics[k])) for k in ("kl_vs_ref", "top1_agreement")):
            raise CaseFailed(f"{precision_id} gives non-finite quality metrics", metrics)
        return metrics

    footprint = quant.linear_weight_footprint(model)
    weight_bytes_total = quant.model_bytes(model)

    def derive(time_s: float) -> dict:
        """TTFT, decode and inter-token latency from the timed calls' own per-token stamps."""
        try:
            out = token_clock.summarize(traces[window["start"]:window["stop"]], batch, new_tokens)
        except ValueError as exc:
            raise CaseFailed(f"per-token timing: {exc}",
                             {"per_token_calls": window["stop"] - window["start"]}) from None
        decode_s = out["decode_s"]
        out["generate_tokens_per_s"] = batch * new_tokens / time_s
        # the stamping's own cost: one hook call per token, against the decode it sits in
        out["token_clock_overhead_frac"] = kept["clock_call_s"] * new_tokens / decode_s
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
        "compute_dtype": str(quant.FLOAT_DTYPES.get(precision_id) or quant.default_compute_dtype(ctx.device))
        .removeprefix("torch."),
        "model_source": ctx.options.get("model") if not trained_case and path else case.params["model"],
        **_weights_record(source, ctx),
    }
    if compiled:
        metrics["cache_implementation"] = "static"
        metrics["compile_scope"] = "the decoding step's forward (transformers' CompileConfig); prefill eager"
    if precision_id in quant.AO_IDS:  # torchao's version and the config object's repr, with its group size
        metrics.update(quant.ao_info(precision_id))
    kernel = quant.cpu_4bit_kernel(model)
    if kernel:
        metrics["bnb_cpu_4bit_kernel"] = kernel

    def teardown():
        nonlocal model
        model = None
        traces.clear()

    return Workload(timed_generate, metrics=metrics, check=check, derive=derive, time_metric="generate_s",
                    memory_fn=generate, teardown=teardown, on_timing=lambda event: window.update({event: len(traces)}),
                    compiled=compiled)


def compiled_frames() -> int:
    return dynamo_counters.compilations()


def _compile_support(model, precision_id: str) -> str | None:
    """Why transformers would not compile this model's decode (it would silently run eager), or None."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and not quantizer.is_compileable:
        return f"transformers does not compile generate for {precision_id} ({type(quantizer).__name__} is not compileable)"
    if not getattr(model, "_can_compile_fullgraph", True) and not getattr(model, "_supports_static_cache", True):
        return f"{type(model).__name__} has no static KV cache in this transformers"
    return None


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
