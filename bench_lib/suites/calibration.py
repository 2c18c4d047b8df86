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

MATMUL = registry.new("calibration matmul dtype")
for _id in DTYPES:
    MATMUL.register(_id, f"dense {_id} matmul", support=registry.needs_cuda if _id == "tf32" else None)


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
