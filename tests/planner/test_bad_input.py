"""Bad input to ``effbench plan``, ``fit`` and ``env`` (issue 18): a clear message and exit 2, never a
traceback and never a plan built on nonsense (a config with negative sizes was "1.92 B params ... fits T4")."""

import json

import pytest
import torch

from bench_lib import cli
from bench_lib.suites import models
from tests.report.conftest import load_doc

PRESET = {"name": "m", "family": "llama", "hidden": 512, "layers": 8, "heads": 8, "kv_heads": 8,
          "intermediate": 1376, "vocab": 32000}
HF = {"model_type": "llama", "hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8,
      "intermediate_size": 1376, "vocab_size": 32000}


def effbench(capsys, *args):
    rc = cli.main(list(map(str, args)))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("config, message", [
    ({**PRESET, "hidden": -512, "layers": -8}, "hidden = -512 must be a whole number"),  # planned as fitting a T4
    ({**PRESET, "heads": 0}, "heads = 0"),  # ZeroDivisionError
    ({**PRESET, "hidden": "big"}, "hidden = 'big'"),  # TypeError
    ({**PRESET, "vocab": 1e300}, "vocab = 1e+300"),  # OverflowError
    ({**PRESET, "layers": True}, "layers = True"),
    ({**PRESET, "name": {"x": 1}}, "'name' must be text"),
    ({**PRESET, "family": "bert"}, "family must be llama or gpt2"),
    ({k: v for k, v in PRESET.items() if k != "vocab"}, "missing vocab"),
    ({**HF, "hidden_size": -4096}, "hidden = -4096"),
    ({"model_type": "llama"}, "needs 'num_attention_heads'"),  # KeyError
    ([1, 2, 3], "is a JSON object, not list"),  # --model array.json: AttributeError
])
def test_bad_model_config_is_exit_2_with_the_field_named(tmp_path, capsys, config, message):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(config))
    rc, out, err = effbench(capsys, "plan", "--model", path, "--method", "lora")
    assert rc == 2, err
    assert message in err and str(path) in err
    assert "fits" not in out


def test_deeply_nested_or_broken_model_file_is_exit_2(tmp_path, capsys):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "cut.json").write_text('{"hidden": [1,')
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    for name in ("deep.json", "cut.json", "binary.json"):
        rc, _, err = effbench(capsys, "plan", "--model", tmp_path / name, "--method", "lora")
        assert rc == 2 and "--model" in err, (name, err)


def test_a_valid_config_file_still_plans(tmp_path, capsys):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(HF))
    rc, out, _ = effbench(capsys, "plan", "--model", path, "--method", "lora", "--format", "json")
    assert rc == 0
    assert json.loads(out)["model"]["hidden"] == 512 and models.PRESETS  # the presets are untouched


def _calibration_run(tmp_path, value):
    """The frozen smoke fine-tune run with every measured byte count replaced by ``value``."""
    doc = load_doc("smoke-finetune.json")
    for rec in doc["effbench"]["cases"]:
        for section in ("metrics", "memory"):
            for key in list(rec.get(section) or {}):
                if key.endswith("_bytes"):
                    rec[section][key] = value
    path = tmp_path / "nans.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1e9, "lots"])
def test_calibration_on_unusable_measurements_skips_them(tmp_path, capsys, value):
    # --calibrate nans.json: "ValueError: cannot convert float NaN to integer" traceback
    path = _calibration_run(tmp_path, value)
    rc, out, err = effbench(capsys, "plan", "--model", "llama-7m", "--method", "lora", "--calibrate", path,
                            "--format", "json")
    assert rc == 0, err
    plan = json.loads(out)
    assert plan["activation_coefficient"] == 1.0 and plan["measured_vs_predicted"] == []


@pytest.mark.parametrize("text", ["[1]", '{"effbench": 3}', '{"effbench": {"cases": "x"}}', "[" * 100_000])
def test_calibration_file_that_is_no_run_is_exit_2(tmp_path, capsys, text):
    path = tmp_path / "calib.json"
    path.write_text(text)
    rc, _, err = effbench(capsys, "plan", "--model", "llama-7m", "--method", "lora", "--calibrate", path)
    assert rc == 2 and "--calibrate" in err and str(path) in err


@pytest.mark.parametrize("args, message", [
    (["--memory-budget", "0"], "must be positive"),
    (["--memory-budget=-5GiB"], "cannot read"),
    (["--memory-budget", "1e400"], "memory-budget"),
    (["--memory-budget", "1GiB", "--min", "4096", "--max", "64"], "--min 4096 is above --max 64"),
    (["--memory-budget", "1GiB", "--multiple", "0"], "--multiple must be 1 or more"),
    (["--memory-budget", "1GiB", "--min", "100"], "multiple of --multiple 64"),
    (["--memory-budget", "1GiB", "--param", "heads=-2"], "heads is a size, a whole number >= 1"),
    (["--memory-budget", "1GiB", "--param", "heads=two"], "heads is a size"),
    (["--memory-budget", "1GiB", "--param", "causal=7"], "causal is true or false"),
])
def test_fit_bad_arguments_are_exit_2_before_anything_runs(capsys, args, message):
    rc, _, err = effbench(capsys, "fit", "--suite", "attention", "--device", "cpu", *args)
    assert rc == 2, err
    assert message in err or (message == "memory-budget" and "effbench fit:" in err)


@pytest.mark.parametrize("command", [["fit", "--suite", "attention", "--memory-budget", "1GiB"], ["env"]])
def test_device_cuda_without_one_is_exit_2_with_the_reason(capsys, monkeypatch, command):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, _, err = effbench(capsys, *command, "--device", "cuda")
    assert rc == 2
    assert "--device cuda was asked for but torch sees no CUDA device" in err
