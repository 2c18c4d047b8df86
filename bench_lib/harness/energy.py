"""GPU energy of a block of work, from NVML's total-energy counter.

``nvmlDeviceGetTotalEnergyConsumption`` returns the millijoules the GPU has used since the driver loaded
(Volta and newer). Reading it before and after the timed rounds gives joules for exactly that work, without a
sampling thread. Where NVML, the GPU or the counter is missing (CPU runs, older GPUs, MIG slices, containers
without NVML) the result is None with a reason, never a guess::

    with EnergyMeter(device) as meter:
        run_timed_rounds()
    meter.joules        # float or None
    meter.reason        # why it is None

The counter updates every few tens of milliseconds, so wrap at least a few hundred milliseconds of work (the
quick profile's ~0.3 s of rounds is the minimum worth reading). Tokens per joule is derived in the report:
tokens per call x calls / joules.
"""

from __future__ import annotations

import time

import torch

from bench_lib.harness import nvml as nvmllib
from bench_lib.harness.device import synchronize


def _import_pynvml():
    import pynvml  # nvidia-ml-py, the [gpu] extra

    return pynvml


class EnergyMeter:
    """Context manager: joules the GPU used between enter and exit (None where it cannot be measured).

    device: the torch device the work runs on; CPU devices get None ("NVML measures NVIDIA GPUs only").
    nvml:   the pynvml module; tests pass a fake, None imports the real one.
    """

    def __init__(self, device: torch.device | str, nvml=None):
        self.device = torch.device(device)
        self._nvml = nvml
        self._handle = None
        self._start_mj: int | None = None
        self._start_s = 0.0
        self.joules: float | None = None
        self.window_s: float | None = None
        self.reason: str | None = None

    def __enter__(self) -> EnergyMeter:
        if self.device.type != "cuda":
            self.reason = "NVML measures NVIDIA GPUs only"
            return self
        try:
            nvml = self._nvml or _import_pynvml()
        except ImportError:
            self.reason = "nvidia-ml-py (pynvml) is not installed"
            return self
        try:
            nvml.nvmlInit()
        except Exception as exc:  # pynvml raises NVMLError subclasses; no NVML library is one of them
            self.reason = f"NVML unavailable: {exc}"
            return self
        self._nvml = nvml
        try:
            self._handle = nvmllib.device_handle(nvml, self.device)  # by PCI bus id, as env and memory
            self._start_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception as exc:  # NVML_ERROR_NOT_SUPPORTED before Volta and on MIG slices
            self.reason = f"NVML energy counter unavailable: {exc}"
            self._start_mj = None
            nvml.nvmlShutdown()
            return self
        self._start_s = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._start_mj is None:
            return
        try:
            if torch.cuda.is_available():
                synchronize(self.device)  # queued kernels belong to this window
            end_mj = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self.window_s = time.perf_counter() - self._start_s
            if end_mj < self._start_mj:
                self.reason = "NVML energy counter went backwards (driver reloaded?)"
            else:
                self.joules = (end_mj - self._start_mj) / 1000.0  # millijoules -> joules
        except Exception as exc:
            self.reason = f"NVML energy counter unavailable: {exc}"
        finally:
            self._nvml.nvmlShutdown()

    def metrics(self, calls: int) -> dict:
        """Record fields for ``calls`` executions inside the window: ``energy_j``, ``energy_per_call_j``,
        ``avg_power_w``; ``energy_reason`` instead when no energy was measured."""
        if self.joules is None:
            return {"energy_reason": self.reason}
        out = {"energy_j": self.joules, "energy_per_call_j": self.joules / calls if calls else None}
        if self.window_s:
            out["avg_power_w"] = self.joules / self.window_s
        return out
