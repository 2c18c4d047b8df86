"""Largest-that-fits: the search is proven on both sides, OOM counts as not fitting, real CPU runs honour a budget."""

import argparse
import json

import pytest
import torch

from bench_lib.harness import memory, profiles
from bench_lib.harness.workload import Case, Context
from bench_lib.planner import fit
from bench_lib.suites import attention


def linear_probe(bytes_per_unit, oom_above=None, calls=None):
    def probe(size):
        if calls is not None:
            calls.append(size)
        if oom_above is not None and size > oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return bytes_per_unit * size
    return probe


def test_budget_boundary_exact():
    calls = []
    res = fit.largest_that_fits(linear_probe(1000, calls=calls), budget_bytes=50_500, lo=1, hi=1000)
    assert (res.largest_ok, res.smallest_failing) == (50, 51)
    outcome = {p.size: p.outcome for p in res.probes}
    assert outcome[50] == "ok" and outcome[51] == "over_budget"
    assert len(calls) == len(set(calls)) <= 15  # doubling then bisection, no size measured twice


def test_multiples_only():
    res = fit.largest_that_fits(linear_probe(1), budget_bytes=1000, lo=64, hi=1 << 20, multiple=64)
    assert (res.largest_ok, res.smallest_failing) == (960, 1024)
    assert all(p.size % 64 == 0 for p in res.probes)


def test_oom_is_not_fitting():
    res = fit.largest_that_fits(linear_probe(1, oom_above=37), budget_bytes=float("inf"), lo=1, hi=100)
    assert (res.largest_ok, res.smallest_failing) == (37, 38)
    assert next(p for p in res.probes if p.size == 38).outcome == "oom"


def test_nothing_fits_and_everything_fits():
    none = fit.largest_that_fits(linear_probe(10), budget_bytes=5, lo=1, hi=100)
    assert (none.largest_ok, none.smallest_failing) == (None, 1)
    all_ = fit.largest_that_fits(linear_probe(1), budget_bytes=1e9, lo=1, hi=100)
    assert (all_.largest_ok, all_.smallest_failing) == (100, None)


def test_other_errors_propagate():
    def broken(size):
        raise ValueError("shape mismatch")
    with pytest.raises(ValueError, match="shape mismatch"):
        fit.largest_that_fits(broken, budget_bytes=1e9, lo=1, hi=8)


def test_bad_bounds():
    with pytest.raises(ValueError):
        fit.largest_that_fits(linear_probe(1), budget_bytes=1, lo=10, hi=100, multiple=64)


def _ctx():
    return Context(device=torch.device("cpu"), profile=profiles.get("smoke"))


def test_real_cpu_attention_within_budget():
    """Eager attention materializes (s x s) scores per head: memory grows with s^2, so a 16 MiB budget cuts it."""
    torch.set_num_threads(1)
    base = Case("attention", "eager-fwd-fit", {"impl": "eager", "direction": "fwd", "dtype": "fp32", "seq_len": 64,
                                                "batch": 1, "heads": 2, "kv_heads": 2, "head_dim": 64, "causal": True})
    budget = 16 * 2**20
    probe = fit.suite_probe(attention.build, base, "seq_len", _ctx())
    with memory.exact_rss(torch.device("cpu")):
        res = fit.largest_that_fits(probe, budget, lo=64, hi=2048, multiple=64)
        assert res.largest_ok is not None and res.smallest_failing == res.largest_ok + 64
        # independent re-measurement, a step either side of the boundary: the search's answer holds
        assert probe(res.largest_ok - 64) <= budget
        assert probe(res.smallest_failing + 64) > budget
        # a size measures the same every time (RSS did not: heap left by one probe made the next read low)
        assert len({probe(res.largest_ok) for _ in range(3)}) == 1
    # scores (2 heads x s^2 x 4 B, for the mask add and again for softmax) dominate: 16 MiB is near s = 1000
    assert 384 <= res.largest_ok <= 1536


def test_cli_records_a_fit_case(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    fit.add_arguments(parser)
    out = tmp_path / "fit.jsonl"
    args = parser.parse_args(["--suite", "attention", "--device", "cpu", "--memory-budget", "16MiB",
                              "--param", "batch=1", "--param", 'direction="fwd"', "--param", "impl=eager",
                              "--max", "2048", "--output", str(out), "--format", "json"])
    assert fit.main(args) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["suite"] == "fit" and rec["case"]["vary"] == "seq_len" and rec["case"]["impl"] == "eager"
    m = rec["metrics"]
    assert m["smallest_fail"] == m["largest_fit"] + 64 and m["largest_fit_peak_bytes"] <= 16 * 2**20
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["header", "case"]


def test_cpu_needs_a_budget(capsys):
    parser = argparse.ArgumentParser()
    fit.add_arguments(parser)
    assert fit.main(parser.parse_args(["--suite", "attention", "--device", "cpu"])) == 2
    assert "required on CPU" in capsys.readouterr().err  # errors go to stderr
