"""The CI workflows: the invariants the nightly gate relies on, and its compare step run for real in bash."""

import re
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


def steps(doc: dict, job: str | None = None) -> dict[str, dict]:
    (only,) = doc["jobs"].values() if job is None else (doc["jobs"][job],)
    return {s.get("name", s.get("uses")): s for s in only["steps"]}


def test_ci_runs_the_readme_test_command_on_push_and_pull_request():
    doc = load("ci.yml")
    assert {"push", "pull_request"} <= set(doc["on"])
    s = steps(doc)
    assert s["actions/setup-python@v5"]["with"]["python-version"] == "3.11"
    assert s["Tests (tox)"]["run"].strip() == "tox"


def test_nightly_runs_full_profile_on_gpu_runners_and_never_promotes_on_schedule():
    doc = load("nightly-gpu.yml")
    assert "schedule" in doc["on"] and doc["on"]["workflow_dispatch"]["inputs"]["promote"]["type"] == "boolean"
    jobs = doc["jobs"]
    for name, job in jobs.items():  # plain self-hosted GPU runners: no tool cache, the pinned venv everywhere
        assert {"self-hosted", "linux", "gpu"} <= set(job["runs-on"]) and "${{ matrix.gpu }}" in job["runs-on"]
        uses = [s.get("uses", "") for s in job["steps"]]
        assert not any(u.startswith("actions/setup-python") for u in uses), name
        if name == "upgrade":  # builds its two venvs itself (the pins as A, the pins plus candidates as B)
            assert "bash scripts/upgrade_check.sh" in steps(doc, name)["Pinned stack against the candidates (effbench ab)"]["run"]
            continue
        assert steps(doc, name)["Install effbench (pinned GPU stack)"]["run"] == "bash scripts/ci/install_gpu_stack.sh"
    s = steps(doc, "gate")
    assert s["Run the full profile"]["run"] == "bash scripts/ci/run_full_profile.sh"
    assert "effbench run --profile full --device cuda" in (ROOT / "scripts/ci/run_full_profile.sh").read_text()
    assert "effbench compare" in s["Compare with this GPU's baseline"]["run"]
    assert "GITHUB_STEP_SUMMARY" in s["Job summary"]["run"]
    assert s["Upload run and report"]["uses"].startswith("actions/upload-artifact@")
    assert "exit 1" in s["Fail on regression"]["run"]
    # only a manual run with promote ticked reaches the repeats and the promotion; only promotion may write
    for name in ("repeat", "promote"):
        assert "github.event_name == 'workflow_dispatch'" in jobs[name]["if"] and "inputs.promote" in jobs[name]["if"]
    assert jobs["promote"]["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "permissions" not in jobs["gate"] and doc["permissions"] == {"contents": "read"}
    assert jobs["repeat"]["strategy"]["max-parallel"] == 1 and jobs["promote"]["needs"] == ["gate", "repeat"]


def test_each_full_run_has_its_own_job_and_the_estimate_in_the_header_is_the_grid():
    from bench_lib.harness import grid_estimate

    doc = load("nightly-gpu.yml")
    rows = grid_estimate.estimate("full", "cuda")
    cases, minutes = sum(r.cases for r in rows), sum(r.total_s for r in rows) / 60
    text = (WORKFLOWS / "nightly-gpu.yml").read_text()
    assert f"the full profile is {cases} cases" in text and f"~{minutes / 60:.1f} h" in text
    run_limit = int(doc["env"]["EFFBENCH_PROFILE_TIMEOUT_MIN"])
    assert minutes < run_limit  # one estimated full run fits its own limit ...
    for name in ("gate", "repeat"):  # ... and that limit fits the job's, which runs one full profile
        assert run_limit < doc["jobs"][name]["timeout-minutes"] <= 360
        script = steps(doc, name)["Run the full profile"]["run"]
        assert script == "bash scripts/ci/run_full_profile.sh"


SHIM = """
import argparse, os, shutil, sys
from bench_lib.gate import baseline, compare
if sys.argv[1] == "run":  # a GPU run cannot happen here: log the command, hand back the prepared rerun file
    with open(os.environ["RUN_LOG"], "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\\n")
    out = sys.argv[sys.argv.index("--output") + 1]
    if os.environ.get("FAKE_RERUN"):
        shutil.copyfile(os.environ["FAKE_RERUN"], out)
    sys.exit(int(os.environ.get("FAKE_RUN_RC", "0")))
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
    script = steps(load("nightly-gpu.yml"), "gate")["Compare with this GPU's baseline"]["run"]

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


# ---------------------------------------------------------------- install: a pinned venv, kept, flash tried once
FAKE_PY = """#!/bin/sh
# the runner's python3: version checks, and `-m venv DIR` makes DIR/bin/python (a logging fake of the venv)
case "$1" in
  -c) case "$2" in *assert*) exit "${FAKE_PY_OLD:-0}" ;; *) echo 3.11 ;; esac ;;
  -V) echo "Python 3.9.2" ;;
  -m) echo "python3 $*" >> "$LOG"; mkdir -p "$3/bin"; cp "$FAKE_VENV_PY" "$3/bin/python" ;;
