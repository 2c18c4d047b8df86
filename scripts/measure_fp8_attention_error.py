"""max_rel_error that e4m3 quantization of q/k/v alone puts into attention: the data behind an FP8 attention
tolerance (issue 17). For each shape: the attention suite's own bf16 inputs, quantized to float8_e4m3fn with a
per-tensor scale (amax / 448), dequantized, and run through the fp64 reference; compared with the fp64
reference on the unquantized inputs. A correct FP8 kernel adds its own rounding (bf16 output, fp32
accumulation) on top of this, so a tolerance is this measured maximum with margin. e4m3 keeps 3 mantissa bits:
one element's relative rounding error is at most 2^-4 (half of the 2^-3 ulp).

    PYTHONPATH=. python scripts/measure_fp8_attention_error.py --lengths 256,1024 --head-dims 64,128
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch

from bench_lib.suites import attention
from bench_lib.suites.attention_ref import max_rel_error, reference_attention

CPU = torch.device("cpu")
E4M3_MAX = 448.0


def fake_quantize_e4m3(x: torch.Tensor) -> torch.Tensor:
    """x through float8_e4m3fn with a per-tensor scale, back in x's dtype (what an FP8 kernel sees)."""
    scale = x.abs().max().float() / E4M3_MAX
    return ((x.float() / scale).to(torch.float8_e4m3fn).float() * scale).to(x.dtype)


def measure(s: int, d: int, h: int, kv: int, causal: bool) -> dict:
    p = {"batch": 1, "heads": h, "kv_heads": kv, "seq_len": s, "head_dim": d, "dtype": "bf16"}
    q, k, v = attention.inputs(p, CPU, requires_grad=False)
    ref, _ = reference_attention(q, k, v, causal)
    quant, _ = reference_attention(*(fake_quantize_e4m3(t) for t in (q, k, v)), causal)
    return {"seq_len": s, "head_dim": d, "heads": h, "kv_heads": kv, "causal": causal,
            "max_rel_error": max_rel_error(quant, ref)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="256,1024")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--heads", default="8:8,8:2", help="h:kv pairs")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for s, d, hk, causal in itertools.product([int(x) for x in args.lengths.split(",")],
                                              [int(x) for x in args.head_dims.split(",")],
                                              args.heads.split(","), (True, False)):
        h, kv = (int(x) for x in hk.split(":"))
        print(json.dumps(measure(s, d, h, kv, causal)), flush=True)


if __name__ == "__main__":
    main()
