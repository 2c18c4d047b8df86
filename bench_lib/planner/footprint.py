"""Predicted memory of one fine-tuning step: exact static bytes plus an inventory of saved activations.

Static parts are exact from the preset's shapes (:meth:`ModelPreset.param_count`, :meth:`linear_shapes`):
- ``full``     fp32 weights 4 B/param, fp32 gradients 4 B, AdamW ``exp_avg`` + ``exp_avg_sq`` 8 B: 16 B/param.
- ``full_amp`` the same 16 B/param (fp32 master weights, gradients and AdamW states stay fp32 under
               ``torch.autocast``), plus autocast's bf16 copies of every linear weight while a step runs.
- ``lora``     frozen base in ``base_dtype`` (default fp32), fp32 compute, + LoRA A/B (r x (d_in + d_out) per targeted linear)
               at 4 B weight + 4 B gradient + 8 B AdamW = 16 B per LoRA parameter.
- ``qlora``    block linears in NF4: 4 bits + one fp32 absmax per 64 weights = 4.5 bits/param
               (``nf4_dq``, double quantization: 4 + 8/64 + 32/(64*256) = 4.127 bits); embeddings, norms and head in
               ``base_dtype`` (default fp32: peft's ``prepare_model_for_kbit_training`` upcasts them; bf16 is what
               loading alone gives); LoRA at 16 B/param as above; compute under bf16 autocast.

Activations follow the method of Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
Models", sec. 4: count every tensor a layer keeps for backward, per token; their GPT total is sbh(34 + 5as/h)
bytes with fp16 activations and dropout). Here the count is for the transformers 5 Llama and GPT-2 code
(no dropout, SDPA attention), checked on CPU against ``saved_tensors_hooks`` to within 1-2%; frozen weights save
no inputs, autocast saves bf16 copies per linear, RMSNorm keeps an fp32 copy. ``coefficient`` (calibrated by
``effbench plan --calibrate``) scales this term only.

Peak: weights + optimizer state stay resident between steps (gradients are freed by ``zero_grad()``); a step
adds the largest of three phases: the start of backward (saved activations + the loss's fp32 gradient
buffers, 8 B per vocab entry per token, or the head's weight gradient), the optimizer step (gradients + AdamW
temporaries: 4 B/trainable param with CUDA's foreach kernels, two copies of the largest tensor on CPU), and,
with checkpointing, the recompute of one layer (layer inputs + one layer's activations + gradients).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench_lib.suites.models import ModelPreset

METHODS = ("full", "full_amp", "lora", "qlora")
QUANT_BITS = {"nf4": 4 + 32 / 64, "nf4_dq": 4 + 8 / 64 + 32 / (64 * 256)}
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
TARGET_SETS = {  # named target sets -> module-name suffixes (peft's matching rule)
    ("llama", "attn"): ("q_proj", "k_proj", "v_proj", "o_proj"),
    ("gpt2", "attn"): ("attn.c_attn", "attn.c_proj"),
}


@dataclass(frozen=True)
class Setup:
    """What is trained and how. ``targets``: attn | all_linear | comma-separated module names (peft suffix rule)."""

    method: str
    seq: int = 512
    batch: int = 1
    rank: int = 8
    targets: str = "attn"
    checkpointing: bool = False
    base_dtype: str | None = None  # non-quantized base weights; None: fp32
    quant: str = "nf4"
    attention: str = "sdpa"  # sdpa (no score matrix kept) | eager (s x s scores kept per head)
    device_type: str = "cuda"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.quant not in QUANT_BITS or self.attention not in ("sdpa", "eager"):
            raise ValueError(f"quant must be one of {', '.join(QUANT_BITS)}; attention sdpa or eager")
        if self.base_dtype is not None and self.base_dtype not in DTYPE_BYTES:
            raise ValueError(f"base_dtype must be one of {', '.join(DTYPE_BYTES)}")
        if min(self.seq, self.batch, self.rank) < 1:
            raise ValueError("seq, batch and rank must be positive")

    @property
    def tokens(self) -> int:
        return self.seq * self.batch

    @property
    def frozen_base(self) -> bool:
        return self.method in ("lora", "qlora")

    @property
    def base_bytes(self) -> int:
        """Bytes per element of the base model's non-quantized weights and of its residual stream."""
        return DTYPE_BYTES[self.base_dtype] if self.base_dtype else 4


