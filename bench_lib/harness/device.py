"""Device resolution, synchronization and out-of-memory handling: the one place that branches on CUDA vs CPU."""

from __future__ import annotations

import gc

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve(requested: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU. Asking for ``cuda`` without one is a clear error."""
    if requested not in DEVICE_CHOICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, not {requested!r}")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "--device cuda was asked for but torch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). Use --device cpu or auto."
        )
    return torch.device(requested)


def synchronize(device: torch.device) -> None:
    """Wait until all queued work on ``device`` has finished (a no-op on CPU, where ops are synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_oom(exc: BaseException) -> bool:
    """True for every way PyTorch and Python report running out of memory."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text
    )


def release_memory(device: torch.device) -> None:
    """Return cached memory after a case (and after an OOM) so the next case starts clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    else:
        malloc_trim()


def malloc_trim() -> None:
    """Ask glibc to hand freed heap pages back, so RSS-based probes start from a true baseline."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: RSS baselines may include freed pages; the probe records its baseline anyway