esac
"""
FAKE_VENV_PY = """#!/bin/sh
echo "venv-python $* | PIP_CONSTRAINT=$PIP_CONSTRAINT MAX_JOBS=${MAX_JOBS:-}" >> "$LOG"
case "$*" in *"[flash]"*) exit "${FAKE_FLASH_RC:-0}" ;; esac
"""


@pytest.fixture
def install_step(tmp_path):
    """The install step, run in bash as the workflow runs it, with a fake python3 and pip: (rc, stdout, log)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("python3", FAKE_PY), ("venv_python", FAKE_VENV_PY)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    script = steps(load("nightly-gpu.yml"), "gate")["Install effbench (pinned GPU stack)"]["run"]

    def run(**extra) -> tuple[int, str, list[str]]:
        log = tmp_path / "install.log"
        log.write_text("")
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LOG": str(log),
               "FAKE_VENV_PY": str(bindir / "venv_python"), "GITHUB_PATH": str(tmp_path / "github_path"), **extra}
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
        return proc.returncode, proc.stdout + proc.stderr, log.read_text().splitlines()

    return run


def test_install_step_makes_a_pinned_venv_once_and_a_failed_flash_build_is_a_warning(tmp_path, install_step):
    lock = str(ROOT / "constraints" / "gpu.txt")
    rc, out, log = install_step(FAKE_FLASH_RC="1")
    assert rc == 0, out
    (venv,) = (tmp_path / "home" / ".cache" / "effbench").iterdir()
    assert venv.name.startswith("venv-py3.11-")  # one venv per interpreter and hash of the pins
    assert log[0] == f"python3 -m venv {venv}"
    pip = [line for line in log if line.startswith("venv-python -m pip install")]
    assert pip[0].startswith(f"venv-python -m pip install -c {lock} setuptools wheel ninja")
    assert pip[1].startswith(f"venv-python -m pip install -c {lock} .[gpu,quant,report] |")
    assert f"-c {lock} --no-build-isolation .[flash]" in pip[2] and "MAX_JOBS=8" in pip[2]
    assert all(f"PIP_CONSTRAINT={lock}" in line for line in pip)  # isolated builds see the pins too
    assert "--no-deps --no-build-isolation -e ." in pip[3] and len(pip) == 4
    assert "::warning::flash-attn did not install" in out and "'unsupported'" in out
    assert (tmp_path / "github_path").read_text() == f"{venv}/bin\n"
    # the next night: the same pins reuse the venv; only this checkout is installed again
    rc, out, log = install_step(FAKE_FLASH_RC="1")
    assert rc == 0, out
    assert len(log) == 1 and "-e ." in log[0]
    assert "::warning::flash-attn did not install" in out  # still said, every night


def test_install_step_with_flash_and_an_old_python(install_step):
    rc, out, log = install_step()
    assert rc == 0 and "::warning::" not in out, out
    rc, out, log = install_step(FAKE_PY_OLD="1", EFFBENCH_VENV_ROOT="/nonexistent")
    assert rc == 1 and "::error::constraints/gpu.txt needs Python 3.11 or newer" in out and "3.9.2" in out
    assert log == []


# ---------------------------------------------------------------- the full run: its status kept for promotion
def run_step(tmp_path, rc: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    bindir = tmp_path / "bin" if (tmp_path / "bin").exists() else make_bin(tmp_path)
    doc = load("nightly-gpu.yml")
    out = tmp_path / "github_output"
    out.write_text("")
    made = synthetic_run(1, env=environment("cuda", "NVIDIA H200"))
    for c in made["effbench"]["cases"]:  # six attention cases of 1 s each (their records' time stamps)
        c["suite"] = "attention"
    run = write(tmp_path, "made.json", made)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "PYTHONPATH": str(ROOT), "RUN": "runs/nightly-h200-42.json",
           "GITHUB_OUTPUT": str(out), "RUN_LOG": str(tmp_path / "run.log"), "FAKE_RERUN": run,
           "FAKE_RUN_RC": rc, "EFFBENCH_PROFILE_TIMEOUT_MIN": str(doc["env"]["EFFBENCH_PROFILE_TIMEOUT_MIN"])}
    script = (ROOT / steps(doc, "repeat")["Run the full profile"]["run"].split()[-1]).read_text()
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    return proc, dict(line.split("=", 1) for line in out.read_text().splitlines())


def test_run_step_passes_a_finished_run_with_failures_and_keeps_its_status(tmp_path):
    proc, outputs = run_step(tmp_path, "1")
    assert proc.returncode == 0 and outputs == {"status": "1"}, proc.stderr
    assert (tmp_path / "runs" / "nightly-h200-42.status").read_text() == "1\n"
    # this night's time per case (1 s), for the next estimate over the whole attention grid
    assert re.search(r"attention +\d+ +1\.0 +\d+ min  measured \(6 cases\)", proc.stdout), proc.stdout
    assert "--profile full --device cuda --output runs/nightly-h200-42.json" in (tmp_path / "run.log").read_text()
    proc, outputs = run_step(tmp_path, "130")  # interrupted (the time limit): not a finished run
    assert proc.returncode == 130 and outputs == {"status": "130"}
    assert "::error::effbench run did not finish (exit 130)" in proc.stdout


