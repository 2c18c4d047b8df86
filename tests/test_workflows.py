"""The CI workflows: the invariants the nightly gate relies on, and its compare step run for real in bash."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from runfactory import drifting_runs, environment, synthetic_run, write

from bench_lib.gate import plant

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps(doc: dict) -> dict[str, dict]:
    (job,) = doc["jobs"].values()
    return {s.get("name", s.get("uses")): s for s in job["steps"]}


def test_ci_runs_the_readme_test_command_on_push_and_pull_request():
    doc = load("ci.yml")
    assert {"push", "pull_request"} <= set(doc["on"])
    s = steps(doc)
    assert s["actions/setup-python@v5"]["with"]["python-version"] == "3.11"
    assert s["Tests (tox)"]["run"].strip() == "tox"


def test_nightly_runs_full_profile_on_gpu_runners_and_never_promotes_on_schedule():
    doc = load("nightly-gpu.yml")
    assert "schedule" in doc["on"] and doc["on"]["workflow_dispatch"]["inputs"]["promote"]["type"] == "boolean"
    (job,) = doc["jobs"].values()
    assert {"self-hosted", "gpu"} <= set(job["runs-on"]) and "${{ matrix.gpu }}" in job["runs-on"]
    s = steps(doc)
    assert "effbench run --profile full --device cuda" in s["Run the full profile"]["run"]
    assert "effbench compare" in s["Compare with this GPU's baseline"]["run"]
    assert "GITHUB_STEP_SUMMARY" in s["Job summary"]["run"]
    assert s["Upload run and report"]["uses"].startswith("actions/upload-artifact@")
    promote = s["Promote as the new baseline (pull request)"]
    assert "github.event_name == 'workflow_dispatch'" in promote["if"] and "inputs.promote" in promote["if"]
    assert "steps.run.outcome == 'success'" in promote["if"]
    assert "exit 1" in s["Fail on regression"]["run"]


SHIM = """
import argparse, os, shutil, sys
from bench_lib.gate import baseline, compare
if sys.argv[1] == "run":  # a GPU run cannot happen here: log the command, hand back the prepared rerun file
    with open(os.environ["RUN_LOG"], "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\\n")
    out = sys.argv[sys.argv.index("--output") + 1]
    if os.environ.get("FAKE_RERUN"):
        shutil.copyfile(os.environ["FAKE_RERUN"], out)
    sys.exit(0)
parser = argparse.ArgumentParser(prog="effbench")
sub = parser.add_subparsers(dest="command", required=True)
for name, module in (("compare", compare), ("baseline", baseline)):
    module.add_arguments(sub.add_parser(name))
args = parser.parse_args()
sys.exit({"compare": compare, "baseline": baseline}[args.command].main(args))
"""


def make_bin(tmp_path: Path) -> Path:
    """A bin folder for a step's script: `effbench` is this checkout's CLI (compare, baseline; `run` faked)."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # the subcommands the step uses, delegated as bench_lib.cli does (without importing torch for `run`)
    (bindir / "effbench_shim.py").write_text(SHIM)
    shim = bindir / "effbench"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" "{bindir}/effbench_shim.py" "$@"\n')
    shim.chmod(0o755)
    (bindir / "python").symlink_to(sys.executable)  # the step's `python` is the job's venv
    return bindir


@pytest.fixture
def compare_step(tmp_path):
    """The nightly compare step's script, runnable here: `effbench` on PATH is this checkout's CLI."""
    bindir = make_bin(tmp_path)
    script = steps(load("nightly-gpu.yml"))["Compare with this GPU's baseline"]["run"]

    def run(run_file: str, rerun: str | None = None) -> dict[str, str]:
        out = tmp_path / "github_output"
        out.write_text("")
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "RUN": run_file, "GPU": "h200", "THRESHOLD": "5%",
               "RESOLUTION": "60%", "GITHUB_OUTPUT": str(out), "RUN_LOG": str(tmp_path / "run.log"),
               "FAKE_RERUN": rerun or ""}
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr  # the step itself passes; the last step fails the job
        return dict(line.split("=", 1) for line in out.read_text().splitlines())

    return run


def test_compare_step_without_baseline_warns_and_passes(tmp_path, compare_step):
    run = write(tmp_path, "night.json", synthetic_run(1, env=environment("cuda", "NVIDIA H200")))
    outputs = compare_step(run)
    assert outputs == {"baseline": "results/baselines/nvidia-h200", "status": "0"}
    assert "No baseline" in (tmp_path / "compare.md").read_text()


