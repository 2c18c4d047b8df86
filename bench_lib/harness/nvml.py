"""NVML (nvidia-ml-py, imported as ``pynvml``) for torch's CUDA device: the one way to find its handle.

NVML numbers every GPU of the machine in PCI bus order and ignores ``CUDA_VISIBLE_DEVICES``; torch numbers
only the visible GPUs, 0..n-1, in CUDA's order (fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``). The
same index can therefore name two different GPUs: with ``CUDA_VISIBLE_DEVICES=3``, torch's device 0 is
NVML's device 3. So a handle is looked up by what both sides agree on: the PCI bus id torch reports for
the device, and its UUID where the bus id is not accepted; never by index. Every module that reads NVML
(env, memory, energy) gets its handle from :func:`device_handle`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# one folder per NVIDIA GPU the driver manages (named by PCI bus id), also without nvidia-ml-py
PROC_GPUS = Path("/proc/driver/nvidia/gpus")


def load():
    """The ``pynvml`` module, initialised; raises ImportError (not installed) or NVMLError (no driver)."""
    import pynvml  # nvidia-ml-py, the [gpu] extra

    pynvml.nvmlInit()  # reference counted: each init is paired with a shutdown or lives for the process
    return pynvml


def cuda_identity(device: torch.device | str | int | None = None) -> tuple[str | None, str | None]:
    """(PCI bus id in NVML's format ``00000000:4C:00.0``, UUID ``GPU-...``) of torch's CUDA device.

    Either is None where this torch does not report it. ``device`` None or without an index means the
    current device, as torch uses it.
    """
    device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device or "cuda")
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    bus = None
    if all(hasattr(props, a) for a in ("pci_domain_id", "pci_bus_id", "pci_device_id")):
        # NVML's nvmlPciInfo_t.busId format: domain:bus:device.function, upper-case hex, function 0
        bus = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
    uuid = getattr(props, "uuid", None)
    uuid = None if uuid is None else str(uuid)
    if uuid and not uuid.startswith(("GPU-", "MIG-")):
        uuid = "GPU-" + uuid  # torch prints the bare UUID; NVML wants it prefixed
    return bus, uuid


def device_handle(nvml, device: torch.device | str | int | None = None):
    """NVML handle of torch's CUDA ``device``: by PCI bus id, else by UUID; never by index.

    nvml: the initialised pynvml module (tests pass a fake). Raises LookupError, naming what was tried,
    when NVML knows neither identity.
    """
    bus, uuid = cuda_identity(device)
    tried = []
    if bus is not None:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(bus)
        except Exception as exc:  # pynvml raises NVMLError subclasses
            tried.append(f"PCI bus id {bus}: {exc}")
    if uuid is not None:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(uuid)
        except Exception as exc:
            tried.append(f"UUID {uuid}: {exc}")
    raise LookupError(f"NVML has no GPU matching torch's {device or 'cuda'} ({'; '.join(tried) or 'torch reports no PCI bus id or UUID'})")


def physical_count(nvml=None) -> int | None:
    """GPUs in the machine, whatever ``CUDA_VISIBLE_DEVICES`` hides: NVML's count, else the driver's /proc
    folders; None when neither can be read."""
    if nvml is not None:
        try:
            return int(nvml.nvmlDeviceGetCount())
        except Exception:
            pass
    try:
        return len([p for p in os.scandir(PROC_GPUS) if p.is_dir()]) or None
    except OSError:
        return None
