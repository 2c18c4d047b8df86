"""Fine-tuning methods and the one training step they share: full (FP32 / mixed precision), LoRA, QLoRA.

The ``finetune method`` registry holds one canonical id per method. Every method is measured with the same
:func:`train_step` (forward, loss, backward, optimizer step, zero grad); only :func:`prepare` differs:

- ``full``: fp32 weights, every weight trains, fp32 compute (AdamW).
- ``full_amp``: fp32 master weights, every weight trains, bf16 autocast (fp16 + GradScaler on GPUs without bf16).
- ``lora``: frozen fp32 base, LoRA A and B of rank r train, fp32 compute.
- ``qlora``: frozen NF4 base (:func:`bench_lib.suites.quant.load_model`), LoRA trains, bf16 autocast (fp16 + scaler
  without bf16).

LoRA (Hu et al. 2021) adds ``(alpha / r) * B A`` beside each targeted weight, B: d_out x r, A: r x d_in,
so one layer trains ``r * (d_in + d_out)`` parameters; alpha = 2r (the tutorial's heuristic). QLoRA
(Dettmers et al. 2023) puts the frozen base in NF4 and prepares it with peft's
``prepare_model_for_kbit_training``. The suite that measures them is :mod:`bench_lib.suites.finetune`; the
end-to-end quality runs are :mod:`bench_lib.suites.convergence`.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

import torch

from bench_lib.harness import registry
from bench_lib.suites import models

# LoRA target sets per model family: module-name suffixes, as in ModelPreset.linear_shapes()
TARGETS = {
    "llama": {
        "attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
        "all_linear": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    },
    "gpt2": {
        "attn": ("attn.c_attn", "attn.c_proj"),
        "all_linear": ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
    },
}


def _qlora_support(device: torch.device) -> str | None:
    from bench_lib.suites import quant

    return quant.PRECISIONS["nf4"].support(device)


METHODS = registry.new("finetune method")
METHODS.register("full", "every weight trains; FP32 weights, gradients and AdamW states",
                 base="fp32", adapters=False, amp=False)
METHODS.register("full_amp", "every weight trains; FP32 master weights, bf16 autocast (fp16 + GradScaler without bf16)",
                 base="fp32", adapters=False, amp=True)
METHODS.register("lora", "frozen FP32 base, LoRA adapters train (alpha = 2r)",
                 base="fp32", adapters=True, amp=False)
METHODS.register("qlora", "frozen NF4 base (bitsandbytes), LoRA adapters train with bf16 compute",
                 _qlora_support, base="nf4", adapters=True, amp=True)


@dataclass(frozen=True)
class Recipe:
    """How to prepare a model for training.

    rank: LoRA rank r (higher: more capacity, more adapter memory); None for full fine-tuning.
    targets: ``attn`` (attention projections) or ``all_linear`` (also the MLP; more parameters, more capacity).
    checkpointing: recompute block activations in backward (less activation memory, ~one extra forward).
    attention: transformers attention implementation, ``sdpa`` or ``eager`` (materializes the s x s scores).
    """

    method: str
    rank: int | None = None
    targets: str | None = None
    checkpointing: bool = False
    attention: str = "sdpa"
    lr: float = 1e-4

    def __post_init__(self):
        entry = METHODS[self.method]  # raises on an unknown id
        if entry.options["adapters"] and not (self.rank and self.rank > 0 and self.targets in ("attn", "all_linear")):
            raise ValueError(f"{self.method} needs rank > 0 and targets attn|all_linear")
        if not entry.options["adapters"] and (self.rank is not None or self.targets is not None):
            raise ValueError(f"{self.method} trains every weight: rank/targets must be None")
        if self.attention not in ("sdpa", "eager"):
            raise ValueError(f"attention must be sdpa or eager, not {self.attention!r}")


@dataclass
class Trainer:
    """A prepared model with its optimizer: everything :func:`train_step` needs.

    autocast_dtype: dtype of autocast regions, or None for plain fp32. scaler: GradScaler for fp16, else None.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    autocast_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    params: list = field(default_factory=list)  # the trainable parameters

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def train_step(trainer: Trainer, batch: dict, keep_grads: bool = False) -> torch.Tensor:
    """One optimizer step on ``batch`` (input_ids/labels: batch x seq): forward, loss, backward, step, zero grad.

    The single step every method is timed with. Returns the loss (detached, not synchronized).
    keep_grads: leave the ``.grad`` tensors in place (only to measure them; timed steps free them).
    """
    with trainer.autocast():
        loss = trainer.model(**batch).loss
    if trainer.scaler is not None:
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
    else:
        loss.backward()
        trainer.optimizer.step()
    if not keep_grads:
        trainer.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def amp_dtype(device: torch.device) -> torch.dtype:
    """Mixed-precision compute dtype: bf16 where the device has it (CPU autocast always does), else fp16."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.float16
    return torch.bfloat16


def lora_config(rank: int, targets: str, family: str):
    """peft ``LoraConfig``: alpha = 2r, no dropout (so methods differ only in what trains), no bias."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=list(TARGETS[family][targets]),
        fan_in_fan_out=family == "gpt2",  # GPT-2's Conv1D stores weights as d_in x d_out
        task_type="CAUSAL_LM",
    )


