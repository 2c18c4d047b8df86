"""The contract document and the code agree: generated from one place, covering every key runs hold."""

import json
import re
from pathlib import Path

import pytest

from bench_lib import SCHEMA_VERSION
from bench_lib.harness import contract, schema
from bench_lib.harness.workload import OUTCOMES

ROOT = Path(__file__).resolve().parents[2]
QUICK_RUNS = sorted((ROOT / "results").glob("cpu-*/*-quick.json"))


def test_docs_results_contract_is_the_generated_document():
    committed = (ROOT / "docs" / "results-contract.md").read_text()
    assert committed == contract.markdown(), \
        "docs/results-contract.md is stale: python -m bench_lib.harness.contract > docs/results-contract.md"


def test_every_outcome_and_the_current_schema_version_are_documented():
    assert tuple(contract.OUTCOMES) == tuple(OUTCOMES)
    assert SCHEMA_VERSION in contract.HISTORY


def test_the_required_keys_the_validator_checks_are_documented():
    assert set(schema.RECORD_KEYS) <= set(contract.RECORD)
    assert set(schema.ENV_KEYS) <= set(contract.ENVIRONMENT)


@pytest.mark.parametrize("path", QUICK_RUNS, ids=[p.name for p in QUICK_RUNS])
def test_the_document_lists_every_key_of_a_cpu_quick_run(path):
    run = json.loads(path.read_text())
    metrics = {k for c in run["effbench"]["cases"] for k in (c.get("metrics") or {})}
    assert len(metrics) > 50, "a quick run holds every suite's metrics"
    assert schema.undocumented_keys(run) == []
    doc = (ROOT / "docs" / "results-contract.md").read_text()
    per_rank = {m for m in metrics if re.fullmatch(r"rank\d+_.+", m)}  # documented once as rank{R}_<memory view>
    ws1 = {m for m in metrics if re.fullmatch(r"ws1_.+", m) and m != "ws1_step_s"}  # once as ws1_<memory view>
    assert all(f"| `{m}` |" in doc for m in metrics - per_rank - ws1)
    assert not per_rank or "| `rank{R}_<memory view>` |" in doc
    assert not ws1 or "| `ws1_<memory view>` |" in doc


def test_there_is_a_cpu_quick_run_to_check_against():
    assert QUICK_RUNS, "results/cpu-*/ holds no quick run: the coverage test above would check nothing"


def test_an_undocumented_metric_or_memory_view_is_flagged(tmp_path, capsys):
    run = json.loads(QUICK_RUNS[0].read_text())
    run["effbench"]["cases"][0]["metrics"]["speedup_vibes"] = 3
    run["effbench"]["cases"][0]["memory"]["gut_feeling_bytes"] = 1
    assert schema.undocumented_keys(run) == [
        "metric 'speedup_vibes' is not in the contract document (add it to bench_lib/harness/contract.py)",
        "memory view 'gut_feeling_bytes' is not in the contract document (add it to bench_lib/harness/contract.py)",
    ]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    assert schema.main([str(path)]) == 1
    assert "speedup_vibes" in capsys.readouterr().out


def test_per_rank_memory_views_are_documented_but_not_any_rank_key():
    run = json.loads(QUICK_RUNS[0].read_text())
    metrics = run["effbench"]["cases"][0]["metrics"]
    metrics.update(rank0_cpu_peak_rss_bytes=1, rank12_torch_peak_allocated_bytes=2, rank1_vibes=3,
                   ws1_cpu_peak_malloc_bytes=4, ws1_vibes=5)
    assert schema.undocumented_keys(run) == [
        "metric 'rank1_vibes' is not in the contract document (add it to bench_lib/harness/contract.py)",
        "metric 'ws1_vibes' is not in the contract document (add it to bench_lib/harness/contract.py)"]


def test_the_user_docs_never_send_a_reader_outside_the_repository():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 4, "README plus docs/ (contract, measuring, extending)"
    outside = [f"{p.name}: {line.strip()}" for p in pages for line in p.read_text().splitlines()
               if "shared/" in line or "../" in line]
    assert not outside, outside