@dataclass
class Footprint:
    """Predicted bytes (all per step; see the module docstring for the phases)."""

    total_params: int
    trainable_params: int
    weights_bytes: int
    gradients_bytes: int
    optimizer_state_bytes: int
    activation_bytes: float  # saved for backward, x coefficient
    loss_buffers_bytes: float
    optimizer_temp_bytes: float
    autocast_copies_bytes: int
    phases: dict[str, float] = field(default_factory=dict)  # phase -> bytes a step adds in it
    coefficient: float = 1.0
    # per rank under data parallelism (bench_lib.planner.sharding); single device: 1 rank, no buffers
    strategy: str = "single"
    world_size: int = 1
    gather_bytes: float = 0.0  # fsdp: unsharded parameters all-gathered during forward/backward (in phases)
    bucket_bytes: int = 0  # ddp: the Reducer's gradient buckets, resident

    @property
    def resident_bytes(self) -> int:
        """Held between steps: weights + optimizer state (+ DDP's gradient buckets)."""
        return self.weights_bytes + self.optimizer_state_bytes + self.bucket_bytes

    @property
    def step_added_bytes(self) -> float:
        """What a step adds on top of the resident state at its peak (what ``extra_peak_bytes`` measures)."""
        return max(self.phases.values())

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phases.get)

    @property
    def peak_bytes(self) -> float:
        """Peak of everything the step's tensors hold (torch's allocated view); no CUDA context."""
        return self.resident_bytes + self.step_added_bytes


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def targeted(p: ModelPreset, targets: str) -> set[str]:
    """Names (from :meth:`ModelPreset.linear_shapes`) of the linears that get LoRA adapters."""
    names = [n for n, _, _ in p.linear_shapes()]
    if targets == "all_linear":  # peft's "all-linear": every block linear, not the output head
        return set(names)
    wanted = TARGET_SETS.get((p.family, targets)) or tuple(t.strip() for t in targets.split(",") if t.strip())
    hit = {n for n in names if any(_matches(n, t) for t in wanted)}
    if not hit:
        raise ValueError(f"targets {targets!r} match no linear of {p.name} ({', '.join(names)})")
    return hit


def lora_params(p: ModelPreset, s: Setup) -> int:
    """LoRA A (d_in x r) + B (r x d_out) for every targeted linear of every layer."""
    hit = targeted(p, s.targets)
    return p.layers * sum(s.rank * (i + o) for n, i, o in p.linear_shapes() if n in hit)


def quantized_params(p: ModelPreset) -> int:
    """Parameters of the block linears, the ones bitsandbytes replaces (the head stays unquantized)."""
    return p.layers * sum(i * o for _, i, o in p.linear_shapes())


def _act_per_token(p: ModelPreset, s: Setup, one_layer: bool = False) -> float:
    """Bytes kept for backward per token: all layers (or one, for recompute) + final norm + log-softmax.

    Dtypes: ``r`` the residual stream (the base dtype), ``lin`` the block linears' outputs (bf16 under
    full_amp's autocast; bitsandbytes casts its outputs back to the input dtype, so r for qlora), ``att`` what
    SDPA keeps (bf16 inside autocast regions: full_amp and qlora).
    """
    frozen, amp = s.frozen_base, s.method in ("full_amp", "qlora")
    r = s.base_bytes
    lin = 2 if s.method == "full_amp" else r
    att = 2 if amp else lin
    hit = targeted(p, s.targets) if frozen else set()
    h, kv, i, heads = p.hidden, p.kv_heads * p.head_dim, p.intermediate, p.heads

    def inputs(d: int, xb: int, consumers: list[str], saved_already: bool = False) -> float:
        """Bytes of a linear input kept for the weight/adapter gradients (shared when no cast is needed)."""
        users = consumers if not frozen else [n for n in consumers if n in hit]
        if not users:
            return 0
        if amp and xb != 2:
            return 2 * d * len(users)  # autocast casts per call; each linear keeps its own bf16 copy
        if frozen and not amp and xb != 4:
            return 4 * d * len(users)  # peft casts the input to its fp32 adapters, per adapter
        return 0 if saved_already else xb * d

    xhat = 0 if frozen else r * h  # weight * xhat keeps xhat when the weight trains
    rms = 4 * h + xhat  # HF RMSNorm: pow() keeps an fp32 copy of its input
    adapters = (2 if amp else 4) * s.rank * len(hit)  # lora_B keeps lora_A's output
    if s.attention == "eager":  # fp32 softmax probabilities, plus their cast when computing in 16 bits
        scores = heads * s.seq * (4 + (att if att != 4 else 0))
        kv_kept = 2 * att * h  # repeat_kv copies for the matmuls
    else:
        scores, kv_kept = 0, 2 * att * kv
    if p.family == "llama":
        rope = 2 * p.head_dim * lin / s.batch  # cos and sin, one per position, shared by the batch
        layer = (
            rms + inputs(h, r, ["q_proj", "k_proj", "v_proj"]) + rope
            + att * h + kv_kept + att * h + scores  # rotated q, k, v, attention output
            + inputs(h, att, ["o_proj"], saved_already=True)
            + rms + inputs(h, r, ["gate_proj", "up_proj"])
            + 3 * lin * i  # SiLU input, SiLU output, up output (the product's gradient needs both factors)
            + inputs(i, lin, ["down_proj"])
            + adapters
        )
        final = 4 * h + xhat + (inputs(h, r, ["lm_head"]) if not frozen else 0)
    else:  # GPT-2: LayerNorm keeps its input; the CPU SDPA kernel keeps q, fused qkv, output and a copy (6h)
        attn = (6 if (s.device_type == "cpu" and not amp) else 4) * att * h
        if s.attention == "eager":
            attn = 4 * att * h + scores
        layer = (
            r * h + inputs(h, r, ["attn.c_attn"]) + attn
            + inputs(h, att, ["attn.c_proj"], saved_already=True)
            + r * h + inputs(h, r, ["mlp.c_fc"])
            + 4 * lin * i  # gelu_new: x (pow), tanh output, 0.5x and 1 + tanh for the product
            + inputs(i, lin, ["mlp.c_proj"])
            + adapters
        )
        final = r * h + (inputs(h, r, ["lm_head"]) if not frozen else 0)
    log_softmax = 4 * p.vocab  # cross-entropy keeps fp32 log-probabilities
    if one_layer:
        return layer
    body = p.layers * (r * h if s.checkpointing else layer)  # checkpointing keeps each layer's input only
    return body + final + log_softmax


