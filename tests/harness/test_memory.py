import sys
import types

import pytest
import torch

from bench_lib.harness import memory

CPU = torch.device("cpu")
MiB = 2**20


def test_cpu_probe_sees_a_known_allocation():
    size = 256 * MiB
    probe = memory.measure(lambda: torch.ones(size // 4), CPU)  # ones() touches every page
    assert probe.result["primary"] == "cpu_peak_rss_bytes"
    # RSS is process-wide at page granularity: pages other code frees during the call (a few, seen: 5) can
    # offset the allocation, so allow 1 MiB (0.4%) below; anything that misses the tensor fails by far
    assert probe.extra_bytes >= size - MiB
    assert probe.extra_bytes < size * 1.25 + 32 * MiB, "probe reported grossly more than was allocated"


def test_cpu_probe_baseline_excludes_memory_held_before():
    held = torch.ones(128 * MiB // 4)
    probe = memory.measure(lambda: torch.ones(16 * MiB // 4), CPU)
    assert probe.extra_bytes < 64 * MiB
    assert probe.result["cpu_rss_before_bytes"] >= 128 * MiB
    del held


def test_cpu_fallback_samples_rss_when_clear_refs_is_refused(monkeypatch):
    monkeypatch.setattr(memory, "_reset_hwm", lambda: False)

    def hold():
        x = torch.ones(128 * MiB // 4)
        import time

        time.sleep(0.05)  # the sampler polls every 2 ms
        return x.sum()

    probe = memory.measure(hold, CPU)
    assert probe.result["cpu_peak_method"] == "rss_sampling"
    assert probe.extra_bytes >= 120 * MiB


def test_tensor_bytes():
    assert memory.tensor_bytes(torch.zeros(10, 10), torch.zeros(4, dtype=torch.bfloat16)) == 408


def test_cuda_probe_reads_allocator_and_nvml(monkeypatch):
    """The CUDA branch, with torch.cuda and pynvml faked: peaks and baselines land in the right views."""
    state = {"alloc": 1000, "peak": 1000, "used": 5000}
    fake_cuda = types.SimpleNamespace(
        synchronize=lambda d=None: None,
        reset_peak_memory_stats=lambda d=None: state.update(peak=state["alloc"]),
        memory_allocated=lambda d=None: state["alloc"],
        memory_reserved=lambda d=None: 2 * state["alloc"],
        max_memory_allocated=lambda d=None: state["peak"],
        max_memory_reserved=lambda d=None: 2 * state["peak"],
        empty_cache=lambda: None,
        current_device=lambda: 0,
        get_device_properties=lambda i: types.SimpleNamespace(pci_domain_id=0, pci_bus_id=1, pci_device_id=0),
    )
    monkeypatch.setattr(memory.torch, "cuda", fake_cuda)
    monkeypatch.setattr(memory.devices.torch, "cuda", fake_cuda)
    fake_nvml = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByPciBusId=lambda bus: "h",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=state["used"]),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml)

    def work():
        state["peak"] = 1000 + 4096
        state["used"] = 5000 + 8192

    probe = memory.measure(work, torch.device("cuda", 0))
    r = probe.result
    assert r["torch_allocated_before_bytes"] == 1000 and r["torch_peak_allocated_bytes"] == 5096
    assert r["torch_peak_reserved_bytes"] == 10192
    assert r["nvml_used_before_bytes"] == 5000 and r["nvml_peak_used_bytes"] == 13192
    assert probe.extra_bytes == 4096


@pytest.mark.parametrize("exc", [MemoryError(), RuntimeError("DefaultCPUAllocator: can't allocate memory")])
def test_is_oom(exc):
    from bench_lib.harness.device import is_oom

    assert is_oom(exc)
    assert not is_oom(ValueError("out of range"))


def _glibc_mallinfo2() -> bool:
    return memory.malloc_live_reader() is not None


@pytest.mark.skipif(not _glibc_mallinfo2(), reason="live-malloc view needs glibc >= 2.33 (mallinfo2)")
def test_live_malloc_view_sees_another_threads_allocation_that_the_profiler_misses():
    import threading
    import time

    def on_a_thread():  # as gloo's and the autograd engine's threads allocate: outside the profiled thread
        def work():
            x = torch.ones(96 * MiB // 4)
            time.sleep(0.05)  # alive for 50 sampling periods
            del x

        t = threading.Thread(target=work)
        t.start()
        t.join()

    probe = memory.measure(on_a_thread, CPU)
    live = probe.result["cpu_peak_malloc_bytes"] - probe.result["cpu_malloc_before_bytes"]
    assert 96 * MiB <= live < 96 * MiB + 16 * MiB
    assert probe.result["torch_cpu_added_peak_bytes"] < 16 * MiB  # the profiler's view does not see that thread


@pytest.mark.skipif(not _glibc_mallinfo2(), reason="live-malloc view needs glibc >= 2.33 (mallinfo2)")
def test_live_malloc_view_counts_only_what_is_live_in_a_fragmented_heap():
    # fragment the heap: many mid-size blocks from the heap (glibc's dynamic mmap threshold is high after
    # the first frees), then free every other one, so free chunks are spread over a large heap
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.mallopt(-3, 32 * MiB)  # M_MMAP_THRESHOLD: these blocks come from the heap
    blocks = [libc.malloc(MiB) for _ in range(128)]
    for b in blocks:
        ctypes.memset(b, 1, MiB)
    for b in blocks[::2]:
        libc.free(ctypes.c_void_p(b))
    live_blocks = blocks[1::2]

    def reuse():  # allocate and touch 64 x 1 MiB: served from the freed chunks (re-faulted after the trim)
        got = [libc.malloc(MiB) for _ in range(64)]
        for b in got:
            ctypes.memset(b, 2, MiB)
        for b in got:
            libc.free(ctypes.c_void_p(b))

    probe = memory.measure(reuse, CPU, allocations=False)
    live = probe.result["cpu_peak_malloc_bytes"] - probe.result["cpu_malloc_before_bytes"]
    assert 60 * MiB <= live <= 72 * MiB  # what was live at the peak: the 64 blocks
    for b in live_blocks:
        libc.free(ctypes.c_void_p(b))
