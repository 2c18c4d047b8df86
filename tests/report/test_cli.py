import argparse
import json
import re

import pandas as pd
import pytest

from bench_lib.report import cli
from tests.report.conftest import HOSTILE


def _args(*argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_report_folder_contents(report):
    names = {p.name for p in report.figures}
    assert {"attention_time.png", "attention_tflops.png", "attention_memory.png", "precision_weight_memory.png",
            "precision_decode.png", "precision_quality.png", "finetune_cost.png", "finetune_memory_breakdown.png",
            "finetune_rank_sweep.png", "finetune_loss_curves.png", "machines.png"} <= names
    cases = pd.read_csv(report.cases_csv)
    # cpu-a, cpu-b (hostile name), the interrupted journal; the truncated file is skipped
    assert sorted(cases["run"].unique()) == ["cpu-a", "cpu-b", "interrupted"]
    assert set(cases["outcome"]) == {"ok", "unsupported", "oom", "crashed", "timeout"}


def test_truncated_file_is_named_and_rest_renders(report):
    assert any("truncated.json" in str(p) and "not valid JSON" in str(p) for p in report.problems)
    text = report.index.read_text()
    assert re.search(r'<p class="warning">[^<]*truncated\.json: skipped: not valid JSON', text)
    assert 'id="fig-attention_memory"' in text and 'id="fig-finetune_cost"' in text


def test_two_machines_give_the_comparison(report):
    text = report.index.read_text()
    section = text[text.index('<section id="machines">'):text.index('<section id="calibration">')]
    assert 'id="fig-machines"' in section
    assert "Median time of each shared case, side by side" in section
    assert "&lt;script&gt;" in section and HOSTILE not in text


def test_real_smoke_runs_render(data_dir, tmp_path, capsys):
    """Real harness runs (smoke profile): calibration + attention, precision, and calibration + fine-tune."""
    runs = [str(data_dir / f) for f in ("smoke-cal-attn.json", "smoke-precision.json", "smoke-finetune.json")]
    assert cli.main(_args(*runs, "-o", str(tmp_path))) == 0
    md = (tmp_path / "report.md").read_text()
    # one length per attention shape in a smoke run: tables, and a note instead of sweep figures
    assert "figures/attention_" not in md and "they need a sweep over two or more sequence lengths" in md
    assert "| cpu-intel-xeon-2c | fwd | fp32 | 128 | 2 | 2 | 2 | 128 | False |" in md
    assert "flash-attn not installed" in md  # unsupported reasons reach the outcome summary
    for name in ("precision_weight_memory", "precision_decode", "precision_quality", "finetune_cost",
                 "finetune_memory_breakdown", "finetune_loss_curves"):
        assert f"(figures/{name}.png)" in md
    assert "No rank-sweep figure: it needs LoRA at two or more ranks" in md  # smoke has rank 4 only
    claims = {int(line.split("|")[1]): line for line in md.splitlines() if re.match(r"\| \d \|", line)}
    assert "FP16 (fp16, 16.00 bits): 14.0 GB" in claims[3] and "| holds |" in claims[3]
    assert "16.00 bytes/param static → 112.0 GB for 7B" in claims[2] and "| holds |" in claims[2]
    assert "not measured in these runs" not in claims[8]  # LoRA vs full per step: measured (either verdict)
    cases = pd.read_csv(tmp_path / "cases.csv")
    assert len(cases) == 45 + 14 + 16 and (cases["outcome"] == "unsupported").sum() == 24
    assert "wrote" in capsys.readouterr().out


def test_exit_codes(data_dir, tmp_path, capsys):
    assert cli.main(_args(str(data_dir / "truncated.json"), "-o", str(tmp_path))) == 1
    assert "truncated.json" in capsys.readouterr().err
    assert cli.main(_args(str(data_dir / "cpu-a.json"), "-o", str(tmp_path), "--baseline", "nope")) == 2
    err = capsys.readouterr().err
    assert "--baseline 'nope'" in err and "sdpa_flash" in err
    (tmp_path / "prices.json").write_text('{"prices": {"no-such-gpu": 1}}')
    assert cli.main(_args(str(data_dir / "cpu-a.json"), "-o", str(tmp_path), "--prices", str(tmp_path / "prices.json"))) == 2
    assert "no catalog id or known device name" in capsys.readouterr().err
    assert not (tmp_path / "index.html").exists()


def test_baseline_override_changes_ratio_tables():
    from bench_lib.report import sections

    cases = pd.DataFrame({"suite": ["attention", "attention"], "impl": ["eager", "sdpa_math"]})
    assert sections.resolve_baselines(cases, "sdpa_math")["attention"] == "sdpa_math"
    assert sections.resolve_baselines(cases, None) == {"attention": "eager", "precision": "fp32", "finetune": "full"}
    with pytest.raises(ValueError, match="known: attention: eager, sdpa_math"):
        sections.resolve_baselines(cases, "fp8")


def test_run_with_no_finished_case_still_renders(data_dir, tmp_path):
    header = (data_dir / "interrupted.jsonl").read_text().splitlines()[0]
    (tmp_path / "run.jsonl").write_text(header + "\n")
    written = cli.render([tmp_path / "run.jsonl"], tmp_path / "out")
    md = written.markdown.read_text()
    assert "(0 finished cases" in md and md.count("not measured in these runs") >= 9 + 3
    assert "No GPU from the hardware catalog in these runs" in md
    assert written.figures == []


def test_fit_records_get_their_own_table(data_dir, tmp_path):
    header = (data_dir / "interrupted.jsonl").read_text().splitlines()[0]
    record = {"type": "case", "id": "fit-attention-eager-s-seq_len", "suite": "fit", "outcome": "ok", "reason": None,
              "case": {"impl": "eager", "target_suite": "attention", "base_case": "eager-fwd", "vary": "seq_len",
                       "budget_bytes": 2**31},
              "metrics": {"largest_fit": 8192, "smallest_fail": 8256, "largest_fit_peak_bytes": 2**31 - 2**20,
                          "budget_bytes": 2**31, "probes": 9, "search_s": 3.0},
              "memory": {}, "samples_s": [], "series": {"probes": [{"size": 64, "outcome": "ok"}]}}
    (tmp_path / "fit.jsonl").write_text(header + "\n" + json.dumps(record) + "\n")
    md = cli.render([tmp_path / "fit.jsonl"], tmp_path / "out").markdown.read_text()
    assert "## Largest that fits" in md
    assert "| cpu-epyc-2c | attention | eager-fwd | seq_len | 2 GiB | 8,192 | 8,256 | 2 GiB | 9 |" in md


def test_real_quick_run_has_every_section_with_figures(data_dir, tmp_path):
    """The acceptance run: a real CPU quick run of every suite (main's reference run, frozen)."""
    written = cli.render([data_dir / "quick-all-suites.json"], tmp_path)
    assert {p.stem for p in written.figures} == {
        "attention_time", "attention_tflops", "attention_memory", "precision_weight_memory", "precision_decode",
        "precision_quality", "finetune_cost", "finetune_memory_breakdown", "finetune_rank_sweep",
        "finetune_loss_curves"}  # no machines figure: one machine
    md = written.markdown.read_text()
    for title in ("Runs", "The tutorial's claims, checked", "Attention kernels", "Precision and quantization",
                  "Fine-tuning: full vs LoRA vs QLoRA", "Machines compared", "GPU datasheet, cost and energy",
                  "Measured ceilings (calibration)", "Outcomes", "Environment"):
        assert f"\n## {title}\n" in md
    claims = {int(line.split("|")[1]): line.split("|")[5].strip()
              for line in md.splitlines() if re.match(r"\| \d+ \|", line)}
    assert len(claims) == 11 and claims[9] == "not measured in these runs"  # no GPU run: no 7B QLoRA
    # this frozen run predates the trained-weight, merge and QLoRA convergence cases: its nf4 quality is from
    # random weights, which decides nothing
    assert claims[7] == claims[10] == claims[11] == "not measured in these runs"
    assert {claims[n] for n in (1, 2, 3, 4, 5, 6, 8)} <= {"holds", "does not hold here"}  # everything else measured
    assert written.problems == []
