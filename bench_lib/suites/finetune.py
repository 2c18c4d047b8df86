"""Fine-tuning suite: cost of one optimizer step for full, mixed-precision, LoRA and QLoRA fine-tuning.

A cost case (``group: "cost"``) prepares one method on a preset (:mod:`bench_lib.suites.training`) and times
:func:`bench_lib.suites.training.train_step` on a fixed random batch (``batch`` x ``seq`` tokens, in the case
parameters); every method is timed by that same function. Convergence cases (``group: "convergence"``) are
end-to-end fine-tunes built by :mod:`bench_lib.suites.convergence`; merge cases (``group: "merge"``) decode
with a LoRA adapter unmerged and merged (:mod:`bench_lib.suites.merge`).

Metrics of a cost case (bytes are storage bytes, each storage once):
- ``step_s`` (timed), ``tokens_per_s`` = batch*seq / step_s, ``tflops`` with ``flop_formula`` (model FLOPs,
  :mod:`bench_lib.suites.flops`), ``frac_of_measured_peak`` (vs the calibration suite's matmul rate, when it ran)
  and ``frac_of_peak`` (vs the GPU catalog's datasheet peak, on known GPUs).
- ``trainable_params``, ``total_params``, ``trainable_frac``; ``weight_bytes`` (every parameter and buffer,
  quantization state and adapters included), ``grad_bytes`` (the ``.grad`` tensors after a step),
  ``optimizer_state_bytes`` (AdamW's state tensors after a warm step), ``adapter_bytes`` (the saved adapter
  file for LoRA/QLoRA; the state dict for full fine-tuning: what a checkpoint of the result costs).
- ``activation_bytes``: the peak of a dedicated, untimed forward pass (graph kept, as backward needs it)
  minus the memory held just before it (weights, optimizer state, batch: the static parts; gradients do not
  exist yet because every step frees them). Measured with :func:`bench_lib.harness.memory.measure` on PyTorch's
  allocator view (CUDA: allocated bytes; CPU: profiler memory events; RSS only where neither exists, it reads
  the heap's reuse and fragmentation too), so it holds what autograd saves for
  backward plus the forward's transient peak (logits, autocast's low-precision weight copies).
"""

from __future__ import annotations

import torch

from bench_lib.harness import hardware, memory
from bench_lib.harness.workload import Case, CaseFailed, Context, Unsupported, Workload
from bench_lib.suites import convergence, flops, merge, models, quant, training

METHODS = training.METHODS  # the "finetune method" registry
train_step = training.train_step  # the one step every method is timed with
WARM_STEPS_MAX = 16  # fp16 loss scaling starts at 2**16 and halves per overflowing step


# compiled forward vs eager forward, relative loss difference (fusion reorders fp32 sums; bf16/fp16 rounds more)
COMPILED_LOSS_TOL = 1e-4
COMPILED_LOSS_TOL_AMP = 2e-2


def recipe_of(params: dict) -> training.Recipe:
    """The :class:`~bench_lib.suites.training.Recipe` a cost case's parameters describe."""
    return training.Recipe(params["method"], params.get("rank"), params.get("targets"),
                           bool(params.get("checkpointing", False)), params.get("attention", "sdpa"))


def _matmul_dtype(trainer: training.Trainer) -> str:
    """The dtype whose matmul peak applies: autocast's, else fp32 (TF32 on CUDA when allowed)."""
    if trainer.autocast_dtype is not None:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}[trainer.autocast_dtype]
    tf32 = trainer.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    return hardware.matmul_dtype("fp32", tf32)


def step_flop(preset: models.ModelPreset, recipe: training.Recipe, tokens: int) -> tuple[int, str]:
    """(FLOPs of one step, formula id): 6NT for full fine-tuning, 4NT + 6 N_lora T for LoRA/QLoRA."""
    n = flops.train_matmul_params(preset)
    if recipe.rank is None:
        return flops.full_train_flop(n, tokens), flops.FULL_TRAIN_FORMULA
    n_lora = training.lora_param_count(preset, recipe.rank, recipe.targets)
    return flops.lora_train_flop(n, n_lora, tokens), flops.LORA_TRAIN_FORMULA


