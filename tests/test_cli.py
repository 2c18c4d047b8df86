import json
import subprocess
from pathlib import Path

import pytest

from bench_lib import cli


def test_env_lists_support_with_reasons(capsys):
    assert cli.main(["env", "--device", "cpu", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["environment"]["device"] == "cpu"
    cal = out["support"]["calibration matmul dtype"]
    assert cal["fp32"] is None and "CUDA" in cal["tf32"]


def test_cuda_on_a_cpu_machine_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert cli.main(["run", "--device", "cuda", "--output", "/tmp/never.json"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_cli_device_choices_match_the_device_module():
    from bench_lib.harness import device

    assert cli.DEVICE_CHOICES == device.DEVICE_CHOICES


def test_run_renders_its_report_beside_a_named_run_file_or_in_report_dir(tmp_path, monkeypatch):
    from pathlib import Path

    from bench_lib.harness import supervisor

    rendered = []
    monkeypatch.setattr(cli, "render_report", lambda run, out: rendered.append(Path(out)))

    def ran(output):
        monkeypatch.setattr(supervisor, "run_from_args", lambda args: (0, Path(output)))

    monkeypatch.chdir(tmp_path)
    ran(tmp_path / "x" / "y.json")
    assert cli.main(["run", "--output", str(tmp_path / "x" / "y.json")]) == 0
    assert cli.main(["run", "--resume", str(tmp_path / "x" / "y.json")]) == 0
    assert cli.main(["run", "--output", str(tmp_path / "x" / "y.json"), "--report-dir", "elsewhere"]) == 0
    ran("results/cpu-box/20261202T000000Z-quick.json")
    assert cli.main(["run"]) == 0
    assert cli.main(["run", "--no-report"]) == 0
    assert rendered == [tmp_path / "x" / "y-report", tmp_path / "x" / "y-report", Path("elsewhere") / "y",
                        Path("reports") / "20261202T000000Z-quick"]


# ---------------------------------------------------------------- effbench run: checks before the first case
SLOW = str(Path(__file__).parent / "data" / "fake_suites" / "bench_slow.py")


def run_cli(capsys, *args):
    rc = cli.main(["run", "--benchmarks", SLOW, "--no-report", *args])
    return rc, capsys.readouterr().err


def header(**extra):
    return {"type": "header", "schema_version": 1, "profile": "smoke", "device": "cpu", "started_at": "t",
            "machine_info": {}, **extra}


BROKEN_JOURNALS = {
    "empty": (b"", "is empty"),
    "no header": (json.dumps({"type": "case", "id": "c", "suite": "s"}).encode() + b"\n", "no header line"),
    "header without profile": (json.dumps({**header(), "profile": None}).encode() + b"\n", "no valid profile"),
    "corrupt header": (b'{"type": "header", "prof\n' + json.dumps({"type": "case"}).encode() + b"\n", "damaged"),
    "binary": (bytes(range(256)) * 4, "binary bytes"),
    "binary that is utf-8": (b"\0\1\2 header \0\n", "binary bytes"),
}


@pytest.mark.parametrize("name", BROKEN_JOURNALS)
def test_a_broken_journal_on_resume_is_a_clear_error(tmp_path, capsys, name):
    content, message = BROKEN_JOURNALS[name]
    (tmp_path / "run.jsonl").write_bytes(content)
    rc, err = run_cli(capsys, "--resume", str(tmp_path / "run.json"))
    assert rc == 2 and message in err, err
    assert (tmp_path / "run.jsonl").read_bytes() == content  # left as it was


def test_output_and_resume_given_the_journal_mean_its_run_file(tmp_path, capsys):
    """The old code wrote the run JSON over the journal given as --output x.jsonl."""
    from bench_lib.harness import resume

    assert resume.run_file(tmp_path / "x.jsonl", "--output")[0] == tmp_path / "x.json"
    with pytest.raises(resume.RunRefused, match="give the run file"):
        resume.run_file(tmp_path / "x.log", "--output")
    journal_text = json.dumps({**header(), "profile": "nope"}) + "\n"
    (tmp_path / "x.jsonl").write_text(journal_text)
    rc, err = run_cli(capsys, "--resume", str(tmp_path / "x.jsonl"))  # read as x.json's journal
    assert rc == 2 and "using its run file" in err and "no valid profile" in err
    assert (tmp_path / "x.jsonl").read_text() == journal_text


def test_an_existing_run_file_without_a_journal_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run.json"
    run.write_text('{"benchmarks": []}')
    rc, err = run_cli(capsys, "--output", str(run))
    assert rc == 2 and "has no journal beside it" in err
    assert run.read_text() == '{"benchmarks": []}' and not (tmp_path / "run.jsonl").exists()


def test_an_output_folder_or_a_file_as_parent_is_refused_before_any_case(tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    rc, err = run_cli(capsys, "--output", str(tmp_path / "adir"))
    assert rc == 2 and "is a folder" in err
    (tmp_path / "afile").write_text("x")
    rc, err = run_cli(capsys, "--output", str(tmp_path / "afile" / "run.json"))
    assert rc == 2 and "cannot create the folder" in err


def test_a_read_only_output_is_refused_before_any_case(tmp_path, capsys):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        rc, err = run_cli(capsys, "--output", str(mnt / "run.json"))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert rc == 2 and "Read-only file system" in err and "writable disk" in err


def test_resume_on_another_machine_is_refused_unless_allowed(tmp_path, capsys):
    from bench_lib.harness import resume

    (tmp_path / "run.jsonl").write_text(json.dumps(header(machine_info={"effbench": {"machine_slug": "nvidia-h200-x8"}}))
                                        + "\n")
    rc, err = run_cli(capsys, "--resume", str(tmp_path / "run.json"))
    assert rc == 2 and "was started on nvidia-h200-x8" in err and "--allow-different-machine" in err
    head = json.loads((tmp_path / "run.jsonl").read_text())
    warning = resume.check_same_machine(head, tmp_path / "run.jsonl", allow_different=True)
    assert "nvidia-h200-x8" in warning and "continuing" in warning
    from bench_lib.harness import env

    head["machine_info"]["effbench"]["machine_slug"] = env.machine_slug(env.cpu_info(), None)
    assert resume.check_same_machine(head, tmp_path / "run.jsonl", allow_different=False) is None


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0", "1e300", "soon"])
def test_a_case_timeout_that_is_no_limit_is_rejected(value, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", f"--case-timeout={value}", "--output", "/tmp/never.json"])
    assert exc.value.code == 2 and "--case-timeout" in capsys.readouterr().err
    assert cli.build_parser().parse_args(["run", "--case-timeout", "2.5"]).case_timeout == 2.5


def test_the_child_plugin_rejects_the_same_case_timeouts():
    from bench_lib.harness import resume

    for bad in ("nan", "inf", "-1"):
        with pytest.raises(Exception, match="above 0"):
            resume.case_timeout_s(bad)
