"""Timing must include all device work: tested with a fake asynchronous device, since CI has no GPU."""

import time

import pytest
import torch

from bench_lib.harness import device as devices
from bench_lib.harness import timing

CUDA = torch.device("cuda")


class FakeAsyncDevice:
    """Kernels return at once and finish only when synchronize() is called, like CUDA launches."""

    def __init__(self, kernel_s: float):
        self.kernel_s, self.pending, self.syncs = kernel_s, 0.0, 0

    def launch(self):
        self.pending += self.kernel_s

    def synchronize(self, device):
        self.syncs += 1
        time.sleep(self.pending)
        self.pending = 0.0


@pytest.fixture
def fake(monkeypatch):
    dev = FakeAsyncDevice(kernel_s=0.05)
    monkeypatch.setattr(devices, "synchronize", dev.synchronize)
    return dev


def test_wall_includes_queued_device_work(fake):
    assert timing.wall(fake.launch, CUDA) >= 0.05


def test_wall_does_not_charge_earlier_queued_work(fake):
    fake.launch()  # work queued before the measured call started
    fake.launch()
    t = timing.wall(lambda: None, CUDA)
    assert t < 0.02, "time of work queued before the call leaked into its sample"


def test_synced_unit_used_by_pytest_benchmark_waits_for_the_device(fake):
    unit = timing.synced(fake.launch, CUDA)
    start = time.perf_counter()
    unit()
    assert time.perf_counter() - start >= 0.05
    assert fake.pending == 0


def test_unsynchronized_timing_would_be_wrong(fake):
    # the same measurement without the sync reads only launch time: what the harness must never report
    start = time.perf_counter()
    fake.launch()
    assert time.perf_counter() - start < 0.01


def test_sample_keeps_every_round(fake):
    samples = timing.sample(fake.launch, CUDA, rounds=3)
    assert len(samples) == 3 and all(s >= 0.05 for s in samples)


def test_plan_rounds_respects_profile_bounds():
    assert timing.plan_rounds(0.1, 5, 50, 0.3) == 5  # slow case: still the minimum
    assert timing.plan_rounds(0.001, 5, 50, 0.3) == 50  # fast case: capped
    assert timing.plan_rounds(0.01, 5, 50, 0.3) == 30
    assert timing.plan_rounds(None, 5, 50, 0.3) == 5


def test_summarize_median_and_iqr():
    s = timing.summarize([1.0, 2.0, 3.0, 4.0, 100.0], "step_s")
    assert s["time_s"] == 3.0 and s["step_s"] == 3.0
    assert s["time_s_iqr"] == pytest.approx(2.0)  # inclusive quartiles 2 and 4
    assert s["rounds"] == 5
    with pytest.raises(ValueError):
        timing.summarize([])
