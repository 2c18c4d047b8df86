"""Device helpers: GPU-library allocation failures are OOM; a sticky CUDA error ends the process, not the run."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from bench_lib.harness import device

ROOT = Path(__file__).resolve().parents[2]
STICKY = ROOT / "tests" / "data" / "fake_suites" / "bench_sticky.py"
CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize("text", [
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasLtMatmul( ltHandle, computeDesc.descriptor(), ...)`",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "cuDNN Frontend error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",
    "Unable to find a valid cuDNN algorithm to run convolution",
    "CUDA out of memory. Tried to allocate 2.00 GiB",
])
def test_gpu_library_allocation_failures_are_oom(text):
    assert device.is_oom(RuntimeError(text))
    assert device.is_oom(torch.AcceleratorError(text))


@pytest.mark.parametrize("text", [
    "CUDA error: an illegal memory access was encountered",
    "cuDNN error: CUDNN_STATUS_EXECUTION_FAILED",
    "CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling `cublasGemmEx(...)`",
])
def test_other_cuda_errors_are_not_oom(text):
    assert not device.is_oom(RuntimeError(text))


def fake_cuda(monkeypatch, broken: str | None):
    """torch.ones/.cpu on a CUDA device as a healthy (broken=None) or a poisoned context sees them."""
    real_ones = torch.ones

    def ones(*shape, device=None, **kw):
        if device is not None and torch.device(device).type == "cuda":
            if broken:
                raise torch.AcceleratorError(broken)
            return real_ones(*shape, **kw)
        return real_ones(*shape, device=device, **kw)

    monkeypatch.setattr(torch, "ones", ones)
    cuda = types.SimpleNamespace(synchronize=lambda d=None: None,
                                 empty_cache=lambda: (_ for _ in ()).throw(RuntimeError(broken)) if broken else None)
    monkeypatch.setattr(device.torch, "cuda", cuda)


def test_context_error_is_none_while_a_trivial_kernel_runs(monkeypatch):
    fake_cuda(monkeypatch, broken=None)
    assert device.context_error(CUDA) is None
    assert device.context_error(torch.device("cpu")) is None


def test_context_error_names_the_sticky_error(monkeypatch):
    fake_cuda(monkeypatch, broken="CUDA error: an illegal memory access was encountered")
    assert device.context_error(CUDA) == "AcceleratorError: CUDA error: an illegal memory access was encountered"


def test_release_memory_survives_a_lost_context(monkeypatch):
    """Cleanup after the failed case must not raise (it would lose the case's record)."""
    fake_cuda(monkeypatch, broken="CUDA error: an illegal memory access was encountered")
    device.release_memory(CUDA)


def journal_cases(path):
    return [json.loads(line) for line in path.read_text().splitlines()[1:] if line.strip()]


@pytest.mark.slow
def test_sticky_error_is_recorded_and_the_rest_runs_in_a_fresh_process(tmp_path):
    out = tmp_path / "run.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EFFBENCH_TEST_STICKY": "case1"}
    done = subprocess.run([sys.executable, "-m", "bench_lib", "run", "--benchmarks", str(STICKY), "--no-report",
                           "--profile", "smoke", "--device", "cpu", "--output", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    cases = {c["id"]: c for c in json.loads(out.read_text())["effbench"]["cases"]}
    assert {i: c["outcome"] for i, c in cases.items()} == {
        "case0": "ok", "case1": "error", "case2": "ok", "case3": "ok", "case4": "ok"}, done.stdout
    assert "illegal memory access" in cases["case1"]["reason"]
    assert "CUDA context is unusable" in cases["case1"]["reason"]
    assert done.returncode == 1 and "resuming" in done.stdout
    assert len(journal_cases(out.with_suffix(".jsonl"))) == 5  # every case once, none repeated


@pytest.mark.slow
def test_plain_pytest_ends_the_session_with_the_case_recorded(tmp_path):
    """Without the supervisor: the run stops at once (exit devices.CONTEXT_LOST_EXIT) instead of failing every later case."""
    journal = tmp_path / "run.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EFFBENCH_TEST_STICKY": "case1"}
    done = subprocess.run([sys.executable, "-m", "pytest", str(STICKY), "--profile=smoke", "--device=cpu",
                           f"--effbench-journal={journal}", "-p", "no:cacheprovider", "-q"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == device.CONTEXT_LOST_EXIT, done.stdout + done.stderr
    assert [(c["id"], c["outcome"]) for c in journal_cases(journal)] == [("case0", "ok"), ("case1", "error")]
    assert "--effbench-resume" in done.stdout + done.stderr
