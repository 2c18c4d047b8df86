"""Precisions and quantized loading: one canonical id per precision, and one way to load a model in it.

Precisions (the ``precision`` registry): ``fp32``, ``fp16``, ``bf16`` (plain casts) and ``int8``
(bitsandbytes LLM.int8, Dettmers et al. 2022), ``nf4`` / ``nf4_dq`` / ``fp4`` (bitsandbytes 4-bit blockwise
quantization; NF4 and double quantization from QLoRA, Dettmers et al. 2023). Quantized precisions go through
transformers' ``BitsAndBytesConfig`` with the quant type and compute dtype always explicit, because
bitsandbytes' own 4-bit default is FP4, not NF4.

Every precision of one preset starts from the same weights: the preset is built once per (preset, seed)
with :func:`bench_lib.suites.models.build`, saved to a per-process temporary folder, and each precision is then
loaded from that folder with ``from_pretrained`` exactly as a user loads a real checkpoint.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from pathlib import Path

import torch

from bench_lib.harness import registry
from bench_lib.suites import models

FLOAT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
QUANT_IDS = ("int8", "nf4", "nf4_dq", "fp4")
# torchao precisions (``pip install effbench[ao]``): quantized in place with ``torchao.quantization.quantize_``
# right after loading in the compute dtype, inside :func:`load_model`, on the same linear layers as bitsandbytes
AO_IDS = ("ao_int8wo", "ao_int8dq", "ao_int4wo", "ao_fp8wo", "ao_fp8dq")
AO_INT4_GROUP_SIZE = 32

# Above this many fp32 bytes the shared checkpoint is stored in bf16 (how large models are published anyway),
# so a 13B preset needs 26 GB of temporary disk, not 52 GB; the record says which (``weights_stored_dtype``).
FP32_STORE_LIMIT_BYTES = 8 * 2**30


def default_compute_dtype(device: torch.device) -> torch.dtype:
    """Compute dtype of quantized layers: bf16 (else fp16) on CUDA, fp32 on CPU (isolates weight error).

    bf16 only where the GPU computes in it (compute capability 8.0+): with emulation allowed, torch reports
    bf16 on a V100 or T4, where it runs as slow fp32 emulation, and the case would time the emulation.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return torch.float32


def bnb_config(precision_id: str, compute_dtype: torch.dtype):
    """The ``BitsAndBytesConfig`` of a quantized precision, every choice explicit.

    int8: LLM.int8 with its published outlier threshold 6.0 (activations are computed in the model dtype,
    which :func:`load_model` sets to ``compute_dtype``). nf4 / nf4_dq / fp4: 4-bit blocks of 64 weights, one
    absmax each; ``nf4_dq`` also quantizes those absmax values to 8 bits (QLoRA's double quantization).
    """
    from transformers import BitsAndBytesConfig

    if precision_id == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)
    if precision_id in ("nf4", "nf4_dq", "fp4"):
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="fp4" if precision_id == "fp4" else "nf4",
            bnb_4bit_use_double_quant=precision_id == "nf4_dq",
            bnb_4bit_compute_dtype=compute_dtype,
            bnb_4bit_quant_storage=torch.uint8,
        )
    raise ValueError(f"{precision_id!r} is not a bitsandbytes precision; quantized ones: {', '.join(QUANT_IDS)}")


# ---------------------------------------------------------------- support, decided once per device
@functools.cache
def _probe_matmul(device_str: str, dtype: torch.dtype) -> str | None:
    """None when a small ``dtype`` matmul runs on the device and agrees with fp32, else the reason."""
    name = {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(32, 32, generator=g)
        want = a @ a
        got = (a.to(device_str, dtype) @ a.to(device_str, dtype)).float().cpu()
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        return f"{name} matmul is not supported on {device_str}: {exc}"
    err = ((got - want).abs().max() / want.abs().max()).item()
    if not err < 0.05:  # bf16 has 8 mantissa bits: ~1e-2 relative error at most here
        return f"{name} matmul on {device_str} is wrong (max relative error {err:.3g})"
    return None


@functools.cache
def _probe_bnb(device_str: str, precision_id: str) -> str | None:
    """None when bitsandbytes quantizes and multiplies on this device, else the reason."""
    missing = registry.needs_module("bitsandbytes", "quant")
    if missing:
        return missing
    try:
        import bitsandbytes as bnb

        device = torch.device(device_str)
        if precision_id == "int8":
            layer = bnb.nn.Linear8bitLt(64, 64, bias=False, has_fp16_weights=False, threshold=6.0)
        else:
            quant_type = "fp4" if precision_id == "fp4" else "nf4"
            layer = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=default_compute_dtype(device),
                                      quant_type=quant_type, compress_statistics=precision_id == "nf4_dq")
        layer = layer.to(device)
        x = torch.randn(2, 64, device=device, dtype=default_compute_dtype(device))
        y = layer(x)
        if not torch.isfinite(y).all():
            return f"bitsandbytes {precision_id} on {device_str} gives non-finite outputs"
    except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not here", with its text
        return f"bitsandbytes {precision_id} does not run on {device_str}: {type(exc).__name__}: {exc}"
    return None


