import json

from bench_lib import cli


def test_env_lists_support_with_reasons(capsys):
    assert cli.main(["env", "--device", "cpu", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["environment"]["device"] == "cpu"
    cal = out["support"]["calibration matmul dtype"]
    assert cal["fp32"] is None and "CUDA" in cal["tf32"]


def test_cuda_on_a_cpu_machine_is_a_clear_error(capsys):
    import pytest
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
