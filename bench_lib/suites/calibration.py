"""Calibration suite: this machine's two ceilings, measured.

- dense matmul throughput per dtype (FLOP/s): C = A @ B with square n x n operands, 2n^3 FLOPs;
- device memory copy bandwidth (bytes/s): ``dst.copy_(src)`` reads and writes every byte, 2 x size moved.
Later suites report achieved throughput as a fraction of these (``frac_of_measured_peak``) as well as of
catalog peaks.
"""

from __future__ import annotations

import contextlib

import torch

from bench_lib.harness import registry
from bench_lib.harness.workload import Case, CaseFailed, Context, Unsupported, Workload
from bench_lib.suites import flops

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# max |C - C_ref| / max |C_ref| allowed against an fp64 reference (looser for fewer mantissa bits)
TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 5e-3, "bf16": 3e-2}

# FP8 (e4m3 x e4m3 -> bf16, per-tensor power-of-two scales, torch._scaled_mm). The check compares it with a bf16
# matmul of the dequantized inputs: with power-of-two scales every dequantized value is exact in bf16, so both
# sides sum the same products in fp32 and round once to bf16 (each <= half a bf16 ulp, 2^-8 relative: 2^-7
# together); the other 2^-7 covers a different fp32 summation order. Recorded as tolerance_derivation.
FP8_TOLERANCE = 2.0**-6
FP8_TOLERANCE_DERIVATION = ("2 x half a bf16 ulp (2^-8 each) for the two bf16 roundings of the same exactly "
                            "representable products + 2^-7 for fp32 summation order = 2^-6")
FP8_MAX = 448.0  # largest finite float8_e4m3fn


def _capability(device: torch.device) -> tuple[int, int] | None:
    """The CUDA compute capability of ``device``; None off CUDA."""
    device = torch.device(device)
    return torch.cuda.get_device_capability(device) if device.type == "cuda" else None


def fp8_support(device) -> str | None:
    cap = _capability(device)
    if cap is None:
        return "FP8 matmul (torch._scaled_mm) needs a CUDA GPU with FP8 tensor cores (sm89+)"
    if tuple(cap) < (8, 9):
        return f"FP8 matmul needs compute capability 8.9+ (Ada/Hopper); this GPU is sm{cap[0]}{cap[1]}"
    return None


MATMUL = registry.new("calibration matmul dtype")
for _id in DTYPES:
    MATMUL.register(_id, f"dense {_id} matmul", support=registry.needs_cuda if _id == "tf32" else None)
MATMUL.register("fp8", "dense fp8 e4m3 matmul (torch._scaled_mm, bf16 out)", support=fp8_support)


def _quantize_e4m3(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor e4m3 with a power-of-two scale (x ~= q * scale, |x / scale| <= 448)."""
    scale = 2.0 ** torch.ceil(torch.log2(x.abs().max().float() / FP8_MAX))
    return (x / scale).to(torch.float8_e4m3fn), scale.reshape(()).float()


def _fp8_matmul(case: Case, ctx: Context) -> Workload | Unsupported:
    n = case.params["n"]
    reason = MATMUL["fp8"].support(ctx.device)
    if reason:
        return Unsupported(reason)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a, scale_a = _quantize_e4m3(torch.randn(n, n, generator=gen).to(ctx.device))
    bt, scale_b = _quantize_e4m3(torch.randn(n, n, generator=gen).to(ctx.device))
    b = bt.t()  # _scaled_mm wants the second operand column-major
    scale_a, scale_b = scale_a.to(ctx.device), scale_b.to(ctx.device)

    def fn():
        return torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)

    def check():
        out = fn()
        ref = (a.float() * scale_a).bfloat16() @ (b.float() * scale_b).bfloat16()
        err = ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
        metrics = {"max_rel_error": err, "tolerance": FP8_TOLERANCE, "reference": "bf16 matmul of the dequantized inputs",
                   "tolerance_derivation": FP8_TOLERANCE_DERIVATION}
        if not err <= FP8_TOLERANCE:
            raise CaseFailed(f"matmul fp8 error {err:.3g} over tolerance {FP8_TOLERANCE:g}", metrics)
        return metrics

    flop = flops.matmul_flop(n, n, n)

    def derive(time_s):
        return {"flop_per_s": flop / time_s, "tflops": flop / time_s / 1e12}

    return Workload(fn, metrics={"flop": flop, "flop_formula": flops.MATMUL_FORMULA,
                                 "input_bytes": 2 * a.numel() * a.element_size()},
                    check=check, derive=derive)


@contextlib.contextmanager
def _tf32(enabled: bool):
    """TF32 is a CUDA matmul mode; set it explicitly so fp32 never silently runs as tf32 (and back)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _matmul(case: Case, ctx: Context) -> Workload | Unsupported:
    dtype_id, n = case.params["dtype"], case.params["n"]
    if dtype_id == "fp8":
        return _fp8_matmul(case, ctx)
    reason = MATMUL[dtype_id].support(ctx.device)
    if reason:
        return Unsupported(reason)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(ctx.device, DTYPES[dtype_id])
    b = torch.randn(n, n, generator=gen).to(ctx.device, DTYPES[dtype_id])
    out = torch.empty(n, n, device=ctx.device, dtype=DTYPES[dtype_id])
    tf32 = dtype_id == "tf32"

    def fn():
        with _tf32(tf32):
            torch.matmul(a, b, out=out)

    def check():
        fn()
        rows = min(n, 64)  # the first rows against fp64: enough to catch a wrong kernel, cheap at any n
        ref = a[:rows].double() @ b.double()
        err = ((out[:rows].double() - ref).abs().max() / ref.abs().max()).item()
        metrics = {"max_rel_error": err, "tolerance": TOLERANCE[dtype_id]}
        if not err <= TOLERANCE[dtype_id]:
            raise CaseFailed(f"matmul {dtype_id} error {err:.3g} over tolerance {TOLERANCE[dtype_id]:g}", metrics)
        return metrics

    flop = flops.matmul_flop(n, n, n)

    def derive(time_s):
        return {"flop_per_s": flop / time_s, "tflops": flop / time_s / 1e12}

    return Workload(fn, metrics={"flop": flop, "flop_formula": flops.MATMUL_FORMULA,
                                 "input_bytes": 2 * a.numel() * a.element_size()},
                    check=check, derive=derive)


def _copy(case: Case, ctx: Context) -> Workload:
    numel = case.params["mib"] * 2**20 // 4
    src = torch.rand(numel, device=ctx.device)
    dst = torch.empty_like(src)
    moved = 2 * src.numel() * src.element_size()  # every byte read once and written once

    def check():
        dst.copy_(src)
        if not torch.equal(dst, src):
            raise CaseFailed("copy produced different bytes")
        return {}

    def derive(time_s):
        return {"bandwidth_bytes_per_s": moved / time_s}

    return Workload(lambda: dst.copy_(src), metrics={"bytes_moved": moved}, check=check, derive=derive)


def build(case: Case, ctx: Context) -> Workload | Unsupported:
    kind = case.params["kind"]
    if kind == "matmul":
        return _matmul(case, ctx)
    if kind == "copy":
        return _copy(case, ctx)
    raise ValueError(f"unknown calibration kind {kind!r}")