IMPORT_MESSAGES: list[str] = []  # what torchao printed while importing (optional kernels it could not load)


def _import_torchao():
    """torchao, imported with its optional-kernel load messages (``_C_mxfp8``, ``_C_cutlass_90a``) captured.

    The messages are written to file descriptor 2 during import; they are kept in :data:`IMPORT_MESSAGES`.
    An import that fails still raises.
    """
    import os
    import sys
    import warnings

    if "torchao.quantization" in sys.modules:
        return sys.modules["torchao"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import torchao
                import torchao.quantization  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            IMPORT_MESSAGES.extend(tmp.read().decode(errors="replace").splitlines())
    return torchao


def ao_config(precision_id: str):
    """The torchao config object of an ``ao_*`` precision."""
    _import_torchao()
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Float8WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
    )
    from torchao.quantization.granularity import PerGroup

    if precision_id == "ao_int8wo":
        return Int8WeightOnlyConfig()
    if precision_id == "ao_int8dq":
        return Int8DynamicActivationInt8WeightConfig()
    if precision_id == "ao_int4wo":
        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(AO_INT4_GROUP_SIZE))
    if precision_id == "ao_fp8wo":
        return Float8WeightOnlyConfig()
    if precision_id == "ao_fp8dq":
        return Float8DynamicActivationFloat8WeightConfig()
    raise ValueError(f"{precision_id!r} is not a torchao precision; those are: {', '.join(AO_IDS)}")


def ao_info(precision_id: str) -> dict:
    """torchao's version and the config (repr) of an ``ao_*`` precision, for the record."""
    torchao = _import_torchao()
    out = {"torchao_version": torchao.__version__, "ao_config": repr(ao_config(precision_id))}
    if precision_id == "ao_int4wo":
        out["ao_group_size"] = AO_INT4_GROUP_SIZE
    return out


@functools.cache
def _probe_ao(device_str: str, precision_id: str) -> str | None:
    """None when torchao quantizes and runs ``precision_id`` on this device, else the reason."""
    missing = registry.needs_module("torchao", "ao")
    if missing:
        return missing
    device = torch.device(device_str)
    if precision_id == "ao_fp8dq":
        if device.type != "cuda":
            return "torchao dynamic float8 (ao_fp8dq) needs a CUDA GPU of compute capability 8.9+ (Ada/Hopper)"
        cap = torch.cuda.get_device_capability(device)
        if cap < (8, 9):
            return f"torchao dynamic float8 (ao_fp8dq) needs compute capability 8.9+, this GPU has {cap[0]}.{cap[1]}"
    try:
        from torchao.quantization import quantize_

        layer = torch.nn.Sequential(torch.nn.Linear(128, 128, bias=False)).to(device, default_compute_dtype(device))
        quantize_(layer, ao_config(precision_id))
        y = layer(torch.randn(2, 128, device=device, dtype=default_compute_dtype(device)))
        if not torch.isfinite(y).all():
            return f"torchao {precision_id} on {device_str} gives non-finite outputs"
    except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not here", with its text
        return f"torchao {precision_id} does not run on {device_str}: {type(exc).__name__}: {exc}"
    return None


def _support(precision_id: str):
    def support(device: torch.device) -> str | None:
        if precision_id in AO_IDS:
            return _probe_ao(str(device), precision_id)
        if precision_id == "fp32":
            return None
        if precision_id == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16 needs compute capability 8.0+ (Ampere or newer)"
        if precision_id in FLOAT_DTYPES:
            return _probe_matmul(str(device), FLOAT_DTYPES[precision_id])
        return _probe_bnb(str(device), precision_id)

    return support