def lora_param_count(preset: models.ModelPreset, rank: int, targets: str) -> int:
    """Trainable LoRA parameters: r * (d_in + d_out) for every targeted linear of every block."""
    wanted = TARGETS[preset.family][targets]
    return preset.layers * sum(rank * (d_in + d_out) for name, d_in, d_out in preset.linear_shapes() if name in wanted)


def load_base(recipe: Recipe, preset: models.ModelPreset, device: torch.device, seed: int = 0):
    """The model a method starts from: fp32 random weights, or NF4 via :func:`bench_lib.suites.quant.load_model`."""
    if METHODS[recipe.method].options["base"] == "nf4":
        from bench_lib.suites import quant

        return quant.load_model(preset, "nf4", device, seed, compute_dtype=amp_dtype(device),
                                attn_implementation=recipe.attention)
    return models.build(preset, device, torch.float32, seed, attn_implementation=recipe.attention)


def _enable_checkpointing(model, kwargs: dict) -> None:
    """Recompute each block's activations in backward (transformers 5 renamed the method; 4.x has the old one)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def prepare(model, recipe: Recipe, family: str, device: torch.device) -> Trainer:
    """Turn a base model into a :class:`Trainer` for ``recipe``: the only place where methods differ."""
    opts = METHODS[recipe.method].options
    model.config.use_cache = False  # no KV cache while training
    ckpt_kwargs = {"use_reentrant": False}  # non-reentrant: works with frozen inputs, no input-grad hack
    if opts["base"] == "nf4":
        from peft import prepare_model_for_kbit_training

        # freezes the base, upcasts norms/embeddings/head to fp32, enables checkpointing if asked
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.checkpointing,
                                                gradient_checkpointing_kwargs=ckpt_kwargs)
    elif recipe.checkpointing:
        _enable_checkpointing(model, ckpt_kwargs)
    if opts["adapters"]:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(recipe.rank, recipe.targets, family))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    dtype = amp_dtype(device) if opts["amp"] else None
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    optimizer = torch.optim.AdamW(params, lr=recipe.lr)
    return Trainer(model, optimizer, device, dtype, scaler, params)


def setup(recipe: Recipe, preset: models.ModelPreset, device: torch.device, seed: int = 0) -> Trainer:
    """Base model of ``preset`` prepared for ``recipe`` on ``device`` (same seed: same base weights)."""
    return prepare(load_base(recipe, preset, device, seed), recipe, preset.family, device)


def step_fn(trainer: Trainer, batch: dict):
    """The timed zero-argument callable: :func:`train_step` bound to one trainer and one fixed batch."""
    return functools.partial(train_step, trainer, batch)


def random_batch(vocab: int, batch: int, seq: int, device: torch.device, seed: int = 0) -> dict:
    """A fixed batch of random token ids (batch x seq, int64); labels = inputs (the model shifts them)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=g).to(device)
    return {"input_ids": ids, "labels": ids}


# ---------------------------------------------------------------- what a step keeps in memory, in bytes
def trainable_params(trainer: Trainer) -> int:
    return sum(p.numel() for p in trainer.params)


def total_params(model) -> int:
    """Parameters the model stands for; bitsandbytes packs two 4-bit weights per byte (``quant_state.shape``)."""
    total = 0
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        total += qs.shape.numel() if qs is not None else p.numel()
    return total


def grad_bytes(trainer: Trainer) -> int:
    """Bytes of the ``.grad`` tensors that exist now (call after ``train_step(..., keep_grads=True)``)."""
    return sum(p.grad.untyped_storage().nbytes() for p in trainer.params if p.grad is not None)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimizer's state (AdamW: exp_avg, exp_avg_sq and a scalar step each)."""
    return sum(v.untyped_storage().nbytes() for state in optimizer.state.values()
               for v in state.values() if isinstance(v, torch.Tensor))


def state_dict_bytes(model) -> int:
    """Bytes of the model's state dict, each storage once (what a full fine-tune has to save)."""
    seen, total = set(), 0
    for t in model.state_dict().values():
        key = (t.device, t.untyped_storage().data_ptr())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def adapter_bytes(model) -> int:
    """Size on disk of the saved LoRA adapter (peft ``save_pretrained`` to a temporary folder)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="effbench-adapter-") as tmp:
        model.save_pretrained(tmp)
        return sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file() and f.suffix == ".safetensors")
