"""GPU energy of a call, from NVML's total-energy counter, in an untimed window long enough for the counter.

``nvmlDeviceGetTotalEnergyConsumption`` returns the millijoules the GPU has used since the driver loaded
(Volta and newer). It advances in steps, once per counter update (every 20-100 ms depending on the GPU), so
a window of a few milliseconds reads 0 J or one step: 0 W or several kW. The energy is therefore read in its
own window, like the memory repeat: :func:`measure_window` repeats the call until the window lasts at least
the profile's ``energy_window_s`` (about 1 s) and the counter was seen to update at least twice, while a
sampler thread notes each update (which also measures the counter's update period). A reading below the
counter's resolution is recorded as null with the reason, never as 0 J. Where NVML, the GPU or the counter
is missing (CPU runs, older GPUs, MIG slices, containers without NVML) the result is null with a reason::

    metrics = measure_window(fn, device, min_window_s=1.0)
    metrics["energy_j"]          # joules of the window's calls, or None
    metrics["energy_reason"]     # why it is None

Tokens per joule is derived in the report: tokens per second over the average power.
"""

from __future__ import annotations

import statistics
import threading
import time

import torch

from bench_lib.harness import nvml as nvmllib
from bench_lib.harness.device import synchronize

POLL_S = 0.002  # sampler period: well under the counter's 20-100 ms, NVML reads cost ~10-100 us
MIN_UPDATES = 2  # one update's worth is the counter's resolution, not a measurement


def _import_pynvml():
    import pynvml  # nvidia-ml-py, the [gpu] extra

    return pynvml


class EnergyMeter:
    """Context manager: joules the GPU used between enter and exit (None where it cannot be measured), and
    the host times at which a sampler thread saw the counter change (``updates``).

    device: the torch device the work runs on; CPU devices get None ("NVML measures NVIDIA GPUs only").
    nvml:   the pynvml module; tests pass a fake, None imports the real one.
    """

    def __init__(self, device: torch.device | str, nvml=None, poll_s: float = POLL_S, clock=time.perf_counter):
        self.device = torch.device(device)
        self._nvml = nvml
        self._handle = None
        self._poll_s, self._clock = poll_s, clock
        self._start_mj: int | None = None
        self._start_s = 0.0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._last_mj: int | None = None
        self.updates: list[float] = []
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
            self._start_mj = self._last_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception as exc:  # NVML_ERROR_NOT_SUPPORTED before Volta and on MIG slices
            self.reason = f"NVML energy counter unavailable: {exc}"
            self._start_mj = None
            nvml.nvmlShutdown()
            return self
        self._start_s = self._clock()
        self._sampler = threading.Thread(target=self._watch, name="effbench-energy", daemon=True)
        self._sampler.start()
        return self

    def _read(self) -> int:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def _seen(self, value: int) -> None:
        if value != self._last_mj:
            self.updates.append(self._clock())
            self._last_mj = value

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self._seen(self._read())
            except Exception:  # the final read in __exit__ reports a failing counter
                return

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._start_mj is None:
            return
        try:
            if torch.cuda.is_available():
                synchronize(self.device)  # queued kernels belong to this window
            self._stop.set()
            self._sampler.join()
            end_mj = self._read()
            self._seen(end_mj)
            self.window_s = self._clock() - self._start_s
            if end_mj < self._start_mj:
                self.reason = "NVML energy counter went backwards (driver reloaded?)"
            else:
                self.joules = (end_mj - self._start_mj) / 1000.0  # millijoules -> joules
        except Exception as exc:
            self.reason = f"NVML energy counter unavailable: {exc}"
        finally:
            self._stop.set()
            self._nvml.nvmlShutdown()

    def period_s(self) -> float | None:
        """Median seconds between consecutive counter updates seen in the window; None with fewer than two."""
        gaps = [b - a for a, b in zip(self.updates, self.updates[1:], strict=False)]
        return statistics.median(gaps) if gaps else None

    def metrics(self, calls: int) -> dict:
        """Record fields for ``calls`` executions inside the window: ``energy_j``, ``energy_per_call_j`` and
        ``avg_power_w`` (None below the counter's resolution or without a counter, ``energy_reason`` saying
        why), ``energy_window_s``, ``energy_window_calls``, ``energy_counter_updates``, ``energy_counter_period_s``."""
        if self.joules is None and self.window_s is None:
            return {"energy_j": None, "energy_reason": self.reason}
        out = {"energy_j": None, "energy_per_call_j": None, "avg_power_w": None, "energy_window_s": self.window_s,
               "energy_window_calls": calls, "energy_counter_updates": len(self.updates),
               "energy_counter_period_s": self.period_s()}
        if self.joules is None:
            out["energy_reason"] = self.reason
        elif self.joules == 0:
            out["energy_reason"] = (f"NVML's energy counter did not advance in the {self.window_s:.3g} s window: "
                                    "below its resolution")
        elif len(self.updates) < MIN_UPDATES:
            out["energy_reason"] = (f"NVML's energy counter updated only once in the {self.window_s:.3g} s window: "
                                    "one update's worth is its resolution, not a measurement")
        elif not calls or not self.window_s:
            out["energy_reason"] = "no call ran in the energy window"
        else:
            out.update(energy_j=self.joules, energy_per_call_j=self.joules / calls,
                       avg_power_w=self.joules / self.window_s)
        return out


def measure_window(fn, device: torch.device | str, min_window_s: float, nvml=None, poll_s: float = POLL_S,
                   clock=time.perf_counter) -> dict:
    """Energy of ``fn`` repeated in one untimed window: calls until the window lasts ``min_window_s`` and the
    counter updated at least twice (or three times the minimum, at least a second more, has passed); the
    fields of :meth:`EnergyMeter.metrics`. ``min_window_s`` 0 measures nothing (the smoke profile)."""
    if min_window_s <= 0:
        return {"energy_j": None, "energy_reason": "no energy window in this profile (energy_window_s = 0)"}
    calls = 0
    with EnergyMeter(device, nvml, poll_s, clock) as meter:
        if meter.reason is None:
            start = clock()
            give_up = max(3 * min_window_s, min_window_s + 1.0)
            while True:
                fn()
                calls += 1
                elapsed = clock() - start
                if elapsed >= min_window_s and (len(meter.updates) >= MIN_UPDATES or elapsed >= give_up):
                    break
    return meter.metrics(calls)
