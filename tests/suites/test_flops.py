"""FLOP formulas pinned on hand-worked shapes."""

import pytest

from bench_lib.suites import flops


# ---------------------------------------------------------------- attention
def test_attention_forward_hand_worked():
    # b=2, h=3, s=5, d=7: QK^T is 2*5*5*7 = 350 per head, PV the same -> 700 per head, x 6 heads = 4200
    assert flops.attention_flop(2, 3, 5, 7, causal=False, direction="fwd") == 4200


def test_attention_causal_halves():
    assert flops.attention_flop(2, 3, 5, 7, causal=True, direction="fwd") == 2100
    # flash-attention's benchmark table point: b=1, h=16, s=16384, d=128, causal
    assert flops.attention_flop(1, 16, 16384, 128, causal=True, direction="fwd") == 1_099_511_627_776


def test_attention_backward_is_2_5x_forward():
    fwd = flops.attention_flop(2, 3, 5, 7, causal=False, direction="fwd")
    assert flops.attention_flop(2, 3, 5, 7, causal=False, direction="fwd_bwd") == 4200 + 10500 == 3.5 * fwd
    assert flops.attention_flop(2, 3, 5, 7, causal=True, direction="fwd_bwd") == 7350


def test_attention_gqa_changes_no_flops():
    # the formula takes query heads only: 32 query heads on 8 KV heads cost what 32 full heads cost
    assert flops.attention_flop(1, 32, 1024, 128, True, "fwd") == 4 * 32 * 1024**2 * 128 // 2


def test_attention_flop_is_exact_integer():
    value = flops.attention_flop(3, 1, 1, 1, causal=True, direction="fwd_bwd")  # 4*3 = 12 -> 6 -> 21
    assert value == 21 and isinstance(value, int)


def test_attention_formula_ids():
    assert flops.attention_formula(True, "fwd") == "attention:4bhs2d/2:fwd"
    assert flops.attention_formula(False, "fwd_bwd") == "attention:4bhs2d:fwd_bwd=3.5x"


def test_attention_rejects_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        flops.attention_flop(1, 1, 1, 1, False, "bwd")
