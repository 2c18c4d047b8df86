"""Distributed fine-tune cases (bench_lib.suites.distributed): real gloo runs over 2 ranks on CPU; a rank that
raises, hangs or runs out of memory (test-only EFFBENCH_DIST_FAULT) ends its case as an outcome within the
case's limit, and the next case still runs."""

import statistics
import time

import psutil
import pytest
import torch

from bench_lib.harness import profiles, runner
from bench_lib.harness.workload import Case, Context
from bench_lib.suites import distributed, finetune

CPU = torch.device("cpu")


def case(strategy="ddp", method="full", world=2, **extra):
    lora = method == "lora"
    return Case("finetune", f"llama-tiny-{method}-{strategy}-w{world}", {
        "group": "distributed", "model": "llama-tiny", "method": method, "rank": 4 if lora else None,
        "targets": "attn" if lora else None, "checkpointing": False, "attention": "sdpa", "batch": 2, "seq": 32,
        "strategy": strategy, "world_size": world, "steps": 2, **extra})


def run(c, timeout_s=240):
    return runner.run_case(finetune.build, c, Context(CPU, profiles.get("smoke")), timeout_s=timeout_s)


@pytest.mark.parametrize("fault,outcome", [("raise:1", "error"), ("oom:1", "oom"), ("hang:1", "timeout")])
def test_a_failing_rank_ends_the_case_and_the_next_case_runs(monkeypatch, fault, outcome):
    monkeypatch.setenv(distributed.FAULT_ENV, fault)
    t0, start = time.monotonic(), time.time()
    # the launch limit ends the hung group long before the case's limit (each launch takes 10-60 s here)
    rec = run(case(launch_timeout_s=75), timeout_s=400)
    assert rec["outcome"] == outcome, rec["reason"]
    assert time.monotonic() - t0 < 400
    if outcome == "error":
        assert "rank crashed" in rec["reason"]
    if outcome == "timeout":  # the hang itself, not a slow start: both ranks had reached their steps
        assert "world size 2: no result within 75 s (rank 0 in steps, rank 1 in steps)" in rec["reason"]
    leaked = [p.pid for p in psutil.process_iter(["cmdline", "create_time"])
              if "bench_lib.suites.distributed" in " ".join(p.info["cmdline"] or []) and p.info["create_time"] >= start]
    assert not leaked  # every rank of the failed group is gone (torchrun starts each in its own session)
    monkeypatch.delenv(distributed.FAULT_ENV)
    if fault == "hang:1":  # the hung group was killed: the next case runs and is ok
        assert run(case(world=1))["outcome"] == "ok"


def test_fsdp_case_records_slowest_rank_steps_and_per_rank_memory():
    rec = run(case("fsdp"))
    assert rec["outcome"] == "ok", rec["reason"]
    m = rec["metrics"]
    assert m["world_size"] == 2 and m["backend"] == "gloo" and m["strategy"] == "fsdp"
    assert len(rec["samples_s"]) == 2 and m["step_s"] == pytest.approx(statistics.median(rec["samples_s"]))
    assert rec["memory"]["cpu_peak_rss_bytes"] == max(m["rank0_cpu_peak_rss_bytes"], m["rank1_cpu_peak_rss_bytes"])
    # every rank's live-malloc view, and the world-size-1 run's views as the reference
    assert all(m[f"rank{r}_cpu_peak_malloc_bytes"] >= m[f"rank{r}_cpu_malloc_before_bytes"] > 0 for r in (0, 1))
    assert m["ws1_cpu_peak_rss_bytes"] > 0 and m["ws1_cpu_peak_malloc_bytes"] >= m["ws1_cpu_malloc_before_bytes"] > 0
    assert m["scaling_efficiency"] == pytest.approx(m["ws1_step_s"] / m["step_s"])
    assert m["tokens_per_s"] == pytest.approx(2 * m["tokens_per_s_per_rank"])


def test_qlora_under_fsdp_is_unsupported_with_a_reason():
    rec = run(case("fsdp", "qlora"))
    assert rec["outcome"] == "unsupported" and rec["reason"]
