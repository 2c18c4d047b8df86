import torch

from bench_lib.harness import profiles, runner
from bench_lib.harness.workload import Case, Context
from bench_lib.suites import calibration

CTX = Context(torch.device("cpu"), profiles.get("smoke"))


def test_matmul_reports_flops_and_error():
    rec = runner.run_case(calibration.build, Case("calibration", "m", {"kind": "matmul", "dtype": "fp32", "n": 128}), CTX)
    m = rec["metrics"]
    assert rec["outcome"] == "ok" and m["flop"] == 2 * 128**3
    assert m["flop_per_s"] == m["flop"] / m["time_s"] and m["max_rel_error"] < 1e-5


def test_a_wrong_matmul_is_caught(monkeypatch):
    real = torch.matmul
    monkeypatch.setattr(calibration.torch, "matmul", lambda a, b, out: real(a, b, out=out).mul_(1.01))
    rec = runner.run_case(calibration.build, Case("calibration", "m", {"kind": "matmul", "dtype": "fp32", "n": 64}), CTX)
    assert rec["outcome"] == "error" and rec["metrics"]["max_rel_error"] > 1e-3


def test_copy_bandwidth_counts_read_and_write():
    rec = runner.run_case(calibration.build, Case("calibration", "c", {"kind": "copy", "mib": 8}), CTX)
    m = rec["metrics"]
    assert m["bytes_moved"] == 2 * 8 * 2**20
    assert m["bandwidth_bytes_per_s"] == m["bytes_moved"] / m["time_s"]


def test_tf32_is_unsupported_on_cpu():
    rec = runner.run_case(calibration.build, Case("calibration", "t", {"kind": "matmul", "dtype": "tf32", "n": 64}), CTX)
    assert rec["outcome"] == "unsupported" and "CUDA" in rec["reason"]
