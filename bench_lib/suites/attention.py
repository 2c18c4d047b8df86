"""Attention suite: materialized (eager) attention against flash-style kernels, checked against a reference.

Every implementation computes softmax(Q K^T * d^-1/2 [+ causal mask]) V on tensors laid out
(batch, heads, seq_len, head_dim); K and V may have fewer heads than Q (GQA: query head i reads KV head
i // (heads / kv_heads)). ``build(case, ctx)`` makes the inputs with a fixed seed, forces the kernel, and
returns a :class:`Workload` whose ``fn`` runs the forward (``fwd``) or forward + backward (``fwd_bwd``) and
whose ``check`` compares the output (and input gradients) with a higher-precision reference
(:mod:`bench_lib.suites.attention_ref`). The PyTorch SDPA backends run under ``torch.nn.attention.sdpa_kernel``
with only that backend allowed, so a silent fallback is impossible: PyTorch refuses instead, and its own
explanation becomes the ``unsupported`` reason. The harness enters that context once, outside the timed
region (``Workload.around``), so no impl pays for a context inside its timed call.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import re
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode

from bench_lib.harness import device as devicelib
from bench_lib.harness import registry
from bench_lib.harness.workload import Case, CaseFailed, Context, Unsupported, Workload
from bench_lib.suites import flops
from bench_lib.suites.attention_ref import FP8_TOLERANCE, max_rel_error, reference_attention, tolerance

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SEED = 0

REGISTRY = registry.new("attention impl")


# ---------------------------------------------------------------- implementations
def eager_attention(q, k, v, causal_mask):
    """Scores materialized, as transformers' ``eager_attention_forward`` (models/llama/modeling_llama.py) does.

    ``causal_mask``: additive (1, 1, s, s) mask in q's dtype (0 or the dtype's min), or None. KV heads are
    repeated to the query heads (transformers' ``repeat_kv``), softmax runs in fp32 and is cast back.
    """
    n_rep = q.shape[1] // k.shape[1]
    if n_rep > 1:  # repeat_kv: (b, kv, s, d) -> (b, kv * n_rep, s, d)
        b, kv, s, d = k.shape
        k = k[:, :, None].expand(b, kv, n_rep, s, d).reshape(b, kv * n_rep, s, d)
        v = v[:, :, None].expand(b, kv, n_rep, s, d).reshape(b, kv * n_rep, s, d)
    scores = torch.matmul(q, k.transpose(2, 3)) * q.shape[-1] ** -0.5
    if causal_mask is not None:
        scores = scores + causal_mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(probs, v)


def _make_eager(causal, seq_len, dtype, device):
    mask = None
    if causal:  # built once per case, as transformers builds it once per model forward, not per layer
        upper = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).triu(1)
        mask = torch.zeros(1, 1, seq_len, seq_len, dtype=dtype, device=device)
        mask.masked_fill_(upper, torch.finfo(dtype).min)
    return lambda q, k, v: eager_attention(q, k, v, mask)


def _make_sdpa(backend):
    """SDPA with only ``backend`` allowed once ``sdpa_kernel([backend])`` is entered. The context is not
    entered here: the harness enters it once around the whole measurement (``Workload.around``), so the
    timed call pays for it no more than eager or flash_attn do."""
    def make(causal, seq_len, dtype, device):
        def attend(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=k.shape[1] != q.shape[1])
        return attend
    return make


def _make_flash_attn(module):
    def make(causal, seq_len, dtype, device):
        func = importlib.import_module(module).flash_attn_func

        def attend(q, k, v):
            # the flash-attn packages take (b, s, h, d); transposed views cost no copy (only the last dim must
            # be contiguous) and GQA is native (k, v with fewer heads)
            out = func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=causal)
            out = out[0] if isinstance(out, tuple) else out  # some FA3 versions also return the logsumexp
            return out.transpose(1, 2)
        return attend
    return make


E4M3_MAX = 448.0  # largest finite float8_e4m3fn


def quantize_e4m3(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as float8_e4m3fn with one scale per tensor (its amax maps to 448), and that scale as the fp32
    descale factor: x ~ x8.float() * descale. Strides are kept (a transposed view stays one)."""
    scale = (x.detach().abs().max().float() / E4M3_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    return (x.detach().float() / scale).to(torch.float8_e4m3fn), scale


def _make_flash_attn_fp8(module):
    """FA3's FP8 forward: q, k, v in e4m3 with per-tensor descales, bf16 out. The inputs are quantized once
    (on the first call, which check and warm-up make), as an FP8 KV cache and FP8 activations would hold
    them: the timed calls are the kernel alone."""
    def make(causal, seq_len, dtype, device):
        func = importlib.import_module(module).flash_attn_func
        held: dict = {}

        def attend(q, k, v):
            key = (id(q), id(k), id(v))
            if held.get("key") != key:
                quantized = [quantize_e4m3(t.transpose(1, 2)) for t in (q, k, v)]  # (b, s, h, d) views
                b, hk = q.shape[0], k.shape[1]
                held.update(key=key, tensors=[t for t, _ in quantized],
                            descales=[d.reshape(1, 1).expand(b, hk).contiguous() for _, d in quantized])
            q8, k8, v8 = held["tensors"]
            dq, dk, dv = held["descales"]
            out = func(q8, k8, v8, causal=causal, q_descale=dq, k_descale=dk, v_descale=dv)
            out = out[0] if isinstance(out, tuple) else out
            return out.transpose(1, 2)
        return attend
    return make


def _fp8_support(module, name, install, min_capability):
    """FA3's support, plus a flash_attn_func that takes descale factors (its FP8 path) and torch's e4m3."""
    base = _flash_attn_support(module, name, install, min_capability)

    @functools.cache
    def support(device: torch.device) -> str | None:
        reason = base(device)
        if reason:
            return reason
        if not hasattr(torch, "float8_e4m3fn"):
            return f"torch {torch.__version__} has no float8_e4m3fn"
        import inspect

        params = inspect.signature(importlib.import_module(module).flash_attn_func).parameters
        if "q_descale" not in params:
            return f"this {name} build's flash_attn_func takes no q_descale: no FP8 path"
        return None
    return support


# ---------------------------------------------------------------- support, decided once per entry and device
def _sdpa_refusal(backend, attend, q, k, v) -> str | None:
    """Run the forced kernel once; PyTorch's warnings and error when it refuses, None when it runs."""
    with warnings.catch_warnings(record=True) as caught, sdpa_kernel([backend]):
        warnings.simplefilter("always")
        try:
            attend(q, k, v)
        except RuntimeError as exc:
            if devicelib.is_oom(exc) or not _is_no_kernel(exc):
                raise
            # PyTorch's warnings say why each kernel was rejected; the error only says that none was left
            said = " ".join(dict.fromkeys(_TRIGGERED.sub("", str(w.message)).strip() for w in caught))
            error = _TRIGGERED.sub("", str(exc)).strip()
            reason = f"PyTorch refused {backend.name}: " + (f"{said} ({error})" if said else error)
            if not caught and q.device.type == "cpu":
                # the CPU dispatcher knows only math and flash and gives no per-kernel warning for the others
                reason = f"needs a CUDA GPU: torch {torch.__version__} has no CPU kernel for it. {reason}"
            return reason
    return None


_TRIGGERED = re.compile(r"\s*\(Triggered internally at [^)]*\)\.?")  # C++ source locations in torch warnings


def _is_no_kernel(exc) -> bool:
    text = str(exc)
    return "No available kernel" in text or "No viable backend" in text


def _sdpa_support(backend):
    @functools.cache
    def support(device: torch.device) -> str | None:
        # the most widely supported call (fp16 on CUDA, no mask, d=64): refused here, the backend is unusable
        # on this device; constraints of a particular case (dtype, head_dim, GQA, backward) are probed in build
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        q = torch.randn(1, 2, 128, 64, device=device, dtype=dtype)
        return _sdpa_refusal(backend, _make_sdpa(backend)(False, 128, dtype, device), q, q, q)
    return support


def _flash_attn_support(module, name, install, min_capability):
    @functools.cache
    def support(device: torch.device) -> str | None:
        if importlib.util.find_spec(module) is None:
            return f"{name} not installed ({install}); needs a CUDA build"
        if device.type != "cuda":
            return f"{name} runs on CUDA GPUs only (this run is on {device.type})"
        capability = torch.cuda.get_device_capability(device)
        if capability < min_capability:
            return f"{name} needs compute capability {min_capability[0]}.{min_capability[1]}+, this GPU is {capability[0]}.{capability[1]}"
        try:
            importlib.import_module(module)
        except (ImportError, OSError) as exc:  # e.g. built against another torch
            return f"{name} is installed but does not import: {exc}"
        return None
    return support


REGISTRY.register("eager", "scores materialized: QK^T, scale, mask, fp32 softmax, PV (transformers eager)",
                  setup=_make_eager)
for _id, _backend, _what in [
    ("sdpa_math", SDPBackend.MATH, "PyTorch SDPA, math backend (composite, scores materialized)"),
    ("sdpa_flash", SDPBackend.FLASH_ATTENTION, "PyTorch SDPA, flash backend (FA2 on CUDA, tiled kernel on CPU)"),
    ("sdpa_efficient", SDPBackend.EFFICIENT_ATTENTION, "PyTorch SDPA, memory-efficient (xFormers) backend"),
    ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION, "PyTorch SDPA, cuDNN backend"),
]:
    REGISTRY.register(_id, _what, support=_sdpa_support(_backend), setup=_make_sdpa(_backend), backend=_backend)
REGISTRY.register(
    "flash_attn", "flash-attn package, FlashAttention-2 flash_attn_func",
    support=_flash_attn_support("flash_attn", "flash-attn", "pip install 'effbench[flash]'", (8, 0)),
    setup=_make_flash_attn("flash_attn"), module="flash_attn", fp16_bf16_only=True)
REGISTRY.register(
    "flash_attn3", "FlashAttention-3 (flash_attn_interface.flash_attn_func), Hopper",
    support=_flash_attn_support("flash_attn_interface", "FlashAttention-3",
                                "build flash-attention's hopper/ package", (9, 0)),
    setup=_make_flash_attn("flash_attn_interface"), module="flash_attn_interface", fp16_bf16_only=True)
REGISTRY.register(
    "flash_attn3_fp8", "FlashAttention-3 FP8 forward: e4m3 q/k/v with per-tensor descales, bf16 out, Hopper",
    support=_fp8_support("flash_attn_interface", "FlashAttention-3", "build flash-attention's hopper/ package",
                         (9, 0)),
    setup=_make_flash_attn_fp8("flash_attn_interface"), module="flash_attn_interface", fp8=True)


# ---------------------------------------------------------------- which kernel ran
# aten ops through which SDPA reaches a fused kernel; the math backend decomposes into matmul/softmax instead
_FUSED_SDPA_OPS = {
    "_scaled_dot_product_flash_attention": SDPBackend.FLASH_ATTENTION,
    "_scaled_dot_product_flash_attention_for_cpu": SDPBackend.FLASH_ATTENTION,
    "_scaled_dot_product_efficient_attention": SDPBackend.EFFICIENT_ATTENTION,
    "_scaled_dot_product_cudnn_attention": SDPBackend.CUDNN_ATTENTION,
}
if hasattr(SDPBackend, "OVERRIDEABLE"):  # a Python name only since pytorch#156669 (2025)
    _FUSED_SDPA_OPS["_scaled_dot_product_fused_attention_overrideable"] = SDPBackend.OVERRIDEABLE


class _FusedOpRecorder(TorchDispatchMode):
    """Records which fused SDPA aten ops a call dispatched to (evidence for ``backend_ran``)."""

    def __init__(self):
        super().__init__()
        self.fused: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in _FUSED_SDPA_OPS and name not in self.fused:
            self.fused.append(name)
        return func(*args, **(kwargs or {}))


def _backend_ran(entry, recorder) -> str:
    """What ran: for SDPA, the fused aten op dispatched (CaseFailed if it is not the forced backend)."""
    backend = entry.options.get("backend")
    if backend is None:  # eager, or a flash-attn package function called directly
        module = entry.options.get("module")
        version = getattr(importlib.import_module(module), "__version__", None) if module else None
        return f"{entry.id} {version}" if version else entry.id
    ran = {_FUSED_SDPA_OPS[name] for name in recorder.fused} or {SDPBackend.MATH}
    if ran != {backend}:
        raise CaseFailed(f"{entry.id}: forced {backend.name} but {', '.join(b.name for b in ran)} ran")
    return ", ".join(f"aten::{name}" for name in recorder.fused) or "aten math composite (matmul, softmax)"


# ---------------------------------------------------------------- the workload
def inputs(params: dict, device: torch.device, requires_grad: bool):
    """q (b, h, s, d) and k, v (b, kv_heads, s, d), standard normal, in the case dtype, fixed seed."""
    gen = torch.Generator(device=device).manual_seed(SEED)
    b, h, kv, s, d = (params[n] for n in ("batch", "heads", "kv_heads", "seq_len", "head_dim"))
    dtype = DTYPES[params["dtype"]]
    return tuple(
        torch.randn(b, n, s, d, generator=gen, device=device, dtype=dtype).requires_grad_(requires_grad)
        for n in (h, kv, kv)
    )


def build(case: Case, ctx: Context) -> Workload | Unsupported:
    """Case params: impl, direction (fwd|fwd_bwd), dtype, seq_len, batch, heads, kv_heads, head_dim, causal,
    and optionally compile (eager|compiled; absent: eager)."""
    p = case.params
    entry, device, dtype_name = REGISTRY[p["impl"]], ctx.device, p["dtype"]
    reason = entry.support(device)
    if reason is None and entry.options.get("fp16_bf16_only") and dtype_name not in ("fp16", "bf16"):
        reason = f"{entry.id} computes in fp16 or bf16 only, not {dtype_name}"
    if reason is None and entry.options.get("fp8"):  # FP8 cases are bf16 cases whose inputs the kernel takes in e4m3
        if dtype_name != "bf16":
            reason = f"{entry.id} is measured on the bf16 cases (e4m3 inputs quantized from them, bf16 out)"
        elif p["direction"] != "fwd":
            reason = f"{entry.id}: FlashAttention-3's FP8 path is forward-only (no backward kernel)"
    if reason is not None:
        return Unsupported(reason)

    backward = p["direction"] == "fwd_bwd"
    state = {}  # every tensor of the case, so teardown can release them even if the workload is kept
    q, k, v = state["qkv"] = inputs(p, device, requires_grad=backward)
    attend = entry.setup(p["causal"], p["seq_len"], DTYPES[dtype_name], device)
    if "backend" in entry.options:
        with torch.set_grad_enabled(backward):  # the kernels check backward support only when grad is on
            reason = _sdpa_refusal(entry.options["backend"], attend, q, k, v)
        if reason is not None:
            state.clear()
            return Unsupported(reason)
    compiled = p.get("compile", "eager") == "compiled"
    if compiled:  # after the refusal probe, which must see the uncompiled call; the harness times the compile
        attend = torch.compile(attend)
    if backward:
        gen = torch.Generator(device=device).manual_seed(SEED + 1)
        state["grad_out"] = torch.randn(q.shape, generator=gen, device=device, dtype=q.dtype)

    def run():
        """Output and, for fwd_bwd, input gradients (autograd.grad: nothing accumulates in .grad)."""
        q, k, v = state["qkv"]
        out = attend(q, k, v)
        grads = torch.autograd.grad(out, (q, k, v), state["grad_out"]) if backward else ()
        return out, grads

    def fn():
        run()

    def check():
        # only SDPA calls are watched: the other impls are called directly, nothing can fall back
        # a compiled call runs inductor's generated code, which a dispatch mode does not see op by op
        recorder = _FusedOpRecorder() if "backend" in entry.options and not compiled else contextlib.nullcontext()
        with recorder:
            out, grads = run()
        if compiled:
            metrics = {"backend_ran": f"{entry.id} under torch.compile (inductor; fused op not observed)"}
        else:
            metrics = {"backend_ran": _backend_ran(entry, recorder)}
        ref_out, ref_grads = reference_attention(*state["qkv"], p["causal"], state.get("grad_out"))
        errors = {"out": max_rel_error(out, ref_out)}
        if backward:
            errors.update({f"d{n}": max_rel_error(g, r) for n, g, r in zip("qkv", grads, ref_grads, strict=True)})
        tol = FP8_TOLERANCE if entry.options.get("fp8") else tolerance(dtype_name, device, backward)
        metrics.update({f"max_rel_error_{n}": e for n, e in errors.items()} if backward else {})
        metrics.update(max_rel_error=max(errors.values()), tolerance=tol)
        if metrics["max_rel_error"] > tol:
            worst = max(errors, key=errors.get)
            raise CaseFailed(f"{entry.id}: max_rel_error {errors[worst]:.3g} of {worst} over the {dtype_name} "
                             f"tolerance {tol:g}", metrics)
        return metrics

    flop = flops.attention_flop(p["batch"], p["heads"], p["seq_len"], p["head_dim"], p["causal"], p["direction"])
    peak = ctx.ceilings.get("matmul_flop_per_s", {}).get("fp8" if entry.options.get("fp8") else dtype_name)

    def derive(median_s: float) -> dict:
        out = {"tflops": flop / median_s / 1e12}
        if peak:  # measured by the calibration suite earlier in this run
            out["frac_of_measured_peak"] = flop / median_s / peak
        return out

    metrics = {
        **({"fp8_format": "float8_e4m3fn q/k/v, one scale per tensor (amax -> 448), quantized outside the timed "
                          "calls; tolerance from scripts/measure_fp8_attention_error.py"} if entry.options.get("fp8") else {}),
        "flop": flop,
        "flop_formula": flops.attention_formula(p["causal"], p["direction"]),
        "input_bytes": sum(t.numel() * t.element_size() for t in (q, k, v)),
    }
    backend = entry.options.get("backend")
    around = (lambda: sdpa_kernel([backend])) if backend is not None else None
    return Workload(fn=fn, metrics=metrics, check=check, derive=derive, teardown=state.clear, around=around,
                    compiled=compiled)
