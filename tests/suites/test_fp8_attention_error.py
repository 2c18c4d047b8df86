"""The FP8 attention tolerance's data: e4m3 quantization of q/k/v moves attention by a measurable amount
that stays under FP8_TOLERANCE (scripts/measure_fp8_attention_error.py)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from bench_lib.suites.attention_ref import FP8_TOLERANCE, TOLERANCE

_spec = importlib.util.spec_from_file_location(
    "measure_fp8_attention_error", Path(__file__).parents[2] / "scripts" / "measure_fp8_attention_error.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_fake_quantize_is_e4m3_with_per_tensor_scale():
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0)).bfloat16()
    q = script.fake_quantize_e4m3(x)
    assert q.dtype == x.dtype and not torch.equal(q, x)
    rel = ((q.float() - x.float()).abs() / x.float().abs().clamp_min(1e-3))[x.float().abs() > 0.1]
    assert rel.max() <= 2.0**-4 * 1.01  # half of the 2^-3 e4m3 ulp (normal range)
    assert q.float().abs().max() == pytest.approx(x.float().abs().max().item(), rel=2.0**-4)


@pytest.mark.parametrize("causal", [True, False])
def test_measured_quantization_error_is_real_and_under_the_tolerance(causal):
    m = script.measure(s=128, d=64, h=4, kv=2, causal=causal)
    assert TOLERANCE["bf16"] / 4 < m["max_rel_error"] < FP8_TOLERANCE / 1.5
