"""torch.compile against eager: each ``-compiled`` case beside its eager twin, values in their own columns and
the speedup as eager / compiled (not inverted)."""

import argparse

import pandas as pd

from bench_lib.report import views


def _med() -> pd.DataFrame:
    base = "sdpa_flash-fwd_bwd-float32-s1024-b4-h2-d64-causal"
    rows = [
        dict(machine="m1", suite="attention", case_id=base, time_s=0.040, peak_bytes=3000),
        dict(machine="m1", suite="attention", case_id=base + "-compiled", time_s=0.010, peak_bytes=2000,
             compile_s=1.5, graph_breaks=1, recompiles=0),
        dict(machine="m2", suite="attention", case_id=base, time_s=0.080, peak_bytes=5000),  # no compiled twin
        dict(machine="m1", suite="finetune", case_id="lora-r8", time_s=9.0, step_s=0.5, peak_bytes=1),
    ]
    return pd.DataFrame(rows)


def test_pairs_each_compiled_case_with_its_eager_twin():
    out = views.compiled_vs_eager(_med(), "attention", "time_s")
    assert len(out) == 1
    row = out.iloc[0]
    assert row["machine"] == "m1" and row["eager_id"].endswith("-causal")
    assert row["eager_s"] == 0.040 and row["compiled_s"] == 0.010
    assert row["speedup"] == 0.040 / 0.010  # eager / compiled: above 1 when compiling pays
    assert row["compile_s"] == 1.5 and row["graph_breaks"] == 1 and row["recompiles"] == 0
    assert row["eager_peak_bytes"] == 3000 and row["compiled_peak_bytes"] == 2000


def test_no_pair_gives_an_empty_table():
    assert views.compiled_vs_eager(_med(), "finetune", "step_s").empty
    assert views.compiled_vs_eager(_med().iloc[0:0], "attention", "time_s").empty


def test_the_precision_section_shows_compiled_decode_beside_eager(tmp_path):
    # the committed quick run has llama-7m-fp32-b1-p16-n16 and its -compiled twin (static KV cache)
    from pathlib import Path

    from bench_lib.report import cli

    run = Path(__file__).resolve().parents[2] / "results/cpu-amd-epyc-2c/20261203T124021Z-quick.json"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.main(parser.parse_args([str(run), "-o", str(tmp_path)])) == 0
    text = (tmp_path / "report.md").read_text()
    head = "**torch.compile against eager (decode steps of generate"
    assert head in text
    table = text.split(head, 1)[1].split("\n\n", 2)[1]
    row = next(line for line in table.splitlines() if "llama-7m-fp32-b1-p16-n16 |" in line)
    eager, compiled, speedup = (cell.strip() for cell in row.split("|")[3:6])
    assert eager.endswith("ms") and compiled.endswith("ms") and eager != compiled and speedup.endswith("×")
