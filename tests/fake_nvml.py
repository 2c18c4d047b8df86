"""A fake pynvml machine with several GPUs, and torch's view of them under CUDA_VISIBLE_DEVICES.

NVML numbers the GPUs in PCI bus order and ignores CUDA_VISIBLE_DEVICES; torch numbers only the visible
ones. ``visible(monkeypatch, nvml, [3])`` is ``CUDA_VISIBLE_DEVICES=3``: torch's cuda:0 is NVML's GPU 3.
Each GPU has its own readings, so a test sees which GPU a value came from.
"""

import types

import torch


class NVMLError(Exception):
    pass


class FakeNVML:
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 0, 1, 0

    def __init__(self, n=4, name="NVIDIA H200"):
        # GPU i: bus 0x18 + 0x11 i, temperature 40 + i, power limit (600 + 10 i) W, used memory (i + 1) GiB
        self.gpus = [{"bus": f"00000000:{0x18 + 0x11 * i:02X}:00.0", "uuid": f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd",
                      "index": i, "name": name} for i in range(n)]
        self.inits = self.shutdowns = 0
        self.energy_mj = {i: [1_000_000 * (i + 1), 1_000_000 * (i + 1) + 5_000 * (i + 1)] for i in range(n)}

    # ---- lifecycle
    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    # ---- handles: a handle is the GPU's dict
    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.gpus[i]

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        for g in self.gpus:
            if g["bus"] == bus:
                return g
        raise NVMLError("Not Found")

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for g in self.gpus:
            if g["uuid"] == uuid:
                return g
        raise NVMLError("Not Found")

    # ---- readings, each tied to its GPU
    def nvmlSystemGetDriverVersion(self):
        return b"560.35.03"

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 40 + h["index"]

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return (600 + 10 * h["index"]) * 1000

    def nvmlDeviceGetClockInfo(self, h, clock):
        return 1000 + h["index"]

    def nvmlDeviceGetMaxClockInfo(self, h, clock):
        return 1980 if clock == self.NVML_CLOCK_SM else 3201

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=(h["index"] + 1) * 2**30)

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        readings = self.energy_mj[h["index"]]
        return readings.pop(0) if len(readings) > 1 else readings[0]


def props(gpu, with_bus=True):
    bus = int(gpu["bus"].split(":")[1], 16)
    fields = {"name": gpu["name"], "total_memory": 141 * 2**30, "major": 9, "minor": 0,
              "multi_processor_count": 132, "uuid": gpu["uuid"][4:]}  # torch prints the UUID without GPU-
    if with_bus:
        fields.update(pci_domain_id=0, pci_bus_id=bus, pci_device_id=0)
    return types.SimpleNamespace(**fields)


def visible(monkeypatch, nvml: FakeNVML, physical: list[int], with_bus=True):
    """Fake torch.cuda seeing NVML's GPUs ``physical`` (in that order) as cuda:0, cuda:1, ..."""
    seen = [nvml.gpus[i] for i in physical]
    cuda = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: len(seen), current_device=lambda: 0,
        get_device_properties=lambda i: props(seen[i], with_bus), get_device_name=lambda i=0: seen[i]["name"],
        synchronize=lambda d=None: None, empty_cache=lambda: None,
        reset_peak_memory_stats=lambda d=None: None, memory_allocated=lambda d=None: 0,
        memory_reserved=lambda d=None: 0, max_memory_allocated=lambda d=None: 0, max_memory_reserved=lambda d=None: 0,
    )
    monkeypatch.setattr(torch, "cuda", cuda)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    return cuda
