"""Timing covers all device work and leaves per-call overhead out: tested with a fake clock and a fake
asynchronous device (a CUDA stream with events), since CI has no GPU."""

import statistics

import pytest
import torch

from bench_lib.harness import device as devices
from bench_lib.harness import profiles, timing

CUDA = torch.device("cuda")
CPU = torch.device("cpu")
US = 1e-6


class FakeStream:
    """A CUDA stream on a fake clock. A launch costs the host ``launch_s`` (Python dispatch + launch); its
    kernel runs ``kernel_s`` of device time once the device reaches it. An event is stamped with the device
    time at which the stream reaches it. ``synchronize`` waits for the device, then costs ``sync_s`` more
    (the round trip)."""

    def __init__(self, kernel_s, launch_s, sync_s=0.0):
        self.kernel_s, self.launch_s, self.sync_s = kernel_s, launch_s, sync_s
        self.host = 0.0  # host clock
        self.free_at = 0.0  # device time at which the stream has finished everything queued
        self.kernels = []  # (start, end) device times of every kernel run

    def clock(self):
        return self.host

    def enqueue(self, seconds):
        self.host += self.launch_s
        start = max(self.free_at, self.host)
        self.free_at = start + seconds
        self.kernels.append((start, self.free_at))

    def launch(self):
        """The callable under test: one kernel of ``kernel_s``."""
        self.enqueue(self.kernel_s)

    def synchronize(self, device):
        self.host = max(self.host, self.free_at) + self.sync_s

    def event(self):
        return FakeEvent(self)


class FakeEvent:
    def __init__(self, stream):
        self.stream, self.at = stream, None

    def record(self):
        self.at = max(self.stream.free_at, self.stream.host)
        self.stream.free_at = self.at

    def elapsed_time(self, end):
        assert end.at is not None and end.at <= end.stream.host, "elapsed_time read before the end event completed"
        return (end.at - self.at) * 1e3  # milliseconds, as torch.cuda.Event


class FakeFlush:
    """The L2 flush buffer: zeroing it is a kernel of ``seconds`` on the stream."""

    def __init__(self, stream, seconds):
        self.stream, self.seconds, self.zeroed = stream, seconds, 0

    def zero_(self):
        self.zeroed += 1
        self.stream.enqueue(self.seconds)


@pytest.fixture
def gpu(monkeypatch):
    """A fake CUDA device: 50 us kernels, 20 us to launch one, 10 us per synchronize round trip."""
    stream = FakeStream(kernel_s=50 * US, launch_s=20 * US, sync_s=10 * US)
    monkeypatch.setattr(devices, "synchronize", stream.synchronize)
    monkeypatch.setattr(timing, "new_event", stream.event)
    return stream


class FakeHost:
    """A CPU on a fake clock: each call of ``call`` takes the next duration; reading the clock costs ``read_s``."""

    def __init__(self, durations, read_s=0.0):
        self.durations, self.read_s, self.t, self.calls = list(durations), read_s, 0.0, 0

    def clock(self):
        now = self.t
        self.t += self.read_s
        return now

    def call(self):
        self.t += self.durations[self.calls % len(self.durations)]
        self.calls += 1


def profile(**overrides):
    return profiles.Profile(**{"name": "t", "warmup_rounds": 3, "min_rounds": 5, "max_rounds": 50, "target_time_s": 0.3,
                               "case_timeout_s": 60, "sample_min_s": 1e-3, **overrides})


# ---------------------------------------------------------------- the per-call overhead is amortized
def test_old_per_call_timing_charges_launch_and_sync_to_every_call(gpu):
    # one call between two synchronizes on the host clock: what every sample was before
    assert timing.wall(gpu.launch, CUDA, gpu.clock) == pytest.approx(50 * US + 20 * US + 10 * US)


@pytest.mark.parametrize("calls", [1, 10, 100])
def test_events_amortize_a_constant_per_call_overhead_by_the_block_size(gpu, calls):
    samples = timing.measure(gpu.launch, CUDA, rounds=3, calls_per_sample=calls, clock=gpu.clock)
    assert samples.timer == "cuda_events" and samples.calls_per_sample == calls
    for per_call in samples.per_call_s:
        # only the first launch leaves the device idle inside the events; the sync is outside them
        assert per_call - 50 * US == pytest.approx(20 * US / calls)


def test_planned_block_keeps_the_overhead_under_a_percent_of_a_50us_kernel(gpu):
    plan = timing.plan(gpu.launch, CUDA, profile(), gpu.clock)
    assert plan.calls_per_sample == 20  # 1 ms / 50 us, from the refined (event-timed) estimate
    assert plan.warmup_calls == 3 + 13  # three warmup calls; their 80 us estimate sized the refining block
    samples = timing.measure(gpu.launch, CUDA, plan.rounds, plan.calls_per_sample, clock=gpu.clock)
    assert statistics.median(samples.per_call_s) == pytest.approx(51 * US)  # 50 us + 20 us / 20
    assert plan.rounds == 50  # 0.3 s / 1 ms capped at max_rounds


def test_host_clock_blocks_amortize_the_clock_overhead_on_cpu():
    host = FakeHost([10 * US], read_s=5 * US)
    for calls in (1, 50):
        samples = timing.measure(host.call, CPU, rounds=4, calls_per_sample=calls, clock=host.clock)
        assert samples.timer == "perf_counter" and samples.l2_flush_bytes == 0
        assert all(s - 10 * US == pytest.approx(5 * US / calls) for s in samples.per_call_s)