def build(case: Case, ctx: Context) -> Workload | Unsupported:
    """The workload of one fine-tune case: a cost case here, a convergence case in :mod:`bench_lib.suites.convergence`."""
    p = case.params
    if p.get("group") == "convergence":
        return convergence.build(case, ctx)
    if p.get("group") == "merge":
        return merge.build(case, ctx)
    if p.get("group") == "distributed":
        from bench_lib.suites import distributed

        return distributed.build(case, ctx)
    recipe = recipe_of(p)
    reason = METHODS[recipe.method].support(ctx.device)
    if reason:
        return Unsupported(reason)
    preset = models.preset(p["model"])
    device = ctx.device
    trainer = training.setup(recipe, preset, device, seed=p.get("seed", 0))
    batch = training.random_batch(preset.vocab, p["batch"], p["seq"], device, seed=p.get("seed", 0))
    tokens = p["batch"] * p["seq"]
    flop, formula = step_flop(preset, recipe, tokens)
    trainable, total = training.trainable_params(trainer), training.total_params(trainer.model)
    adapters = METHODS[recipe.method].options["adapters"]
    expected = training.lora_param_count(preset, recipe.rank, recipe.targets) if adapters else preset.param_count()
    metrics = {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_frac": trainable / total,
        "weight_bytes": quant.model_bytes(trainer.model),
        "adapter_bytes": training.adapter_bytes(trainer.model) if adapters else training.state_dict_bytes(trainer.model),
        "tokens_per_step": tokens,
        "flop": flop,
        "flop_formula": formula,
        "matmul_dtype": _matmul_dtype(trainer),
    }

    compiled = p.get("compile", "eager") == "compiled"
    if compiled:  # nn.Module.compile: the forward compiled in place (same parameters, optimizer unchanged)
        trainer.model.compile()
    dtype_name = metrics["matmul_dtype"]
    spec = hardware.lookup(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    kept: dict = {}

    def forward_only():
        with trainer.autocast():
            kept["loss"] = trainer.model(**batch).loss  # keeps the graph: what backward would need

    def check() -> dict:
        want_total = preset.param_count() + (expected if adapters else 0)
        if trainable != expected or total != want_total:  # peft wrapped other modules than the target set names
            raise CaseFailed(f"{recipe.method}: {trainable} trainable of {total} parameters, expected "
                             f"{expected} of {want_total}", {"expected_trainable_params": expected})
        loss = float(train_step(trainer, batch, keep_grads=True))  # warm step: optimizer state now exists
        for _ in range(WARM_STEPS_MAX):  # fp16's GradScaler skips the optimizer on overflow until its scale fits
            if trainer.optimizer.state:
                break
            trainer.optimizer.zero_grad(set_to_none=True)
            loss = float(train_step(trainer, batch, keep_grads=True))
        out = {"warm_step_loss": loss, "grad_bytes": training.grad_bytes(trainer),
               "optimizer_state_bytes": training.optimizer_state_bytes(trainer.optimizer)}
        trainer.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(torch.tensor(loss)):
            raise CaseFailed(f"{recipe.method}: loss is {loss} after one step", out)
        if compiled:  # the compiled forward against eager on the same weights and batch
            with torch.no_grad(), trainer.autocast():
                got = float(trainer.model(**batch).loss)
                with torch.compiler.set_stance("force_eager"):
                    want = float(trainer.model(**batch).loss)
            out.update(compiled_loss=got, eager_loss=want, compiled_rel_error=abs(got - want) / max(abs(want), 1e-12))
            tol = COMPILED_LOSS_TOL if trainer.autocast_dtype is None else COMPILED_LOSS_TOL_AMP
            if out["compiled_rel_error"] > tol:
                raise CaseFailed(f"{recipe.method}: compiled loss {got:.6g} vs eager {want:.6g} "
                                 f"(relative {out['compiled_rel_error']:.3g} over {tol:g})", out)
        probe = memory.measure(forward_only, device)  # dedicated untimed forward
        kept.clear()
        # the allocator view where the probe has one (RSS reads heap reuse and fragmentation, not tensors)
        alloc = probe.allocated_extra_bytes
        out["activation_bytes"] = alloc if alloc is not None else probe.extra_bytes
        return out

    def derive(median_s: float) -> dict:
        tflops = flop / median_s / 1e12
        out = {"tokens_per_s": hardware.training_tokens_per_s(p["batch"], p["seq"], median_s), "tflops": tflops}
        measured = hardware.frac_of_ceiling(tflops, ctx.ceilings, dtype_name)
        if measured is not None:  # the calibration suite ran earlier in this session
            out["frac_of_measured_peak"] = measured
        datasheet = hardware.frac_of_peak(tflops, spec, dtype_name) if spec is not None else None
        if datasheet is not None:
            out["frac_of_peak"] = datasheet
        return out

    def teardown():
        kept.clear()
        batch.clear()
        trainer.model = trainer.optimizer = None
        trainer.params.clear()

    return Workload(fn=training.step_fn(trainer, batch), metrics=metrics, check=check, derive=derive,
                    time_metric="step_s", teardown=teardown, compiled=compiled)
