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


# ---------------------------------------------------------------- training (fine-tune suite)
