"""FLOP and byte formulas: pure functions of shapes, each citing its convention. Timing never lives here.

Every formula has an id recorded beside the value it produced (``flop_formula``), so a TFLOP/s figure can
always be traced to how its FLOPs were counted.
"""

from __future__ import annotations


# ---------------------------------------------------------------- dense matmul
def matmul_flop(m: int, n: int, k: int) -> int:
    """(m x k) @ (k x n): one multiply and one add per inner-product term -> 2*m*n*k."""
    return 2 * m * n * k


MATMUL_FORMULA = "matmul:2mnk"


# ---------------------------------------------------------------- attention (attention suite)
# Flash-attention convention (Dao-AILab/flash-attention, benchmarks/benchmark_flash_attention.py, `flops`):
# the forward is two matmuls per head, S = QK^T and O = PV, each 2*s*s*d -> 4*b*h*s^2*d. Causal attention
# counts half (only the lower triangle is needed). Softmax, scaling and masking are not counted. The
# backward is five such matmuls (S recomputed, dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q) -> 2.5x the
# forward, whether or not an implementation really recomputes S. GQA shares K/V among query heads: it saves
# memory and bandwidth, not FLOPs, so h is the number of *query* heads.
ATTENTION_DIRECTIONS = ("fwd", "fwd_bwd")


def attention_flop(batch: int, heads: int, seq_len: int, head_dim: int, causal: bool, direction: str) -> int:
    """FLOPs of one self-attention call on (batch, heads, seq_len, head_dim) queries, keys and values.

    ``heads`` counts query heads. ``direction``: ``fwd`` (forward only) or ``fwd_bwd`` (forward + backward,
    3.5x the forward). Always an integer: 4*b*h*s^2*d is even, so the causal half and the 3.5 are exact.
    """
    if direction not in ATTENTION_DIRECTIONS:
        raise ValueError(f"direction must be one of {ATTENTION_DIRECTIONS}, not {direction!r}")
    fwd = 4 * batch * heads * seq_len * seq_len * head_dim
    if causal:
        fwd //= 2
    return fwd if direction == "fwd" else fwd * 7 // 2  # backward = 2.5x forward


def attention_formula(causal: bool, direction: str) -> str:
    """Id recorded beside an attention FLOP count, e.g. ``attention:4bhs2d/2:fwd_bwd=3.5x`` (causal, fwd+bwd)."""
    return "attention:4bhs2d" + ("/2" if causal else "") + (":fwd" if direction == "fwd" else ":fwd_bwd=3.5x")


# ---------------------------------------------------------------- training (fine-tune suite)
# Model FLOPs (the useful work of one optimizer step, as in MFU, Chowdhery et al. 2022 appendix B): the
# recomputed forward of gradient checkpointing is not counted, so checkpointing shows up as lower TFLOP/s.
# N counts the weights that take part in a matmul for every token: the linear layers of each block and the
# output head (vocab x d). Embedding lookups are gathers, not matmuls; norms, biases, the attention score
# and softmax work (2*2*s*d per layer and token forward, small at the sequence lengths used here) are left
# out, as in Kaplan et al.
def train_matmul_params(preset) -> int:
    """Weights in matmuls per token for a :class:`bench_lib.suites.models.ModelPreset`: blocks' linears + output head."""
    per_block = sum(d_in * d_out for _, d_in, d_out in preset.linear_shapes())
    return preset.layers * per_block + preset.vocab * preset.hidden


def full_train_flop(n_matmul: int, tokens: int) -> int:
    """Full fine-tuning: forward 2NT + backward 4NT (activation and weight gradients, 2NT each) = 6NT.

    Kaplan et al. 2020, "Scaling Laws for Neural Language Models", sec. 2.1: C ~= 6 N per training token.
    """
    return 6 * n_matmul * tokens


FULL_TRAIN_FORMULA = "train_full:6*N*T"


def lora_train_flop(n_base: int, n_lora: int, tokens: int) -> int:
    """LoRA / QLoRA: the frozen base still runs forward (2 N T) and propagates activation gradients (2 N T),
    but computes no weight gradients; the adapters (N_lora = sum r*(d_in+d_out)) do all three (6 N_lora T).

    An upper bound by a little: layers below the first adapter need no activation gradient.
    """
    return 4 * n_base * tokens + 6 * n_lora * tokens


LORA_TRAIN_FORMULA = "train_lora:4*N*T+6*N_lora*T"
