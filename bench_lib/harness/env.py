"""The environment record: what this machine is, so results from many machines can be told apart and merged.

Goes into ``machine_info["effbench"]`` and the journal header. Absent facts are ``None``; nothing here
may crash a run (no NVML, no git, no /proc). No hostname is recorded: the machine is named by a slug of
its hardware (``machine_slug``).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import torch

from bench_lib import SCHEMA_VERSION
from bench_lib.harness import nvml

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "flash-attn", "flash_attn_3", "pytest-benchmark",
            "accelerate", "torchao", "numpy", "nvidia-ml-py", "triton", "pandas", "seaborn", "effbench")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_info() -> dict[str, Any]:
    model = None
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = m.group(1).strip() if m else None
    except OSError:
        pass
    try:
        import psutil

        physical, total = psutil.cpu_count(logical=False), psutil.virtual_memory().total
    except Exception:
        physical, total = None, None
    return {
        "model": model or platform.processor() or None,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_bytes": total,
    }


def _nvml(device: torch.device | None = None) -> dict[str, Any]:
    """Clocks, power limit, temperature and driver of torch's CUDA ``device`` (None: the current one) from
    NVML, found by PCI bus id (:mod:`bench_lib.harness.nvml`); every field None when unavailable."""
    fields = dict.fromkeys(("driver", "sm_clock_mhz", "sm_clock_max_mhz", "mem_clock_max_mhz", "power_limit_w",
                            "temperature_c", "energy_counter", "physical_count"))
    try:
        pynvml = nvml.load()
    except Exception:
        fields["physical_count"] = nvml.physical_count()
        return fields
    fields["physical_count"] = nvml.physical_count(pynvml)
    fields["driver"] = _read(pynvml.nvmlSystemGetDriverVersion)
    try:
        h = nvml.device_handle(pynvml, device)
    except Exception:
        return fields  # NVML runs but does not know this GPU: describe nothing rather than another GPU
    getters = {
        "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "sm_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
        "mem_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM),
        "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
        "temperature_c": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        "energy_counter": lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h) is not None,
    }
    for key, get in getters.items():
        fields[key] = _read(get)
    return fields


def _read(get):
    try:
        value = get()
    except Exception:
        return None
    return value.decode() if isinstance(value, bytes) else value


def gpu_info(device: torch.device | None = None) -> dict[str, Any] | None:
    """The run's GPU (``device``; None: the current CUDA device). ``visible_count`` is what this process
    sees (after ``CUDA_VISIBLE_DEVICES``; ``count`` is the same number, the field's older name),
    ``physical_count`` what the machine has; the machine slug is named by the physical one."""
    if not torch.cuda.is_available():
        return None
    index = device.index if device is not None and device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    visible = torch.cuda.device_count()
    return {
        "name": torch.cuda.get_device_name(index),
        "count": visible,
        "visible_count": visible,
        "memory_bytes": props.total_memory,
        "capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        **_nvml(torch.device("cuda", index)),
    }


def gpu_state(device: torch.device | None = None) -> dict[str, Any] | None:
    """Temperature and clock of the run's GPU now: taken before and after a run to show thermal drift."""
    if not torch.cuda.is_available():
        return None
    info = _nvml(device)
    return {k: info[k] for k in ("temperature_c", "sm_clock_mhz")}


def git_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if sha.returncode == 0:
            return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": None, "dirty": None}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_slug(cpu: dict[str, Any], gpu: dict[str, Any] | None) -> str:
    """A name for this hardware (never the hostname): ``nvidia-h200-x8`` or ``cpu-<model>-<cores>c``.

    The GPU count is the machine's (``physical_count``), not what ``CUDA_VISIBLE_DEVICES`` lets the run see:
    pinning a run to one GPU of eight must not file its baselines under another machine. Only where the
    physical count cannot be read (no NVML, no driver /proc) does the visible count stand in.
    """
    if gpu:
        return f"{slug(gpu['name'])}-x{gpu.get('physical_count') or gpu['count']}"
    words = slug(cpu.get("model") or cpu.get("arch") or "unknown").split("-")
    model = "-".join(w for w in words if w not in ("r", "tm", "cpu", "processor", "with"))
    return f"cpu-{model}-{cpu.get('usable_cores')}c"


def record(device: torch.device, profile: str) -> dict[str, Any]:
    cpu, gpu = cpu_info(), gpu_info(device) if device.type == "cuda" else None
    return {
        "schema_version": SCHEMA_VERSION,
        "device": device.type,
        "machine_slug": machine_slug(cpu, gpu),
        "profile": profile,
        "python": platform.python_version(),
        "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine()},
        "cpu": cpu,
        "gpu": gpu,
        "packages": package_versions(),
        "torch": {
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "num_threads": torch.get_num_threads(),
        },
        "git": git_commit(),
    }