def test_a_slow_call_is_not_blocked_and_its_median_is_the_per_call_median():
    durations = [5e-3, 7e-3, 4e-3, 9e-3, 6e-3]  # every call slower than sample_min_s
    host = FakeHost(durations)
    plan = timing.plan(host.call, CPU, profile(warmup_rounds=2), host.clock)
    assert plan.calls_per_sample == 1 and plan.warmup_calls == 2
    host.calls = 0
    samples = timing.measure(host.call, CPU, rounds=5, calls_per_sample=plan.calls_per_sample, clock=host.clock)
    assert samples.per_call_s == pytest.approx(durations)
    assert statistics.median(samples.per_call_s) == pytest.approx(statistics.median(durations))


def test_blocked_median_equals_the_per_call_median_when_calls_take_the_same_time():
    host = FakeHost([3e-3])
    one = timing.measure(host.call, CPU, rounds=5, calls_per_sample=1, clock=host.clock)
    blocked = timing.measure(host.call, CPU, rounds=5, calls_per_sample=8, clock=host.clock)
    assert statistics.median(blocked.per_call_s) == pytest.approx(statistics.median(one.per_call_s))
    assert blocked.block_s == pytest.approx((8 * 3e-3,) * 5)  # the raw blocks are kept as read


def test_no_warmup_means_one_call_per_sample_and_min_rounds(gpu):
    plan = timing.plan(gpu.launch, CUDA, profile(warmup_rounds=0), gpu.clock)
    assert (plan.calls_per_sample, plan.rounds, plan.warmup_calls, plan.estimate_s) == (1, 5, 0, None)


def test_calls_per_sample_bounds():
    assert timing.calls_per_sample(None, 1e-3) == 1
    assert timing.calls_per_sample(2e-3, 1e-3) == 1
    assert timing.calls_per_sample(1e-3, 1e-3) == 1
    assert timing.calls_per_sample(3e-4, 1e-3) == 4
    assert timing.calls_per_sample(1e-12, 1e-3) == timing.MAX_CALLS_PER_SAMPLE
    assert timing.calls_per_sample(1e-6, 0.0) == 1  # sample_min_s 0: never block


# ---------------------------------------------------------------- all device work, and only this call's
def test_events_do_not_charge_earlier_queued_work(gpu):
    gpu.enqueue(5e-3)  # a long kernel queued before the measured block
    samples = timing.measure(gpu.launch, CUDA, rounds=1, calls_per_sample=4, clock=gpu.clock)
    assert samples.per_call_s[0] == pytest.approx(50 * US)  # the launches hid behind the earlier kernel


def test_wall_includes_queued_device_work_and_not_earlier_work(gpu):
    gpu.enqueue(5e-3)
    assert timing.wall(lambda: None, CUDA, gpu.clock) == pytest.approx(10 * US)  # one sync, nothing of the 5 ms
    assert timing.wall(lambda: gpu.enqueue(2e-3), CUDA, gpu.clock) >= 2e-3


def test_elapsed_time_is_read_after_the_device_finished(gpu):
    timing.measure(gpu.launch, CUDA, rounds=2, calls_per_sample=3, clock=gpu.clock)  # FakeEvent asserts it
    assert gpu.host >= gpu.free_at


def test_l2_flush_runs_before_every_call_outside_the_events(gpu, monkeypatch):
    made = []

    def buffer(nbytes, device):
        made.append(nbytes)
        return FakeFlush(gpu, seconds=200 * US)

    monkeypatch.setattr(timing, "new_flush_buffer", buffer)
    samples = timing.measure(gpu.launch, CUDA, rounds=3, calls_per_sample=4, l2_flush_bytes=256 * 2**20, clock=gpu.clock)
    assert made == [256 * 2**20] and samples.l2_flush_bytes == 256 * 2**20
    assert sum(k[1] - k[0] == pytest.approx(200 * US) for k in gpu.kernels) == 12  # one flush per call
    assert samples.per_call_s == pytest.approx([50 * US] * 3)  # the flush's 200 us are not in the number
    assert samples.metrics() == {"calls_per_sample": 4, "timer": "cuda_events", "l2_flush_bytes": 256 * 2**20}


def test_cpu_ignores_the_l2_flush_and_records_it_off():
    host = FakeHost([1e-3])
    assert timing.measure(host.call, CPU, 2, 1, l2_flush_bytes=2**20, clock=host.clock).l2_flush_bytes == 0


# ---------------------------------------------------------------- handing samples to pytest-benchmark
def test_replay_clock_gives_pytest_benchmark_the_measured_blocks_exactly():
    samples = timing.Samples((3e-3, 2.5e-3), calls_per_sample=5, timer="cuda_events")
    clock = timing.replay_clock(samples)
    rounds = [-(clock() - clock()) for _ in samples.block_s]  # pytest-benchmark: end - start per round
    assert rounds == list(samples.block_s) and clock.__name__ == "cuda_events"
    assert [b / 5 for b in rounds] == samples.per_call_s  # the same division, bit for bit


# ---------------------------------------------------------------- rounds and summary
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


def test_measure_rejects_nonsense():
    with pytest.raises(ValueError):
        timing.measure(lambda: None, CPU, rounds=0)
