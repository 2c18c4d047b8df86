"""pytest-benchmark's own options, typed as its users type them, on a few real smoke cases of effbench's suites.

Each test runs a child ``pytest benchmarks/...`` from the checkout with one option and checks what that
option is for: a grouping by a case parameter, a sort order, a column set, a saved run compared (and failed
on a planted slowdown), a histogram file, a run with timing through pytest-benchmark disabled, a skip.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# two suites whose cases have different parameters: calibration (kind, dtype, n) and attention (seq_len, ...)
SUITES = ["benchmarks/test_calibration.py", "benchmarks/test_attention.py"]
CASES = "matmul-fp32 or eager-fwd-fp32-s128-b2-h2-d64-causal or sdpa_math-fwd-fp32-s128-b2-h2-d64-causal"
N_CASES = 3


def run_suites(tmp_path, *options, timeout=300):
    # -p no:xdist: under `pytest -n` the child inherits xdist's worker variables, and pytest-benchmark then
    # disables itself ("benchmarks cannot be performed reliably in a parallelized environment")
    cmd = [sys.executable, "-m", "pytest", *SUITES, "--profile=smoke", "-k", CASES, "-p", "no:cacheprovider",
           "-p", "no:randomly", "-p", "no:xdist", *options]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**env, "PYTHONPATH": str(ROOT)})
    return proc, proc.stdout + proc.stderr


def table_names(out: str) -> list[str]:
    return re.findall(r"^(test_\w+\[[^\]]+\])", out, flags=re.M)


def test_group_by_a_case_parameter_that_only_some_suites_have(tmp_path):
    proc, out = run_suites(tmp_path, "--benchmark-group-by=param:seq_len,param:kind")
    assert proc.returncode == 0, out
    assert "benchmark 'seq_len=128 kind=None': 2 tests" in out, out
    assert "benchmark 'seq_len=None kind=matmul': 1 tests" in out, out


def test_sort_by_name(tmp_path):
    proc, out = run_suites(tmp_path, "--benchmark-sort=name", "--benchmark-group-by=group")
    assert proc.returncode == 0, out
    attention = [n for n in table_names(out) if n.startswith("test_attention")]
    assert attention == sorted(attention) and len(attention) == 2, out


def test_columns(tmp_path):
    proc, out = run_suites(tmp_path, "--benchmark-columns=min,median,rounds")
    assert proc.returncode == 0, out
    header = next(line for line in out.splitlines() if line.startswith("Name (time in"))
    assert header.split(")", 1)[1].split() == ["Min", "Median", "Rounds"], header


def test_autosave_then_compare_and_fail_on_a_planted_slowdown(tmp_path):
    storage = tmp_path / "storage"
    proc, out = run_suites(tmp_path, "--benchmark-autosave", f"--benchmark-storage={storage}")
    assert proc.returncode == 0, out
    (saved,) = storage.rglob("0001_*.json")
    run = json.loads(saved.read_text())
    assert len(run["benchmarks"]) == N_CASES and all(b["params"].get("impl") or b["params"].get("kind")
                                                     for b in run["benchmarks"]), "case parameters are saved"

    def baseline_scaled(factor):
        for b, original in zip(run["benchmarks"], json.loads(saved_text)["benchmarks"], strict=True):
            b["stats"] = {k: v * factor if isinstance(v, float) and k not in ("ops", "rounds", "iterations") else v
                          for k, v in original["stats"].items()}
        saved.write_text(json.dumps(run))

    # smoke timings are one sample each, and on a busy machine one run's sample can be 100x another's: the
    # baseline is planted 10^4x slower (today cannot be a regression) and then 10^4x faster (today must be)
    saved_text = saved.read_text()
    baseline_scaled(1e4)
    proc, out = run_suites(tmp_path, f"--benchmark-storage={storage}", "--benchmark-compare=0001",
                           "--benchmark-compare-fail=median:50%")
    assert proc.returncode == 0, out
    assert "0001" in out and "(NOW)" in out, out

    baseline_scaled(1e-4)
    proc, out = run_suites(tmp_path, f"--benchmark-storage={storage}", "--benchmark-compare=0001",
                           "--benchmark-compare-fail=median:50%")
    assert proc.returncode == 1, out
    assert "Performance has regressed" in out, out


def test_histogram(tmp_path):
    pytest.importorskip("pygal", reason="--benchmark-histogram needs pygal (pip install 'pytest-benchmark[histogram]')")
    prefix = tmp_path / "hist"
    proc, out = run_suites(tmp_path, f"--benchmark-histogram={prefix}")
    assert proc.returncode == 0, out
    svgs = list(tmp_path.glob("hist*.svg"))
    assert svgs and all(f.stat().st_size > 1000 for f in svgs), out


def test_disable_still_measures_every_case_into_the_run_file(tmp_path):
    proc, out = run_suites(tmp_path, "--benchmark-disable", f"--benchmark-json={tmp_path / 'run.json'}")
    assert proc.returncode == 0, out
    run = json.loads((tmp_path / "run.json").read_text())
    cases = run["effbench"]["cases"]
    assert len(cases) == N_CASES and all(c["outcome"] == "ok" and c["metrics"]["time_s"] > 0 for c in cases), out


def test_skip_skips_every_case(tmp_path):
    proc, out = run_suites(tmp_path, "--benchmark-skip")
    assert proc.returncode == 0, out
    assert f"{N_CASES} skipped" in out and "passed" not in out, out
