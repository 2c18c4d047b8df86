"""The merge claim: a LoRA adapter merged into its base (W' = W + (alpha/r) B A) adds no inference latency.

A merge case (finetune suite, ``group: "merge"``) decodes with the pre-trained capitals model
(:func:`bench_lib.suites.convergence.pretrained`) in one of three ``variant`` s, on an fp32 or NF4 ``base``:

- ``base``: the pre-trained model alone;
- ``unmerged``: with the cached LoRA adapter (:func:`bench_lib.suites.convergence.finetuned`, method lora)
  attached by peft: every targeted layer computes ``W x + B (A x)``, two extra small matmuls per layer;
- ``merged``: the same adapter folded in by peft's ``merge_and_unload`` (timed: ``merge_s``), so the model
  is the base architecture again.

The timed call is ``generate`` of exactly ``new_tokens`` greedy tokens, stamped per token as in the precision
suite (``ttft_s``, ``decode_s``, ``decode_tokens_per_s``, ``itl_p*_s``). The merged case also checks that
merged and unmerged logits agree on held-out text: ``merge_max_abs_diff`` against ``merge_tolerance`` (a
relative 1e-4 of the largest logit: fp32 rounding of a sum in another order). On an NF4 base peft
dequantizes each 4-bit weight, adds B A in the compute dtype and quantizes the sum to NF4 again, so the
merged model carries a new rounding error: there the difference is recorded (with ``merge_kl_vs_unmerged``
and ``merge_top1_agreement``), never judged against the fp32 tolerance.
"""

from __future__ import annotations

import torch

from bench_lib.harness import timing
from bench_lib.harness.workload import Case, CaseFailed, Context, Unsupported, Workload
from bench_lib.suites import convergence, quality, quant, token_clock

VARIANTS = ("base", "unmerged", "merged")
BASES = ("fp32", "nf4")
RELATIVE_TOLERANCE = 1e-4  # of the largest |logit|: reordered fp32 sums, not a different function


def merge_adapter(peft_model):
    """peft's ``merge_and_unload``: W' = W + (alpha / r) B A in every adapted layer, adapters removed."""
    return peft_model.merge_and_unload()


def _eval_ids(pre: convergence.Pretrained, cfg: convergence.Config) -> torch.Tensor:
    from bench_lib.suites import precision

    source = precision.Trained(str(pre.path), cfg, pre.tokenizer, {})
    return precision.heldout_text_ids(source).view(precision.TRAINED_EVAL_SEQS, cfg.seq)[:8]


@torch.no_grad()
def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids.to(model.device)).logits.float().cpu()


def build(case: Case, ctx: Context) -> Workload | Unsupported:
    p = case.params
    base_id, variant = p["base"], p["variant"]
    if base_id not in BASES or variant not in VARIANTS:
        raise ValueError(f"merge cases take base in {BASES} and variant in {VARIANTS}, not {base_id}/{variant}")
    reason = quant.PRECISIONS[base_id].support(ctx.device)
    if reason:
        return Unsupported(reason)
    cfg, device = convergence.Config.from_params(p), ctx.device
    pre = convergence.pretrained(cfg, device)
    model = quant.load_model(str(pre.path), base_id, device)
    metrics: dict = {"base_precision": base_id, "variant": variant, **pre.record()}
    ids = _eval_ids(pre, cfg)
    if variant != "base":
        from peft import PeftModel

        adapter, info = convergence.finetuned(cfg, device, "lora", p["rank"], p["targets"])
        metrics.update(adapter_trained_here_s=info["trained_here_s"], adapter_trained_on_precision="fp32")
        model = PeftModel.from_pretrained(model, str(adapter)).eval()
    if variant == "merged":
        unmerged = _logits(model, ids)
        holder = {}
        metrics["merge_s"] = timing.wall(lambda: holder.update(model=merge_adapter(model)), device)
        model = holder.pop("model").eval()
        merged = _logits(model, ids)
        diff = float((merged - unmerged).abs().max())
        tol = RELATIVE_TOLERANCE * float(unmerged.abs().max())
        same = quality.kl_and_top1(torch.log_softmax(unmerged, -1), torch.log_softmax(merged, -1))
        metrics.update(merge_max_abs_diff=diff, merge_tolerance=tol, merge_kl_vs_unmerged=same["kl_vs_ref"],
                       merge_top1_agreement=same["top1_agreement"], merge_requantized=base_id != "fp32")
        metrics["merge_within_tolerance"] = diff <= tol
        if base_id == "fp32" and diff > tol:
            raise CaseFailed(f"merged logits differ from unmerged by {diff:.3g} (tolerance {tol:.3g})", metrics)

    batch, new_tokens = p["batch"], p["new_tokens"]
    prompt = ids[:1, :p["prompt_tokens"]].expand(batch, -1).contiguous().to(device)
    mask = torch.ones_like(prompt)
    from bench_lib.suites.precision import _generation_config

    config = _generation_config(model, new_tokens)

    def generate(processors=()):
        with torch.no_grad():
            return model.generate(input_ids=prompt, attention_mask=mask, generation_config=config,
                                  logits_processor=list(processors))

    traces: list = []
    window: dict[str, int] = {}  # where the runner's timed calls start and stop in ``traces``

    def check():
        produced = generate().shape[1] - prompt.shape[1]
        if produced != new_tokens:
            raise CaseFailed(f"generated {produced} tokens, not the fixed {new_tokens}")
        return {"new_tokens": produced, "model_bytes": quant.model_bytes(model)}

    def derive(time_s: float) -> dict:
        try:
            return token_clock.summarize(traces[window["start"]:window["stop"]], batch, new_tokens)
        except ValueError as exc:
            raise CaseFailed(f"per-token timing: {exc}") from None

    def teardown():
        nonlocal model
        model = None
        traces.clear()

    return Workload(token_clock.traced(generate, device, traces), metrics=metrics, check=check, derive=derive,
                    time_metric="generate_s", memory_fn=generate, teardown=teardown,
                    on_timing=lambda event: window.update({event: len(traces)}))
