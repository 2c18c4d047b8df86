"""Energy: NVML's millijoule counter read in its own window, long enough for the counter's updates; null with a
reason wherever it cannot be read or the reading is below the counter's resolution, never 0 J."""

import time

import pytest

from bench_lib.harness import nvml as nvmllib
from bench_lib.harness.energy import EnergyMeter, measure_window


class NVMLError(Exception):
    pass


class FakeNVML:
    """Just enough of pynvml: a total-energy counter that, like the real one, advances in steps. It draws
    ``power_w`` and publishes the energy every ``period_s`` of real time (the first update ``first_s`` after
    it was made, the next ones every ``period_s`` after that)."""

    def __init__(self, power_w=200.0, period_s=0.05, first_s=None, supported=True, init_ok=True, start_mj=1_000_000):
        self.power_w, self.period_s, self.supported, self.init_ok = power_w, period_s, supported, init_ok
        self.first_s = period_s if first_s is None else first_s
        self.start_mj, self.t0 = start_mj, time.perf_counter()
        self.inits = self.shutdowns = self.reads = 0
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

    def published_s(self, now):
        """Seconds of energy the counter shows at ``now``: up to its last update."""
        since = now - self.t0
        if since < self.first_s:
            return 0.0
        return self.first_s + (since - self.first_s) // self.period_s * self.period_s

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.supported:
            raise NVMLError("Not Supported")
        self.reads += 1
        return self.start_mj + int(round(self.published_s(time.perf_counter()) * self.power_w * 1000))


@pytest.fixture(autouse=True)
def one_gpu(monkeypatch):
    """torch's cuda:N as the handle lookup sees it (which GPU that is: tests/harness/test_nvml.py)."""
    monkeypatch.setattr(nvmllib, "cuda_identity", lambda device: ("00000000:18:00.0", None))


def work():
    time.sleep(0.001)  # a 1 ms call


# ---------------------------------------------------------------- a window long enough for the counter
def test_window_of_a_second_measures_power_within_the_counters_step():
    nvml = FakeNVML(power_w=200.0, period_s=0.05)
    m = measure_window(work, "cuda:0", min_window_s=1.0, nvml=nvml)
    assert m["energy_window_s"] >= 1.0 and m["energy_window_calls"] > 10
    # one update (50 ms) of error at most at each end of the window, 10 J of 200
    assert m["energy_j"] == pytest.approx(200.0 * m["energy_window_s"], abs=0.05 * 200.0 + 1e-9)
    assert m["avg_power_w"] == pytest.approx(200.0, rel=0.06)
    assert m["energy_per_call_j"] == pytest.approx(m["energy_j"] / m["energy_window_calls"])
    assert m["energy_counter_updates"] >= 15
    assert m["energy_counter_period_s"] == pytest.approx(0.05, abs=0.02)  # measured, as on a real GPU
    assert "energy_reason" not in m and nvml.inits == nvml.shutdowns == 1


def test_the_old_short_window_read_zero_or_one_step():
    # what the old harness did: the counter around a few ms of timed rounds. It reads 0 J or one 10 J step,
    # i.e. 0 W or kilowatts for a 200 W GPU
    nvml = FakeNVML(power_w=200.0, period_s=0.05)
    with EnergyMeter("cuda:0", nvml=nvml) as meter:
        for _ in range(5):
            work()
    assert meter.joules in (0.0, 10.0)
    m = meter.metrics(calls=5)
    assert m["energy_j"] is None and m["avg_power_w"] is None and m["energy_reason"]  # no measurement now


def test_window_grows_until_the_counter_updated_twice():
    nvml = FakeNVML(power_w=100.0, period_s=0.1)
    m = measure_window(work, "cuda:0", min_window_s=0.01, nvml=nvml)  # the minimum is far below one update
    assert m["energy_counter_updates"] >= 2 and m["energy_window_s"] >= 0.1
    assert m["energy_j"] > 0 and m["avg_power_w"] > 0


def test_a_counter_that_does_not_advance_is_null_with_reason_never_0_joules():
    nvml = FakeNVML(period_s=60.0)  # no update in the window
    m = measure_window(work, "cuda:0", min_window_s=0.05, nvml=nvml)
    assert m["energy_j"] is None and m["avg_power_w"] is None and m["energy_per_call_j"] is None
    assert "did not advance" in m["energy_reason"] and "resolution" in m["energy_reason"]
    assert m["energy_counter_updates"] == 0 and m["energy_window_calls"] > 0
    assert m["energy_window_s"] >= 1.05  # it waited (min + 1 s) for an update before giving up


def test_a_single_update_is_null_with_reason():
    nvml = FakeNVML(period_s=60.0, first_s=0.03)  # exactly one update, 30 ms after the meter opened
    m = measure_window(work, "cuda:0", min_window_s=0.05, nvml=nvml)
    assert m["energy_counter_updates"] == 1
    assert m["energy_j"] is None and "only once" in m["energy_reason"]


def test_profile_without_energy_window_measures_nothing():
    calls = []
    m = measure_window(lambda: calls.append(1), "cuda:0", min_window_s=0.0, nvml=FakeNVML())
    assert m == {"energy_j": None, "energy_reason": "no energy window in this profile (energy_window_s = 0)"}
    assert calls == []


# ---------------------------------------------------------------- where there is no counter
def test_cpu_has_no_energy():
    calls = []
    m = measure_window(lambda: calls.append(1), "cpu", min_window_s=1.0, nvml=FakeNVML())
    assert m["energy_j"] is None and "GPUs only" in m["energy_reason"] and calls == []


def test_counter_not_supported_is_none_with_reason():
    nvml = FakeNVML(supported=False)
    m = measure_window(work, "cuda:0", min_window_s=1.0, nvml=nvml)
    assert m["energy_j"] is None and "Not Supported" in m["energy_reason"]
    assert nvml.shutdowns == 1  # NVML is released even when the counter is missing


def test_no_nvml_library_is_none_with_reason():
    m = measure_window(work, "cuda:0", min_window_s=1.0, nvml=FakeNVML(init_ok=False))
    assert m["energy_j"] is None and "NVML unavailable" in m["energy_reason"]


def test_counter_reset_is_not_negative_energy():
    nvml = FakeNVML(period_s=0.01)
    with EnergyMeter("cuda:0", nvml=nvml) as meter:
        nvml.start_mj = 0  # the driver reloaded mid-window
        time.sleep(0.03)
    assert meter.joules is None and "backwards" in meter.reason
    assert meter.metrics(calls=3)["energy_j"] is None


def test_energy_is_read_and_nvml_released_even_when_the_work_fails():
    nvml = FakeNVML(period_s=0.01)
    with pytest.raises(RuntimeError), EnergyMeter("cuda:0", nvml=nvml) as meter:
        time.sleep(0.05)
        raise RuntimeError("CUDA out of memory")
    assert meter.joules > 0 and nvml.shutdowns == 1
    assert not meter._sampler.is_alive()


# ---------------------------------------------------------------- which GPU (by PCI bus id: nvml.py)
def test_the_meter_looks_its_handle_up_in_one_place(monkeypatch):
    looked_up = []
    monkeypatch.setattr(nvmllib, "device_handle", lambda nvml, device: looked_up.append(device) or ("handle", 9))
    measure_window(work, "cuda:1", min_window_s=0.02, nvml=FakeNVML(period_s=0.01))
    assert [str(d) for d in looked_up] == ["cuda:1"]