def test_compare_step_reports_a_regression_against_the_baseline(tmp_path, compare_step):
    night = synthetic_run(1, env=environment("cuda", "NVIDIA H200"))
    folder = tmp_path / "results" / "baselines" / "nvidia-h200"
    folder.mkdir(parents=True)
    write(folder, "night-0.json", night)
    assert compare_step(write(tmp_path, "same.json", night))["status"] == "0"
    slow = write(tmp_path, "slow.json", plant.slow_down(night, "synthetic/case-4", 1.25))
    assert compare_step(slow)["status"] == "1"
    assert "synthetic/case-4" in (tmp_path / "compare.md").read_text().split("### Regressions")[1]
    assert (tmp_path / "compare.json").exists()


def test_compare_step_judges_against_every_baseline_run_and_fails_a_blind_gate(tmp_path, compare_step):
    env = environment("cuda", "NVIDIA H200")
    folder = tmp_path / "results" / "baselines" / "nvidia-h200"
    folder.mkdir(parents=True)
    for i in range(3):
        write(folder, f"night-{i}.json", synthetic_run(i, env=env))
    assert compare_step(write(tmp_path, "new.json", synthetic_run(9, env=env)))["status"] == "0"
    assert "Baseline: 3 runs of the same code" in (tmp_path / "compare.md").read_text()
    noisy = write(tmp_path, "noisy.json", synthetic_run(9, env=env, noise=0.3))  # IQR ~40%: a 10% change is hidden
    for i in range(3):
        write(folder, f"night-{i}.json", synthetic_run(i, env=env, noise=0.3))
    assert compare_step(noisy)["status"] == "2"


def test_compare_step_reruns_the_suspects_and_counts_only_what_reproduces(tmp_path, compare_step):
    env = environment("cuda", "NVIDIA H200")
    runs = drifting_runs(5, n_cases=12, drift=0.03, seed=11, env=env)
    folder = tmp_path / "results" / "baselines" / "nvidia-h200"
    folder.mkdir(parents=True)
    for i in range(3):
        write(folder, f"night-{i}.json", runs[i])
    night = write(tmp_path, "night.json", plant.slow_down(runs[3], "synthetic/case-5", 3.0))
    # the machine stalled during case-5 tonight: its rerun is at the usual speed
    assert compare_step(night, rerun=write(tmp_path, "quiet.json", runs[4]))["status"] == "0"
    log = (tmp_path / "run.log").read_text()
    assert "--benchmarks benchmarks/test_synthetic.py::test_synthetic[case-5]" in log and "--profile full" in log
    md = (tmp_path / "compare.md").read_text()
    assert "### Not reproduced in the rerun" in md and "did not reproduce" in md
    # a real slowdown is slow again in the rerun
    slow_again = write(tmp_path, "slow.json", plant.slow_down(runs[4], "synthetic/case-5", 3.0))
    assert compare_step(night, rerun=slow_again)["status"] == "1"
    md = (tmp_path / "compare.md").read_text()
    assert "reproduced in the rerun" in md.split("### Regressions")[1]
    # no rerun came back (the run failed to start): the regression stands
    assert compare_step(night)["status"] == "1"



def test_promote_step_runs_the_repeats_and_promotes_every_run(tmp_path):
    bindir = make_bin(tmp_path)
    for tool in ("git", "gh"):  # record what would reach GitHub
        fake = bindir / tool
        fake.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{tmp_path}/tools.log"\n')
        fake.chmod(0o755)
    env_h200 = environment("cuda", "NVIDIA H200")
    (tmp_path / "runs").mkdir()
    night = write(tmp_path / "runs", "nightly-h200-42.json", synthetic_run(1, env=env_h200))
    repeat = write(tmp_path, "repeat.json", synthetic_run(2, env=env_h200))
    script = steps(load("nightly-gpu.yml"))["Promote as the new baseline (pull request)"]["run"]
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "RUN": "runs/nightly-h200-42.json", "GPU": "h200", "RUN_ID": "42",
           "REPEATS": "3", "BASE_BRANCH": "main", "RUN_LOG": str(tmp_path / "run.log"), "FAKE_RERUN": repeat}
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    runs = (tmp_path / "run.log").read_text().splitlines()
    assert len(runs) == 2 and all("--profile full --device cuda" in r and "--no-report" in r for r in runs)
    folder = tmp_path / "results" / "baselines" / "nvidia-h200"
    assert sorted(p.name for p in folder.iterdir()) == [
        "nightly-h200-42-repeat2.json", "nightly-h200-42-repeat3.json", "nightly-h200-42.json"]
    assert (folder / "nightly-h200-42.json").read_text() == Path(night).read_text()
    tools = (tmp_path / "tools.log").read_text()
    assert "git switch -c baseline/h200-42" in tools and "git add results/baselines" in tools
    assert "gh pr create --base main --head baseline/h200-42" in tools
