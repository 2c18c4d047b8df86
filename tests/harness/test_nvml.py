"""One NVML handle per torch device, found by PCI bus id: env, memory and energy describe the GPU that ran.

The fake machine has four GPUs; torch sees only some of them, in another order (CUDA_VISIBLE_DEVICES=3 and
CUDA_VISIBLE_DEVICES=2,0). Index 0 means a different GPU to NVML and to torch, so every reading is checked
against the GPU torch really runs on.
"""

import sys

import pytest
import torch
from fake_nvml import FakeNVML, visible

from bench_lib.harness import energy, env, memory, nvml


@pytest.fixture
def machine(monkeypatch):
    fake = FakeNVML(n=4)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_identity_is_nvml_bus_id_format_and_prefixed_uuid(monkeypatch, machine):
    visible(monkeypatch, machine, [3])
    assert nvml.cuda_identity(torch.device("cuda", 0)) == ("00000000:4B:00.0", machine.gpus[3]["uuid"])


@pytest.mark.parametrize("physical, index, want", [([3], 0, 3), ([2, 0], 0, 2), ([2, 0], 1, 0)])
def test_handle_is_the_gpu_torch_runs_on(monkeypatch, machine, physical, index, want):
    visible(monkeypatch, machine, physical)
    assert nvml.device_handle(machine, torch.device("cuda", index)) is machine.gpus[want]
    assert nvml.device_handle(machine, f"cuda:{index}") is machine.gpus[want]


def test_uuid_when_torch_reports_no_bus_id(monkeypatch, machine):
    visible(monkeypatch, machine, [3], with_bus=False)
    assert nvml.device_handle(machine, torch.device("cuda", 0)) is machine.gpus[3]


def test_unknown_gpu_is_an_error_not_another_gpu(monkeypatch, machine):
    visible(monkeypatch, machine, [3])
    del machine.gpus[3]  # torch sees a GPU NVML does not list (another container's, say)
    with pytest.raises(LookupError, match="NVML has no GPU matching"):
        nvml.device_handle(machine, torch.device("cuda", 0))


def test_env_records_the_run_gpus_metadata(monkeypatch, machine):
    """CUDA_VISIBLE_DEVICES=3: clocks, power limit and temperature are GPU 3's, not GPU 0's."""
    visible(monkeypatch, machine, [3])
    gpu = env.gpu_info()  # the run's device, cuda (current device 0)
    assert gpu["temperature_c"] == 43 and gpu["power_limit_w"] == 630.0 and gpu["sm_clock_mhz"] == 1003
    assert gpu["visible_count"] == gpu["count"] == 1 and gpu["physical_count"] == 4
    assert env.gpu_state() == {"temperature_c": 43, "sm_clock_mhz": 1003}


def test_memory_sampler_reads_the_run_gpu(monkeypatch, machine):
    visible(monkeypatch, machine, [2, 0])
    assert memory.nvml_used_reader(torch.device("cuda", 0))() == 3 * 2**30  # GPU 2 holds 3 GiB
    assert memory.nvml_used_reader(torch.device("cuda", 1))() == 1 * 2**30


def test_energy_meter_reads_the_run_gpus_counter(monkeypatch, machine):
    visible(monkeypatch, machine, [3])
    with energy.EnergyMeter("cuda:0", nvml=machine) as meter:
        pass
    assert meter.reason is None and meter.joules == pytest.approx(20.0)  # GPU 3's counter: +20,000 mJ


def test_slug_does_not_change_with_pinning(monkeypatch):
    """One box of eight H200s, run with all eight visible and pinned to one: one slug, one baseline folder."""
    cpu = env.cpu_info()
    slugs = set()
    for physical in (list(range(8)), [5]):
        fake = FakeNVML(n=8)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        visible(monkeypatch, fake, physical)
        slugs.add(env.machine_slug(cpu, env.gpu_info()))
    assert slugs == {"nvidia-h200-x8"}


def test_slug_without_a_physical_count_uses_the_visible_one():
    assert env.machine_slug({}, {"name": "NVIDIA H100 80GB HBM3", "count": 2, "physical_count": None}) == \
        "nvidia-h100-80gb-hbm3-x2"


def test_physical_count_from_the_driver_without_nvml(monkeypatch, tmp_path):
    for bus in ("0000:18:00.0", "0000:29:00.0"):
        (tmp_path / bus).mkdir()
    monkeypatch.setattr(nvml, "PROC_GPUS", tmp_path)
    assert nvml.physical_count(None) == 2
    monkeypatch.setattr(nvml, "PROC_GPUS", tmp_path / "absent")
    assert nvml.physical_count(None) is None
