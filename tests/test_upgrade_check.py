"""scripts/upgrade_check.sh with a fake pip on CPU: two venvs, the candidates on side B only, effbench ab between them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASE = "tests/data/fake_suites/bench_slow.py::test_slow[case0]"


@pytest.fixture
def fake_pip(tmp_path):
    log = tmp_path / "pip.log"
    pip = tmp_path / "fake-pip"
    pip.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    pip.chmod(0o755)
    return pip, log


@pytest.mark.slow
def test_pinned_stack_against_candidates_through_ab(tmp_path, fake_pip):
    pip, log = fake_pip
    out = tmp_path / "out"
    env = {**os.environ, "EFFBENCH_UPGRADE_PIP": str(pip), "EFFBENCH_UPGRADE_DEVICE": "cpu",
           "EFFBENCH_UPGRADE_PYTHON": sys.executable, "EFFBENCH_UPGRADE_CONSTRAINTS": "constraints/cpu.txt",
           "EFFBENCH_UPGRADE_VENV_ARGS": "--system-site-packages --without-pip", "EFFBENCH_TEST_SLEEP_S": "0.002",
           "EFFBENCH_UPGRADE_ARGS": f"--benchmarks {CASE} --pairs 10 --sample-time 0.01",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["bash", "scripts/upgrade_check.sh", str(out), "bitsandbytes==0.49.2", "torch==2.13.0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    calls = log.read_text().splitlines()
    a_py, b_py = out / "venv-a" / "bin" / "python", out / "venv-b" / "bin" / "python"
    # both sides get the pinned stack with the constraints; only B gets the candidates
    assert calls == [f"{a_py} install -q -e .[gpu,quant] -c constraints/cpu.txt",
                     f"{b_py} install -q -e .[gpu,quant] -c constraints/cpu.txt",
                     f"{b_py} install -q bitsandbytes==0.49.2 torch==2.13.0"], proc.stdout + proc.stderr
    result = json.loads((out / "ab.json").read_text())
    assert result["sides"]["A"]["python"] == str(a_py) and result["sides"]["B"]["python"] == str(b_py)
    assert [c["outcome"] for c in result["cases"]] == [{"A": "ok", "B": "ok"}]
    assert proc.returncode == (1 if result["regression"] else 0)  # the script exits with ab's status
    assert (out / "ab.md").exists() and "effbench ab" in (out / "upgrade_check.log").read_text()


def test_no_candidate_is_bad_input(tmp_path):
    proc = subprocess.run(["bash", "scripts/upgrade_check.sh", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "name at least one candidate" in proc.stderr


def test_a_candidate_that_does_not_install_is_bad_input(tmp_path):
    pip = tmp_path / "failing-pip"
    pip.write_text('#!/bin/sh\ncase "$*" in *nosuch*) exit 1;; esac\n')
    pip.chmod(0o755)
    env = {**os.environ, "EFFBENCH_UPGRADE_PIP": str(pip), "EFFBENCH_UPGRADE_PYTHON": sys.executable,
           "EFFBENCH_UPGRADE_VENV_ARGS": "--without-pip"}
    proc = subprocess.run(["bash", "scripts/upgrade_check.sh", str(tmp_path / "o"), "nosuch==1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "do not install" in proc.stdout + proc.stderr
    assert not (tmp_path / "o" / "ab.json").exists()
