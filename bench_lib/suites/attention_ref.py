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
# Each tolerance is 2.5x the worst error measured on correct kernels (CPU: eager, sdpa_math, sdpa_flash;
# s 256-4096, d 64 and 128, MHA and GQA 4:1, causal or not, fwd_bwd; the worst configs again to s=16384):
# - bf16: 2e-3 to 1.6e-2 up to s=1024 (worst: eager output at d=128, flash dK under GQA), where 4e-2 comes
#   from (reproduced: 1.6e-2); longer sequences reach 2.6e-2 (eager output, s=4096) and 3.2e-2 (flash dK, GQA, s=4096; 2.6e-2 at
#   16384): a margin of 1.25x there, not 2.5x;
# - fp32: about 1e-6;
# - fp16 output: 3e-4 to 2.1e-3 (3.7e-4 for flash at s=16384): 5e-3. The bf16/fp16 ratio of the same case is 8.2
#   (median of 72 pairs, 4.6-12), as the error model says (3 more mantissa bits: an 8x smaller ulp);
# - fp16 gradients under GQA grow with s, which bf16's do not: flash dK, GQA 4:1, d=128, causal: 2.0e-3
#   (s=4096), 4.5e-3 (8192), 6.8e-3 (16384), over the output tolerance; under MHA flash stays at 2.4-3.8e-3
#   to s=16384, and eager/math are far lower (s=8192: 4-6e-4, GQA or not). The growth is the CPU flash
#   backward's under GQA (its cause not isolated); GPU kernels reduce a group's dK differently, and their
#   error is what the nightly's fp16 fwd_bwd cases (MHA, to s=32768) record, per tensor. 2.5x 6.8e-3,
#   rounded up: 2e-2 for fp16 fwd_bwd cases, still 5x under a kernel that is off by 10%.
# A kernel that drops the 1/sqrt(d) scale (error > 1), misplaces the causal diagonal by one (~1) or is off by
# 10% (~0.1) is far over (tests/suites/test_attention.py plants such kernels).
# Measured with scripts/measure_attention_error.py (one thread, fixed seeds).
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3, "bf16": 4e-2}
# fwd_bwd cases: the gradients' tolerance where it differs from the output's
BACKWARD_TOLERANCE = {**TOLERANCE, "fp16": 2e-2}
# fp32 matmuls on CUDA with TF32 allowed keep a 10-bit mantissa with fp32's range: bf16's tolerance over 8
TF32_TOLERANCE = TOLERANCE["bf16"] / 8
# FP8 (e4m3 q/k/v, per-tensor scales) forward against the fp64 reference on the unquantized inputs: the
# quantization alone gave max_rel_error 0.045-0.116 over s 256/1024, d 64/128, h:kv 8:8/8:2, causal and not
# (scripts/measure_fp8_attention_error.py, CPU, fixed seeds; the worst is non-causal GQA, where max|ref| is
# smallest). About 2x that maximum leaves room for the kernel's own bf16/fp32 rounding (4e-2 at most, as bf16).
FP8_TOLERANCE = 0.25

# scores of one block of query rows take at most this many bytes (the reference's working memory)
_BLOCK_BYTES = {"cpu": 64 * 2**20, "cuda": 512 * 2**20}


def tolerance(dtype_name: str, device: torch.device, backward: bool = False) -> float:
    """The max_rel_error a correct kernel stays under in ``dtype_name`` (``backward``: output and gradients)."""
    if dtype_name == "fp32" and device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return TF32_TOLERANCE
    return (BACKWARD_TOLERANCE if backward else TOLERANCE)[dtype_name]


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
