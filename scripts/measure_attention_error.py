"""max_rel_error of correct CPU attention kernels against the fp64 reference: the data behind the tolerances
in bench_lib/suites/attention_ref.py. One JSON line per (dtype, impl, shape): the error of the output and of
each input gradient (fwd_bwd), the inputs being the attention suite's own (fixed seeds).

    PYTHONPATH=. python scripts/measure_attention_error.py --lengths 256,1024,4096
    PYTHONPATH=. python scripts/measure_attention_error.py --lengths 1024,4096,8192,16384 --impls sdpa_flash \\
        --heads 4:1 --head-dims 128 --causal true      # the fp16 gradients' growth with s

Runs on one thread; s=16384 takes ~6 minutes per dtype on one core.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from bench_lib.suites import attention
from bench_lib.suites.attention_ref import max_rel_error, reference_attention

CPU = torch.device("cpu")


def measure(dtype: str, impl: str, s: int, d: int, h: int, kv: int, causal: bool) -> dict:
    p = {"batch": 1, "heads": h, "kv_heads": kv, "seq_len": s, "head_dim": d, "dtype": dtype}
    q, k, v = attention.inputs(p, CPU, requires_grad=True)
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(1), dtype=q.dtype)
    ref_out, ref_grads = reference_attention(q, k, v, causal, grad_out)
    out = attention.REGISTRY[impl].setup(causal, s, attention.DTYPES[dtype], CPU)(q, k, v)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    errors = {"out": max_rel_error(out, ref_out)}
    errors.update({f"d{n}": max_rel_error(g, r) for n, g, r in zip("qkv", grads, ref_grads, strict=True)})
    return {"dtype": dtype, "impl": impl, "s": s, "d": d, "h": h, "kv": kv, "causal": causal, **errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="256,1024,4096")
    ap.add_argument("--dtypes", default="fp16,bf16")
    ap.add_argument("--impls", default="eager,sdpa_math,sdpa_flash")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--heads", default="8:8,8:2", help="query:kv heads, comma separated")
    ap.add_argument("--causal", default="true,false")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    heads = [tuple(int(n) for n in pair.split(":")) for pair in args.heads.split(",")]
    causals = [c.strip().lower() == "true" for c in args.causal.split(",")]
    for s, d, (h, kv), causal, dtype, impl in itertools.product(
            ints(args.lengths), ints(args.head_dims), heads, causals, args.dtypes.split(","), args.impls.split(",")):
        start = time.perf_counter()
        row = measure(dtype, impl, s, d, h, kv, causal)
        print(json.dumps({**row, "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
