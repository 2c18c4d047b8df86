"""torchao beside bitsandbytes/native at the same nominal bits: right group per precision, values stay with
their precision, and a case that did not run shows its outcome and reason."""

import pandas as pd

from bench_lib.report import views


def _case(precision, outcome="ok", reason=None, **metrics):
    return dict(machine="m1", suite="precision", case_id=f"tiny-{precision}", model="tiny", precision=precision,
                outcome=outcome, reason=reason, **metrics)


def _frames():
    cases = pd.DataFrame([
        _case("fp32", bits_per_param=32.0),
        _case("int8", bits_per_param=8.1, decode_tokens_per_s=10.0),
        _case("ao_int8wo", bits_per_param=8.05, decode_tokens_per_s=25.0),
        _case("nf4", bits_per_param=4.5, decode_tokens_per_s=7.0),
        _case("ao_int4wo", bits_per_param=4.3, decode_tokens_per_s=12.0),
        _case("bf16", bits_per_param=16.0, decode_tokens_per_s=30.0),
        _case("ao_fp8dq", outcome="unsupported", reason="float8 dynamic needs compute capability 8.9"),
    ])
    rows = cases[cases["outcome"] == "ok"].drop(columns=["outcome", "reason"]).assign(weights="trained weights")
    return rows, cases


def test_groups_libraries_and_values():
    rows, cases = _frames()
    out = views.ao_vs_bnb(rows, cases)
    assert "fp32" not in set(out["precision"])  # no same-bits partner
    by = out.set_index("precision")
    assert by.loc["ao_int8wo", "bits_group"] == by.loc["int8", "bits_group"] == "8-bit integer"
    assert by.loc["ao_int4wo", "bits_group"] == by.loc["nf4", "bits_group"] == "4-bit"
    assert by.loc["ao_fp8dq", "bits_group"] == by.loc["bf16", "bits_group"]
    assert by.loc["ao_int8wo", "library"] == "torchao" and by.loc["int8", "library"] == "bitsandbytes"
    assert by.loc["bf16", "library"] == "native"
    assert by.loc["ao_int8wo", "decode_tokens_per_s"] == 25.0 and by.loc["int8", "decode_tokens_per_s"] == 10.0
    assert by.loc["ao_int4wo", "bits_per_param"] == 4.3
    assert by.loc["ao_fp8dq", "status"] == "unsupported: float8 dynamic needs compute capability 8.9"
    assert by.loc["int8", "status"] == "ok"
    order = list(out["precision"])
    assert order.index("int8") < order.index("nf4") < order.index("bf16")  # 8-bit int, 4-bit, 8-bit float


def test_no_torchao_case_no_table():
    rows, cases = _frames()
    keep = ~cases["precision"].str.startswith("ao_")
    assert views.ao_vs_bnb(rows[~rows["precision"].str.startswith("ao_")], cases[keep]).empty
