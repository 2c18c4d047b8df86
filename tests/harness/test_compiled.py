"""torch.compile cases: compile time apart, and a recompilation in the timed rounds is an error (issue 17).

backend="eager" keeps these fast: dynamo still traces, guards and recompiles, which is what is tested.
"""

import torch

from bench_lib.harness import profiles, runner
from bench_lib.harness.workload import Case, Context, Workload

CPU = torch.device("cpu")


def _build(plant):
    def build(case, ctx):
        torch._dynamo.reset()
        scale = {"k": 2}
        x = torch.randn(16)
        fn = torch.compile(lambda t: t * scale["k"] + 1, backend="eager")

        def on_timing(phase):  # a Python-scalar guard changed between warmup and the timed rounds
            if plant and phase == "start":
                scale["k"] = 3

        return Workload(lambda: fn(x), compiled=True, on_timing=on_timing)
    return build


def test_compiled_case_records_compile_time_and_no_recompiles():
    rec = runner.run_case(_build(plant=False), Case("t", "c", {"compile": "compiled"}), Context(CPU, profiles.get("quick")))
    m = rec["metrics"]
    assert rec["outcome"] == "ok", rec["reason"]
    assert m["compile_s"] > 0 and m["recompiles"] == 0 and m["graph_breaks"] == 0


def test_planted_recompilation_in_timed_rounds_is_an_error():
    rec = runner.run_case(_build(plant=True), Case("t", "c", {"compile": "compiled"}), Context(CPU, profiles.get("quick")))
    assert rec["outcome"] == "error"
    assert "recompilation" in rec["reason"] and "timed rounds" in rec["reason"]
    assert rec["metrics"]["recompiles"] >= 1 and rec["metrics"]["compile_s"] > 0