# ---------------------------------------------------------------- promotion: tolerant, and without gh
@pytest.fixture
def promote_step(tmp_path):
    """The promote step with the gate's and the repeats' runs downloaded, git faked, gh faked or absent."""
    bindir = make_bin(tmp_path)
    (bindir / "git").write_text(f'#!/bin/sh\necho "git $*" >> "{tmp_path}/tools.log"\n')
    (bindir / "git").chmod(0o755)
    env_h200 = environment("cuda", "NVIDIA H200")
    (tmp_path / "runs").mkdir()
    (tmp_path / "compare.md").write_text("## effbench compare: old baseline -> this night\n")
    script = steps(load("nightly-gpu.yml"), "promote")["Promote as the new baseline (pull request)"]["run"]

    def run(gh: str | None = "exit 0", failed: int = 0, max_failed: str = "10", status: str = "1"):
        for i, name in enumerate(("nightly-h200-42", "nightly-h200-42-repeat2", "nightly-h200-42-repeat3")):
            data = synthetic_run(i, env=env_h200)
            for k in range(failed if i == 1 else 0):
                data = plant.set_outcome(data, f"synthetic/case-{k}", "error", "illegal memory access")
            write(tmp_path / "runs", f"{name}.json", data)
            (tmp_path / "runs" / f"{name}.status").write_text(f"{status if i == 2 else 0}\n")
        (tmp_path / "tools.log").write_text("")
        (bindir / "gh").unlink(missing_ok=True)
        if gh is not None:
            (bindir / "gh").write_text(f'#!/bin/sh\necho "gh $*" >> "{tmp_path}/tools.log"\n{gh}\n')
            (bindir / "gh").chmod(0o755)
        summary = tmp_path / "summary.md"
        summary.write_text("")
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "RUN": "runs/nightly-h200-42.json", "GPU": "h200", "RUN_ID": "42",
               "REPEATS": "3", "BASE_BRANCH": "main", "MAX_FAILED": max_failed, "GITHUB_STEP_SUMMARY": str(summary),
               "GITHUB_SERVER_URL": "https://github.example", "GITHUB_REPOSITORY": "org/effbench"}
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
        return proc, (tmp_path / "tools.log").read_text(), summary.read_text()

    return run


def test_promote_step_promotes_every_run_and_opens_the_pull_request(tmp_path, promote_step):
    proc, tools, _ = promote_step()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = tmp_path / "results" / "baselines" / "nvidia-h200"
    assert sorted(p.name for p in folder.iterdir()) == [
        "nightly-h200-42-repeat2.json", "nightly-h200-42-repeat3.json", "nightly-h200-42.json"]
    assert "git switch -c baseline/h200-42" in tools and "git add results/baselines" in tools
    assert "git push origin baseline/h200-42" in tools
    assert "gh pr create --base main --head baseline/h200-42" in tools and "--body-file pr-body.md" in tools
    body = (tmp_path / "pr-body.md").read_text()
    assert body.startswith("## effbench compare: old baseline") and "created baseline" in body


def test_promote_step_tolerates_a_few_failed_cases_and_lists_them(tmp_path, promote_step):
    proc, tools, _ = promote_step(failed=2, max_failed="10")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # was: any one failed case blocked the promotion
    body = (tmp_path / "pr-body.md").read_text()
    assert "failed case kept in the baseline: synthetic/case-0 (runs/nightly-h200-42-repeat2.json)" in body
    assert "failed case kept in the baseline: synthetic/case-1" in body
    proc, tools, _ = promote_step(failed=2, max_failed="1")
    assert proc.returncode != 0 and "2 case(s) failed" in proc.stderr  # more than tolerated: refused
    assert "git switch" not in tools


def test_promote_step_refuses_an_unfinished_repeat(tmp_path, promote_step):
    proc, tools, _ = promote_step(status="130")
    assert proc.returncode == 1 and "nightly-h200-42-repeat3.json did not finish (exit status 130)" in proc.stdout
    assert tools == ""


@pytest.mark.parametrize("gh", [None, "echo 'GitHub Actions is not permitted to create pull requests' >&2; exit 1"])
def test_promote_step_without_a_usable_gh_pushes_the_branch_and_says_how_to_open_it(tmp_path, promote_step, gh):
    proc, tools, summary = promote_step(gh=gh)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "git push origin baseline/h200-42" in tools
    url = "https://github.example/org/effbench/compare/main...baseline/h200-42?expand=1"
    assert "::warning::pushed baseline/h200-42 but could not open the pull request" in proc.stdout and url in proc.stdout
    assert url in summary and "created baseline" in summary
