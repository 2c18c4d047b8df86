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

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "flash-attn", "flash_attn_3", "pytest-benchmark",
            "accelerate", "numpy", "nvidia-ml-py", "triton", "pandas", "seaborn", "effbench")


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


def _nvml(index: int) -> dict[str, Any]:
    """Clocks, power limit, temperature and driver from NVML; every field None when unavailable."""
    fields = dict.fromkeys(("driver", "sm_clock_mhz", "sm_clock_max_mhz", "mem_clock_max_mhz", "power_limit_w",
                            "temperature_c", "energy_counter"))
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:
        return fields
    getters = {
        "driver": lambda: pynvml.nvmlSystemGetDriverVersion(),
        "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "sm_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
        "mem_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM),
        "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
        "temperature_c": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        "energy_counter": lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h) is not None,
    }
    for key, get in getters.items():
        try:
            value = get()
            fields[key] = value.decode() if isinstance(value, bytes) else value
        except Exception:
            fields[key] = None
    return fields


def gpu_info() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {
        "name": torch.cuda.get_device_name(0),
        "count": torch.cuda.device_count(),
        "memory_bytes": props.total_memory,
        "capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        **_nvml(0),
    }


def gpu_state() -> dict[str, Any] | None:
    """Temperature and clock now: taken before and after a run to show thermal drift."""
    if not torch.cuda.is_available():
        return None
    info = _nvml(0)
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
    """A name for this hardware (never the hostname): ``nvidia-h200-x1`` or ``cpu-<model>-<cores>c``."""
    if gpu:
        return f"{slug(gpu['name'])}-x{gpu['count']}"
    words = slug(cpu.get("model") or cpu.get("arch") or "unknown").split("-")
    model = "-".join(w for w in words if w not in ("r", "tm", "cpu", "processor", "with"))
    return f"cpu-{model}-{cpu.get('usable_cores')}c"


def record(device: torch.device, profile: str) -> dict[str, Any]:
    cpu, gpu = cpu_info(), gpu_info() if device.type == "cuda" else None
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
