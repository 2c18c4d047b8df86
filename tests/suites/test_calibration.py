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


FP8_CASE = Case("calibration", "f", {"kind": "matmul", "dtype": "fp8", "n": 64})


def test_fp8_is_unsupported_on_cpu():
    rec = runner.run_case(calibration.build, FP8_CASE, CTX)
    assert rec["outcome"] == "unsupported" and "sm89" in rec["reason"]


def test_fp8_support_reads_the_capability(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(calibration.torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert "sm80" in calibration.fp8_support(cuda)
    monkeypatch.setattr(calibration.torch.cuda, "get_device_capability", lambda device=None: (8, 9))
    assert calibration.fp8_support(cuda) is None
    monkeypatch.setattr(calibration.torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert calibration.fp8_support(cuda) is None


def _fake_scaled_mm(calls, wrong=1.0):
    def scaled_mm(a, b, scale_a, scale_b, out_dtype):
        calls.append((a.dtype, b.dtype, a.is_contiguous(), b.t().is_contiguous(), scale_a.dtype, scale_b.dtype,
                      out_dtype))
        return ((a.float() * scale_a) @ (b.float() * scale_b) * wrong).to(out_dtype)
    return scaled_mm


def test_fp8_on_a_fake_sm90_calls_scaled_mm_with_e4m3_inputs(monkeypatch):
    calls = []
    monkeypatch.setattr(calibration, "_capability", lambda device: (9, 0))
    monkeypatch.setattr(calibration.torch, "_scaled_mm", _fake_scaled_mm(calls))
    rec = runner.run_case(calibration.build, FP8_CASE, CTX)
    m = rec["metrics"]
    assert rec["outcome"] == "ok", rec.get("reason")
    e4m3 = torch.float8_e4m3fn
    assert calls and set(calls) == {(e4m3, e4m3, True, True, torch.float32, torch.float32, torch.bfloat16)}
    assert m["tolerance"] == 2.0**-6 and m["max_rel_error"] <= m["tolerance"] and m["tolerance_derivation"]
    assert m["flop"] == 2 * 64**3 and m["input_bytes"] == 2 * 64 * 64  # one byte per element


def test_a_wrong_fp8_matmul_is_caught(monkeypatch):
    monkeypatch.setattr(calibration, "_capability", lambda device: (9, 0))
    monkeypatch.setattr(calibration.torch, "_scaled_mm", _fake_scaled_mm([], wrong=1.05))
    rec = runner.run_case(calibration.build, FP8_CASE, CTX)
    assert rec["outcome"] == "error" and rec["metrics"]["max_rel_error"] > 2.0**-6


def test_gpu_grid_has_the_fp8_ceiling_and_cpu_does_not():
    assert any(c.params.get("dtype") == "fp8" for c in profiles.calibration_grid("full", "cuda"))
    assert not any(c.params.get("dtype") == "fp8" for c in profiles.calibration_grid("full", "cpu"))
