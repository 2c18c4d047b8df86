"""scripts/gpu_check.sh, exercised on CPU (device and suite overridden): it leaves the run, journal and logs."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_script_leaves_run_journal_and_logs(tmp_path):
    env = {**os.environ, "EFFBENCH_GPU_CHECK_DEVICE": "cpu", "EFFBENCH_GPU_CHECK_PROFILE": "smoke",
           "EFFBENCH_GPU_CHECK_ARGS": "--benchmarks tests/data/fake_suites/bench_slow.py"}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads((tmp_path / "run.json").read_text())
    assert [c["outcome"] for c in run["effbench"]["cases"]] == ["ok"] * 8
    for name in ("run.jsonl", "run.log", "gpu_check.log"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "machine_slug" in (tmp_path / "gpu_check.log").read_text()  # `effbench env` ran first