PRECISIONS = registry.new("precision")
PRECISIONS.register("fp32", "float32 weights and compute (the quality reference)", _support("fp32"), bits=32)
PRECISIONS.register("fp16", "float16 weights and compute", _support("fp16"), bits=16)
PRECISIONS.register("bf16", "bfloat16 weights and compute", _support("bf16"), bits=16)
PRECISIONS.register("int8", "bitsandbytes LLM.int8 (row-wise absmax int8, fp16 outliers)", _support("int8"), bits=8)
PRECISIONS.register("nf4", "bitsandbytes 4-bit NormalFloat, blocks of 64", _support("nf4"), bits=4)
PRECISIONS.register("nf4_dq", "NF4 with double-quantized (8-bit) block scales", _support("nf4_dq"), bits=4)
PRECISIONS.register("fp4", "bitsandbytes 4-bit float, blocks of 64", _support("fp4"), bits=4)
PRECISIONS.register("ao_int8wo", "torchao Int8WeightOnlyConfig (per-row int8 weights)", _support("ao_int8wo"), bits=8)
PRECISIONS.register("ao_int8dq", "torchao Int8DynamicActivationInt8WeightConfig (int8 weights and activations)",
                    _support("ao_int8dq"), bits=8)
PRECISIONS.register("ao_int4wo", f"torchao IntxWeightOnlyConfig int4, groups of {AO_INT4_GROUP_SIZE}",
                    _support("ao_int4wo"), bits=4)
PRECISIONS.register("ao_fp8wo", "torchao Float8WeightOnlyConfig (e4m3 weights)", _support("ao_fp8wo"), bits=8)
PRECISIONS.register("ao_fp8dq", "torchao Float8DynamicActivationFloat8WeightConfig (needs CC 8.9+)",
                    _support("ao_fp8dq"), bits=8)


# ---------------------------------------------------------------- one set of weights per (preset, seed)
_CACHE: dict[tuple, Path] = {}
_cache_root: Path | None = None


def _root() -> Path:
    global _cache_root
    if _cache_root is None:
        _cache_root = Path(tempfile.mkdtemp(prefix="effbench-weights-"))
        atexit.register(shutil.rmtree, _cache_root, True)
    return _cache_root


def stored_dtype(preset: models.ModelPreset) -> torch.dtype:
    """dtype of the shared checkpoint: fp32 unless that exceeds :data:`FP32_STORE_LIMIT_BYTES`."""
    return torch.float32 if preset.param_count() * 4 <= FP32_STORE_LIMIT_BYTES else torch.bfloat16


def checkpoint_dir(preset: models.ModelPreset, seed: int = 0, device: torch.device | str = "cpu",
                   logit_std: float | None = None) -> Path:
    """Folder holding the random weights of ``preset`` under ``seed``, built and saved on first use.

    logit_std: when set, the final norm is rescaled so that next-token logits on a fixed random prompt have
    this standard deviation (random inits give near-uniform distributions, where top-1 agreement is noise).
    Only the largest checkpoint is kept on disk besides small ones.
    """
    key = (preset, seed, torch.device(device).type, logit_std)
    if key in _CACHE and _CACHE[key].exists():
        return _CACHE[key]
    for old_key, old in list(_CACHE.items()):  # keep the disk bounded: drop other large checkpoints
        if old_key[0].param_count() * 2 > 2**30:
            shutil.rmtree(old, ignore_errors=True)
            del _CACHE[old_key]
    tag = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
    path = _root() / f"{preset.name}-seed{seed}-{tag}"
    # built directly in the stored dtype: a 13B preset needs 26 GB on the device, not 52 GB
    model = models.build(preset, torch.device(device), dtype=stored_dtype(preset), seed=seed)
    if logit_std is not None:
        _scale_head(model, preset, logit_std, seed)
    model.save_pretrained(path, max_shard_size="2GB")
    del model
    _CACHE[key] = path
    return path


@torch.no_grad()
def _scale_head(model, preset: models.ModelPreset, logit_std: float, seed: int) -> None:
    """Multiply the final norm's affine weights so logits on a fixed random prompt have std ``logit_std``.

    The final norm, not the output head: GPT-2 ties the head to the input embedding, and scaling that would
    drown the residual stream in embeddings. logits = W_head (g * norm(h) + b), so scaling g and b scales
    the logits and nothing else.
    """
    norm = getattr(model.base_model, "norm", None) or getattr(model.base_model, "ln_f", None)
    if norm is None:
        raise ValueError(f"preset {preset.name}: no final norm (model.norm / transformer.ln_f) to scale")
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, preset.vocab, (2, 32), generator=g).to(model.device)
    std = model(ids).logits.float().std().item()
    for p in norm.parameters():
        p.mul_(logit_std / std)


