"""The precision suite's compiled decode (issue 17): transformers' static KV cache with its decoding forward
torch.compile'd, compile time apart, zero recompilations in the timed rounds, outputs equal to eager's."""

import pytest
import torch

from bench_lib.harness import profiles, runner
from bench_lib.harness.workload import Case, Context
from bench_lib.suites import precision

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def case(pid, compiled=True):
    params = {"model": "llama-tiny", "precision": pid, "batch": 1, "prompt_tokens": 8, "new_tokens": 6}
    if compiled:
        params["compile"] = "compiled"
    return Case("precision", f"llama-tiny-{pid}-b1" + ("-compiled" if compiled else ""), params)


def test_compiled_decode_is_timed_apart_and_equals_eager():
    ctx = Context(CPU, profiles.get("smoke"))
    rec = runner.run_case(precision.build, case("fp32"), ctx, timeout_s=300)
    assert rec["outcome"] == "ok", rec["reason"]
    m = rec["metrics"]
    assert m["compile_s"] > 0 and m["recompiles"] == 0 and m["cache_implementation"] == "static"
    assert m["compile_s"] > rec["metrics"]["generate_s"]  # the compile is not in the timed rounds
    assert m["tokens_match_eager"] == 1.0  # greedy tokens of the compiled decode = the same weights' eager decode
    assert m["decode_tokens_per_s"] > 0 and m["new_tokens"] == 6


def test_a_quantizer_transformers_cannot_compile_is_unsupported():
    pytest.importorskip("bitsandbytes")
    rec = runner.run_case(precision.build, case("nf4"), Context(CPU, profiles.get("smoke")))
    assert rec["outcome"] == "unsupported"
    assert "does not compile generate for nf4" in rec["reason"] and "not compileable" in rec["reason"]


def test_an_uncompiled_generate_is_an_error_not_a_compiled_number(monkeypatch):
    # transformers decides at generate time; if it ever runs eager although we asked, the case must say so
    monkeypatch.setattr(precision, "compiled_frames", lambda: 7)
    rec = runner.run_case(precision.build, case("fp32"), Context(CPU, profiles.get("smoke")), timeout_s=300)
    assert rec["outcome"] == "error" and "generate ran uncompiled" in rec["reason"]
