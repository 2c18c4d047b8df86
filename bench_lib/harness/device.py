"""Device resolution, synchronization and out-of-memory handling: the one place that branches on CUDA vs CPU."""

from __future__ import annotations

import contextlib
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


# How GPU libraries word an allocation failure that PyTorch passes on as a plain RuntimeError (lower case):
# cuBLAS/cuDNN/cuSOLVER/cuSPARSE ``*_STATUS_ALLOC_FAILED`` (handle creation, cuBLASLt workspaces), cuFFT
# ``CUFFT_ALLOC_FAILED``, cuDNN 9's ``CUDNN_STATUS_INTERNAL_ERROR_{DEVICE,HOST}_ALLOCATION_FAILED``, and the
# cuDNN convolution search, which skips every algorithm whose workspace cannot be allocated and reports
# "Unable to find a valid cuDNN algorithm" when none is left (aten/src/ATen/native/cudnn/Conv_v7.cpp).
OOM_MARKERS = ("out of memory", "can't allocate memory", "failed to allocate", "_alloc_failed",
               "_allocation_failed", "unable to find a valid cudnn algorithm")


def is_oom(exc: BaseException) -> bool:
    """True for every way PyTorch, Python and the GPU libraries report running out of memory."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(marker in text for marker in OOM_MARKERS)


# ---------------------------------------------------------------- sticky CUDA errors
# Exit status of a pytest process that ends itself because its CUDA context is unusable (EX_TEMPFAIL: "try
# again"); ``effbench run`` resumes the remaining cases in a fresh process when its child exits with it.
CONTEXT_LOST_EXIT = 76  # 75 (EX_TEMPFAIL) is journal.DISK_FULL_EXIT


def context_error(device: torch.device) -> str | None:
    """None while a trivial kernel still runs on ``device``; else why not (always None on CPU).

    An illegal memory access, a device-side assert or a failed launch is *sticky*: the CUDA context of the
    process is unusable afterwards and every later call fails with it. A one-element add, synchronized,
    tells a sticky error from one that left the context usable (a refused shape, an allocation failure).
    The type of the exception cannot: torch (>= 2.8) raises ``torch.AcceleratorError`` for every CUDA
    runtime error, sticky or not, and a sticky error may surface as a plain RuntimeError from cuDNN.
    """
    if device.type != "cuda":
        return None
    try:
        x = torch.ones(1, device=device)
        (x + x).cpu()
        torch.cuda.synchronize(device)
    except Exception as exc:  # any failure here means the context is gone
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


def release_memory(device: torch.device) -> None:
    """Return cached memory after a case (and after an OOM) so the next case starts clean."""
    gc.collect()
    if device.type == "cuda":
        # after a sticky CUDA error nothing can be freed; the caller's context_error() check reports it
        with contextlib.suppress(RuntimeError):
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
