import json
import socket
import sys
import types
from pathlib import Path

import torch

from bench_lib.harness import env


def test_record_has_the_design_fields_and_no_hostname():
    rec = env.record(torch.device("cpu"), "quick")
    for key in ("schema_version", "device", "machine_slug", "python", "cpu", "gpu", "packages", "torch", "git", "profile"):
        assert key in rec
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "flash-attn", "pytest-benchmark"):
        assert pkg in rec["packages"]
    assert "tf32_matmul" in rec["torch"] and rec["cpu"]["logical_cores"] >= 1
    assert socket.gethostname() not in json.dumps(rec)


def test_slug_names_hardware():
    assert env.machine_slug({"model": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "usable_cores": 2}, None) == \
        "cpu-intel-xeon-platinum-8481c-2-70ghz-2c"
    assert env.machine_slug({}, {"name": "NVIDIA H200", "count": 1}) == "nvidia-h200-x1"


def test_nvml_absent_gives_nulls_not_a_crash(monkeypatch):
    broken = types.SimpleNamespace(nvmlInit=lambda: (_ for _ in ()).throw(RuntimeError("no driver")))
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    monkeypatch.setattr(env.nvml, "PROC_GPUS", Path("/nonexistent"))
    fields = env._nvml(torch.device("cuda", 0))
    assert set(fields) >= {"driver", "power_limit_w", "temperature_c", "sm_clock_max_mhz", "physical_count"}
    assert all(v is None for v in fields.values())


def test_nvml_fields_read_when_present(monkeypatch):
    monkeypatch.setattr(env.nvml, "cuda_identity", lambda device: ("00000000:18:00.0", None))
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByPciBusId=lambda bus: "h" if bus == "00000000:18:00.0" else None, NVML_CLOCK_SM=0, NVML_CLOCK_MEM=1,
        NVML_TEMPERATURE_GPU=0, nvmlSystemGetDriverVersion=lambda: b"550.54",
        nvmlDeviceGetClockInfo=lambda h, c: 1980, nvmlDeviceGetMaxClockInfo=lambda h, c: 1980 if c == 0 else 2619,
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 700000, nvmlDeviceGetTemperature=lambda h, t: 41,
        nvmlDeviceGetTotalEnergyConsumption=lambda h: 123)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    f = env._nvml(torch.device("cuda", 0))
    assert f["driver"] == "550.54" and f["power_limit_w"] == 700.0 and f["temperature_c"] == 41
    assert f["physical_count"] == 1
    assert f["mem_clock_max_mhz"] == 2619