def load_model(preset: models.ModelPreset | str, precision_id: str, device: torch.device, seed: int = 0,
               compute_dtype: torch.dtype | None = None, attn_implementation: str = "sdpa",
               logit_std: float | None = None):
    """``preset`` (or a checkpoint path / hub id) in ``precision_id`` on ``device``, in eval mode.

    Presets: every precision loads the same random weights (see :func:`checkpoint_dir`). Quantized
    precisions keep non-linear modules and activations in ``compute_dtype`` (default
    :func:`default_compute_dtype`); fp16/bf16 load directly in that dtype.
    """
    device = torch.device(device)
    compute_dtype = compute_dtype or default_compute_dtype(device)
    if precision_id in FLOAT_DTYPES:
        kwargs = models.dtype_kwargs(FLOAT_DTYPES[precision_id])
    elif precision_id in AO_IDS:
        kwargs = models.dtype_kwargs(compute_dtype)
    else:
        kwargs = {**models.dtype_kwargs(compute_dtype), "quantization_config": bnb_config(precision_id, compute_dtype)}
    index = device.index if device.index is not None else (torch.cuda.current_device() if device.type == "cuda" else None)
    kwargs["device_map"] = {"": f"{device.type}:{index}" if index is not None else device.type}
    kwargs["attn_implementation"] = attn_implementation
    if isinstance(preset, str):
        model = models.load_checkpoint(preset, **kwargs)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(checkpoint_dir(preset, seed, device, logit_std), **kwargs)
    if precision_id in AO_IDS:
        _quantize_ao(model, precision_id)
    _avoid_unpackable_cpu_4bit(model)
    return model.eval()


def _quantize_ao(model, precision_id: str) -> None:
    """Quantize the model's quantizable linears (all but the output head, as bitsandbytes) in place."""
    _import_torchao()
    from torchao.quantization import quantize_

    _conv1d_to_linear(model)  # GPT-2's Conv1D is a transposed Linear, which torchao's quantize_ does not match
    targets = {id(m) for _, m in quantizable_linears(model)}
    quantize_(model, ao_config(precision_id), filter_fn=lambda m, _fqn: id(m) in targets)
    left = [n for n, m in quantizable_linears(model) if not type(m.weight).__module__.startswith("torchao")]
    if left:  # a layer torchao skipped would be measured as full precision under a torchao name
        raise RuntimeError(f"torchao {precision_id} left {len(left)} of {len(targets)} linear layers unquantized "
                           f"(first: {left[0]}, {type(model.get_submodule(left[0])).__name__})")


def _conv1d_to_linear(model) -> None:
    """Replace each quantizable transformers ``Conv1D`` (y = x @ W + b, W of shape (in, out)) by the
    ``nn.Linear`` that computes the same (weight W.T), so every quantizer sees the same layers."""
    from transformers.pytorch_utils import Conv1D

    for name, m in quantizable_linears(model):
        if isinstance(m, Conv1D):
            w = m.weight
            lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=m.bias is not None, device=w.device, dtype=w.dtype)
            with torch.no_grad():
                lin.weight.copy_(w.t())
                if m.bias is not None:
                    lin.bias.copy_(m.bias)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, lin)


# bitsandbytes' CPU 4-bit inference kernel (used on CPUs with AVX512-BF16, in eval mode without grad)
# repacks each weight on its first forward and asserts out_features % 32 == 0 and in_features % blocksize == 0
# (bitsandbytes 0.50 functional._convert_weight_packed_for_cpu); other shapes would crash mid-generation.
_CPU_PACK_BLOCK_N = 32


def _packable(module) -> bool:
    qs = module.weight.quant_state
    return module.out_features % _CPU_PACK_BLOCK_N == 0 and module.in_features % qs.blocksize == 0


def _avoid_unpackable_cpu_4bit(model) -> None:
    """Send 4-bit layers the packed CPU kernel cannot take to bitsandbytes' generic dequantize-matmul path."""
    for _, module in quantizable_linears(model):
        if getattr(module, "support_avx512bf16_for_cpu", False) and not _packable(module):
            module.support_avx512bf16_for_cpu = False