def activation_bytes(p: ModelPreset, s: Setup) -> float:
    """Saved-for-backward bytes of one step, uncalibrated (the term ``coefficient`` scales)."""
    return _act_per_token(p, s) * s.tokens


def forward_logits_bytes(p: ModelPreset, s: Setup) -> int:
    """Logits a forward holds beside its saved activations at its peak: the fp32 logits the loss reads (the
    fp32 log-probabilities are saved, so already in :func:`activation_bytes`), plus the head's bf16 output
    under autocast (full_amp, qlora). Profiler memory events on CPU: 4.0 and 6.1-6.3 B per vocab entry per token."""
    return (6 if s.method in ("full_amp", "qlora") else 4) * p.vocab * s.tokens


def backward_transients(p: ModelPreset, s: Setup) -> dict[str, int]:
    """What backward holds beside the saved activations at its start (the largest of them counts)."""
    return {
        "loss_buffers": 8 * p.vocab * s.tokens,  # fp32 gradients of the log-probabilities and of the logits
        "head_grad": 0 if s.frozen_base else 4 * p.vocab * p.hidden,
        "dequant": 2 * max(i * o for _, i, o in p.linear_shapes()) if s.method == "qlora" else 0,
    }


def predict(p: ModelPreset, s: Setup, coefficient: float = 1.0) -> Footprint:
    """The footprint of one training step of ``p`` under ``s``; see the module docstring."""
    total = p.param_count()
    if s.frozen_base:
        trainable = lora_params(p, s)
        if s.method == "qlora":
            quant = quantized_params(p)
            base = quant * QUANT_BITS[s.quant] / 8 + (total - quant) * s.base_bytes
        else:
            base = total * s.base_bytes
        weights = int(round(base)) + 4 * trainable
        largest = s.rank * max(max(i, o) for _, i, o in p.linear_shapes())
    else:
        trainable, weights = total, 4 * total
        largest = max(p.vocab * p.hidden, max(i * o for _, i, o in p.linear_shapes()))
    grads, states = 4 * trainable, 8 * trainable
    amp_copies = 0  # autocast's bf16 weight copies, kept for backward until it ends
    if s.method == "full_amp":  # every linear weight incl. the head
        amp_copies = 2 * (quantized_params(p) + p.vocab * p.hidden)
    elif s.method == "qlora":  # the adapters (cached) and the fp32 head (cast per call)
        amp_copies = 2 * (trainable + p.vocab * p.hidden)
    acts = activation_bytes(p, s) * coefficient
    transients = backward_transients(p, s)
    loss_buffers, head_grad, dequant = transients["loss_buffers"], transients["head_grad"], transients["dequant"]
    opt_temp = 4 * trainable if s.device_type == "cuda" else 2 * 4 * largest
    phases = {"backward": acts + amp_copies + max(loss_buffers, head_grad, dequant),
              "optimizer": grads + opt_temp}
    if s.checkpointing:
        # layer inputs + the one layer being recomputed; the loss's tensors are gone by then
        kept = p.layers * s.base_bytes * p.hidden + _act_per_token(p, s, one_layer=True)
        phases["recompute"] = coefficient * kept * s.tokens + grads
    return Footprint(total, trainable, weights, grads, states, acts, loss_buffers, opt_temp, amp_copies,
                     phases, coefficient)
