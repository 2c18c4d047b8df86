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
