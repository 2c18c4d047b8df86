"""FlashAttention-3's FP8 forward as an attention impl (issue 17), tested on CPU with a fake
``flash_attn_interface`` that computes what FA3's FP8 kernel computes: attention of the dequantized e4m3
inputs (x8 * descale), bf16 out. The real kernel runs only on Hopper with FA3 built; here the test checks
that effbench hands it e4m3 tensors with the right descales, judges it with the FP8 tolerance, and catches
a kernel that ignores the descales."""

import dataclasses
import sys
import types

import pytest
import torch

from bench_lib.harness import profiles, runner
from bench_lib.harness.workload import Case, Context
from bench_lib.suites import attention, attention_ref

CPU = torch.device("cpu")
ID = "flash_attn3_fp8"


def case(direction="fwd", dtype="bf16", causal=True):
    p = {"impl": ID, "direction": direction, "dtype": dtype, "seq_len": 128, "batch": 2, "heads": 4, "kv_heads": 2,
         "head_dim": 64, "causal": causal}
    return Case("attention", f"{ID}-{direction}-{dtype}", p)


def fake_fa3(calls, use_descale=True):
    def flash_attn_func(q, k, v, causal=False, q_descale=None, k_descale=None, v_descale=None):
        calls.append({"dtypes": (q.dtype, k.dtype, v.dtype),
                      "descale_shapes": tuple(d.shape for d in (q_descale, k_descale, v_descale))})
        deq = [x.float() * (d[0, 0] if use_descale else 1.0) for x, d in zip((q, k, v), (q_descale, k_descale,
                                                                                         v_descale), strict=True)]
        out, _ = attention_ref.reference_attention(*(t.transpose(1, 2).double() for t in deq), causal)
        return out.transpose(1, 2).to(torch.bfloat16)  # FA3 layout (b, s, h, d)
    return types.SimpleNamespace(flash_attn_func=flash_attn_func, __version__="fake")


@pytest.fixture
def with_fake(monkeypatch):
    def install(use_descale=True):
        calls = []
        monkeypatch.setitem(sys.modules, "flash_attn_interface", fake_fa3(calls, use_descale))
        entry = attention.REGISTRY[ID]
        monkeypatch.setitem(attention.REGISTRY._entries, ID, dataclasses.replace(entry, support=lambda d: None))
        return calls
    return install


def run(c):
    return runner.run_case(attention.build, c, Context(CPU, profiles.get("smoke")))


def test_the_kernel_gets_e4m3_inputs_with_descales_and_passes_the_fp8_tolerance(with_fake):
    calls = with_fake()
    rec = run(case())
    assert rec["outcome"] == "ok", rec["reason"]
    assert calls and all(c["dtypes"] == (torch.float8_e4m3fn,) * 3 for c in calls)
    assert calls[0]["descale_shapes"] == ((2, 2),) * 3  # (batch, kv heads), FA3's descale layout
    m = rec["metrics"]
    assert m["tolerance"] == attention_ref.FP8_TOLERANCE
    # the quantization is visible (above bf16's error) and within what scripts/measure_fp8_attention_error.py measured
    assert attention_ref.TOLERANCE["bf16"] / 4 < m["max_rel_error"] < 0.116 * 1.5
    assert "e4m3" in m["fp8_format"]


def test_a_kernel_that_ignores_the_descales_is_an_error(with_fake):
    with_fake(use_descale=False)
    rec = run(case())
    assert rec["outcome"] == "error" and "tolerance 0.25" in rec["reason"]


def test_inputs_are_quantized_once_not_in_every_timed_call(with_fake, monkeypatch):
    with_fake()
    quantized = []
    real = attention.quantize_e4m3
    monkeypatch.setattr(attention, "quantize_e4m3", lambda x: quantized.append(1) or real(x))
    rec = run(case())
    assert rec["outcome"] == "ok" and len(quantized) == 3  # q, k, v once, however many calls ran


@pytest.mark.parametrize("direction,dtype,words", [("fwd_bwd", "bf16", "forward-only"), ("fwd", "fp16", "bf16 cases")])
def test_what_fa3_fp8_does_not_do_is_unsupported(with_fake, direction, dtype, words):
    with_fake()
    rec = run(case(direction, dtype))
    assert rec["outcome"] == "unsupported" and words in rec["reason"]


def test_without_fa3_on_cpu_the_reason_says_so():
    rec = run(case())
    assert rec["outcome"] == "unsupported" and "FlashAttention-3" in rec["reason"]


def test_quantize_e4m3_round_trips_within_half_an_ulp():
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)).bfloat16().t()  # a transposed view
    x8, descale = attention.quantize_e4m3(x)
    assert x8.dtype == torch.float8_e4m3fn and x8.stride() == x.stride()
    assert x8.float().abs().max().item() == 448.0
    back = x8.float() * descale
    big = x.float().abs() > 0.1
    assert ((back - x.float()).abs() / x.float().abs())[big].max() <= 2.0**-4 * 1.01