def cpu_4bit_kernel(model) -> str | None:
    """Which bitsandbytes CPU 4-bit path the model's layers take: ``packed``, ``generic``, ``mixed``; None if
    the model has no 4-bit layers or is not on CPU."""
    flags = {bool(getattr(m, "support_avx512bf16_for_cpu", False)) for _, m in quantizable_linears(model)
             if getattr(m.weight, "quant_state", None) is not None and m.weight.device.type == "cpu"}
    if not flags:
        return None
    return "mixed" if len(flags) == 2 else ("packed" if flags == {True} else "generic")


# ---------------------------------------------------------------- bytes of the weights as they are stored
def _tensors_of_weight(weight, module=None) -> list[torch.Tensor]:
    """The tensors that hold one weight: the data plus bitsandbytes' quantization state.

    Params4bit: packed 4-bit data, ``quant_state.absmax`` (fp32, one per block of 64; uint8 when double
    quantized), ``code`` (the 16-value NF4/FP4 map), and for double quantization ``offset`` and
    ``state2`` (absmax and 256-value code of the second level). Int8Params: int8 data and ``SCB``, the fp32
    absmax of each output row; after the first forward Linear8bitLt moves ``CB``/``SCB`` to ``module.state``.
    """
    if _is_subclass(weight):
        return _flatten_subclass(weight)
    out = [weight.data]
    qs = getattr(weight, "quant_state", None)
    while qs is not None:
        out += [t for t in (qs.absmax, qs.code, getattr(qs, "offset", None)) if isinstance(t, torch.Tensor)]
        qs = getattr(qs, "state2", None)
    for holder in (weight, getattr(module, "state", None)):
        for name in ("SCB", "CB"):
            t = getattr(holder, name, None)
            if isinstance(t, torch.Tensor):
                out.append(t)
    return out


def _is_subclass(t) -> bool:
    t = getattr(t, "data", t)
    return hasattr(t, "__tensor_flatten__") and type(t) is not torch.Tensor and type(t).__module__.startswith("torchao")


def _flatten_subclass(t) -> list[torch.Tensor]:
    """The plain tensors inside a torchao tensor subclass (data, scales, zero points), recursively."""
    t = getattr(t, "data", t) if not hasattr(t, "__tensor_flatten__") else t
    names, _ = t.__tensor_flatten__()
    out = []
    for name in names:
        inner = getattr(t, name)
        if inner is None:
            continue
        out += _flatten_subclass(inner) if hasattr(inner, "__tensor_flatten__") else [inner]
    return out


def _tensor_bytes(tensors, seen: set) -> int:
    """Bytes of ``tensors``, each storage counted once (Int8Params' ``CB`` is its own ``data``)."""
    total = 0
    for t in tensors:
        key = (t.device, t.untyped_storage().data_ptr())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def quantizable_linears(model) -> list[tuple[str, torch.nn.Module]]:
    """The linear layers a bitsandbytes config quantizes: every Linear/Conv1D but the output head."""
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, Conv1D)) and m is not head]


def linear_weight_footprint(model) -> dict[str, float]:
    """``weight_bytes``, ``linear_params`` and ``bits_per_param`` of the quantizable linear layers.

    Counted from the tensors actually held (quantization state included, biases excluded), so
    bits_per_param = 8 * weight_bytes / linear_params: 32 for fp32, 16 for bf16, 8 + 32/d_in for LLM.int8
    (one fp32 scale per row), 4 + 32/64 for NF4 (one fp32 absmax per 64 weights).
    """
    seen: set = set()
    nbytes = params = 0
    for _, module in quantizable_linears(model):
        w = module.weight
        qs = getattr(w, "quant_state", None)
        params += qs.shape.numel() if qs is not None else w.numel()
        nbytes += _tensor_bytes(_tensors_of_weight(w, module), seen)
    return {"weight_bytes": nbytes, "linear_params": params, "bits_per_param": 8 * nbytes / params}


def model_bytes(model) -> int:
    """Bytes of every parameter and buffer of the model, quantization state included, each storage once."""
    seen: set = set()
    tensors = [t for m in model.modules() for p in m.parameters(recurse=False) for t in _tensors_of_weight(p, m)]
    tensors += list(model.buffers())
    return _tensor_bytes(tensors, seen)
