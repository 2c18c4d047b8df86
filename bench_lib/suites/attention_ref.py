"""Reference attention in higher precision, and the error measure the attention suite's check uses.

The reference is plain softmax(Q K^T / sqrt(d) + mask) V computed in fp64 on CPU and fp32 on GPU (with TF32
off), on the same inputs the kernel saw (upcast, so input rounding is not counted as kernel error). It
works on blocks of query rows so that 16k-32k token sequences need only a block of scores at a time.
"""

from __future__ import annotations

import torch

# Per-dtype tolerance on max_rel_error (definition below), for the output and every input gradient.
# Rounding a result alone costs up to half an ulp: 2^-24 (fp32), 2^-11 (fp16), 2^-8 relative (bf16), and
# materialized kernels also round the scores and probabilities to the input dtype before the PV matmul.
# Measured on correct kernels (CPU; s 256-4096, d 64 and 128, GQA 4:1, causal or not): bf16 2e-3 to 1.6e-2
# (worst: eager output at d=128, flash dK under GQA), fp32 about 1e-6. fp16 has 3 more mantissa bits than
# bf16, so 1/8 of its tolerance. A kernel that drops the 1/sqrt(d) scale (error > 1), misplaces the causal
# diagonal by one (~1) or is off by 10% (~0.1) is far over (tests/test_attention.py plants such kernels).
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3, "bf16": 4e-2}
# fp32 matmuls on CUDA with TF32 allowed keep a 10-bit mantissa, like fp16
TF32_TOLERANCE = TOLERANCE["fp16"]

# scores of one block of query rows take at most this many bytes (the reference's working memory)
_BLOCK_BYTES = {"cpu": 64 * 2**20, "cuda": 512 * 2**20}


def tolerance(dtype_name: str, device: torch.device) -> float:
    if dtype_name == "fp32" and device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return TF32_TOLERANCE
    return TOLERANCE[dtype_name]


def max_rel_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    """max|x - ref| / max|ref| over the whole tensor (0 = exact; 1e-2 = off by 1% of the largest value).

    Normalizing by the largest reference value, not element by element, keeps the measure meaningful for
    outputs and gradients with entries near zero, where an elementwise relative error explodes.
    """
    ref_max = ref.abs().max().item()
    if ref_max == 0:
        raise ValueError("max_rel_error: the reference is all zeros")
    return (x.detach().to(ref.dtype) - ref).abs().max().item() / ref_max


def reference_dtype(device: torch.device) -> torch.dtype:
    return torch.float64 if device.type == "cpu" else torch.float32


def reference_attention(q, k, v, causal: bool, grad_out=None):
    """Reference output (b, h, s, d) and, when ``grad_out`` is given, the gradients (dq, dk, dv).

    q (b, h, s, d); k, v (b, kv, s, d) with h a multiple of kv (query head i reads KV head i // (h / kv)).
    Results are in the reference dtype (fp64 on CPU, fp32 on GPU).
    """
    dtype = reference_dtype(q.device)
    b, h, s, d = q.shape
    kv = k.shape[1]
    rep = h // kv
    with _no_tf32():
        # group query heads by their KV head: q (b, kv, rep, s, d) against k, v (b, kv, 1, s, d), so the
        # matmuls broadcast over the group instead of copying K and V rep times
        qg = q.detach().to(dtype).reshape(b, kv, rep, s, d)
        kg = k.detach().to(dtype)[:, :, None].requires_grad_(grad_out is not None)
        vg = v.detach().to(dtype)[:, :, None].requires_grad_(grad_out is not None)
        go = None if grad_out is None else grad_out.detach().to(dtype).reshape(b, kv, rep, s, d)
        out = torch.empty_like(qg)
        dq, dk, dv = (torch.zeros_like(t) for t in (qg, kg, vg)) if go is not None else (None, None, None)
        block = max(1, _BLOCK_BYTES.get(q.device.type, _BLOCK_BYTES["cuda"]) // (b * h * s * dtype.itemsize))
        for start in range(0, s, block):
            rows = slice(start, min(s, start + block))
            qb = qg[:, :, :, rows].requires_grad_(go is not None)
            keys = slice(0, rows.stop if causal else s)  # causal: keys after the block's last row are masked
            with torch.set_grad_enabled(go is not None):
                scores = qb @ kg[..., keys, :].transpose(-1, -2) * d**-0.5  # (b, kv, rep, block, keys)
                if causal:  # key j is visible to query i when j <= i
                    i = torch.arange(rows.start, rows.stop, device=q.device)[:, None]
                    j = torch.arange(keys.stop, device=q.device)[None, :]
                    scores = scores.masked_fill(j > i, float("-inf"))
                ob = torch.softmax(scores, dim=-1) @ vg[..., keys, :]
            out[:, :, :, rows] = ob.detach()
            if go is not None:
                gq, gk, gv = torch.autograd.grad(ob, (qb, kg, vg), go[:, :, :, rows])
                dq[:, :, :, rows] = gq
                dk += gk
                dv += gv
    out = out.reshape(b, h, s, d)
    if go is None:
        return out, ()
    return out, (dq.reshape(b, h, s, d), dk[:, :, 0], dv[:, :, 0])


class _no_tf32:
    """fp32 matmuls at full precision inside the block (the reference must not use TF32)."""

    def __enter__(self):
        self.saved = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc):
        torch.set_float32_matmul_precision(self.saved)
