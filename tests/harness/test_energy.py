"""Energy meter: joules from NVML's millijoule counter, None with a reason wherever it cannot be read."""

import pytest

from bench_lib.harness import nvml as nvmllib
from bench_lib.harness.energy import EnergyMeter


class NVMLError(Exception):
    pass


class FakeNVML:
    """Just enough of pynvml: a counter that advances by a fixed step per read, per device index."""

    def __init__(self, readings_mj=(1_000_000, 1_250_500), supported=True, init_ok=True):
        self.readings = list(readings_mj)
        self.supported = supported
        self.init_ok = init_ok
        self.inits = self.shutdowns = 0
        self.handles = []

    def nvmlInit(self):
        if not self.init_ok:
            raise NVMLError("NVML Shared Library Not Found")
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        self.handles.append(("bus", bus))
        return ("handle", bus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self.handles.append(("index", index))
        return ("handle", index)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.handles.append(("uuid", uuid))
        return ("handle", uuid)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.supported:
            raise NVMLError("Not Supported")
        return self.readings.pop(0)


@pytest.fixture(autouse=True)
def one_gpu(monkeypatch):
    """torch's cuda:0 as the handle lookup sees it (which GPU that is: tests/harness/test_nvml.py)."""
    monkeypatch.setattr(nvmllib, "cuda_identity", lambda device: ("00000000:18:00.0", None))


def test_joules_from_millijoule_counter():
    nvml = FakeNVML(readings_mj=(1_000_000, 1_250_500))
    with EnergyMeter("cuda:0", nvml=nvml) as meter:
        pass
    assert meter.joules == pytest.approx(250.5)
    assert meter.reason is None
    assert nvml.inits == nvml.shutdowns == 1
    m = meter.metrics(calls=10)
    assert m["energy_j"] == pytest.approx(250.5)
    assert m["energy_per_call_j"] == pytest.approx(25.05)
    assert m["avg_power_w"] > 0


def test_cpu_has_no_energy():
    with EnergyMeter("cpu", nvml=FakeNVML()) as meter:
        pass
    assert meter.joules is None
    assert "GPUs only" in meter.reason
    assert meter.metrics(calls=5) == {"energy_reason": meter.reason}


def test_counter_not_supported_is_none_with_reason():
    nvml = FakeNVML(supported=False)
    with EnergyMeter("cuda:0", nvml=nvml) as meter:
        pass
    assert meter.joules is None
    assert "Not Supported" in meter.reason
    assert nvml.shutdowns == 1  # NVML is released even when the counter is missing


def test_no_nvml_library_is_none_with_reason():
    with EnergyMeter("cuda:0", nvml=FakeNVML(init_ok=False)) as meter:
        pass
    assert meter.joules is None and "NVML unavailable" in meter.reason


def test_counter_reset_is_not_negative_energy():
    with EnergyMeter("cuda:0", nvml=FakeNVML(readings_mj=(5_000, 100))) as meter:
        pass
    assert meter.joules is None and "backwards" in meter.reason


def test_energy_is_read_even_when_the_work_fails():
    nvml = FakeNVML()
    with pytest.raises(RuntimeError), EnergyMeter("cuda:0", nvml=nvml) as meter:
        raise RuntimeError("CUDA out of memory")
    assert meter.joules == pytest.approx(250.5) and nvml.shutdowns == 1
