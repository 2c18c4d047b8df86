"""``effbench plan``: predicted fine-tuning memory, and which catalog GPUs it fits with what headroom.

    effbench plan --model llama-7b --method qlora --seq 512 --batch 1 --checkpointing
    effbench plan --model my_config.json --method lora --rank 16 --targets all_linear --gpu "NVIDIA L4"
    effbench plan --model llama-7m --method full --calibrate results/cpu/run.json --format json
    effbench plan --model llama-65b --method qlora --strategy fsdp --gpus 8 --checkpointing

``--strategy ddp|fsdp --gpus N`` predicts memory PER GPU of data-parallel training over N GPUs, ``--batch`` being
the per-GPU batch (:mod:`bench_lib.planner.sharding`: DDP replicates everything and adds its gradient buckets;
FSDP2 shards weights, gradients and optimizer state 1/N and all-gathers a block at a time; activations are
never sharded). A GPU fits when one of them holds the per-GPU total.

The memory model is :mod:`bench_lib.planner.footprint` (static parts exact, activations counted per token and scaled
by a coefficient); ``--calibrate RUN...`` fits that coefficient per method on measured fine-tune cases
(:mod:`bench_lib.planner.plan_calibration`) and prints it with predicted against measured for every case.

On a GPU the process needs more than its tensors: the CUDA context and library workspaces
(``CUDA_CONTEXT_BYTES``, a fixed 1 GiB) and the caching allocator's rounding and fragmentation
(``ALLOCATOR_SLACK``, 5% of the tensor peak). With CUDA runs given to ``--calibrate`` the measured median of
NVML-used minus torch-allocated peaks replaces both. A GPU "fits" when the total is at most its memory less
``DRIVER_RESERVE`` (2%: the driver shows slightly less than the nominal capacity, e.g. 140.4 of 141 GiB).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from bench_lib.harness import hardware
from bench_lib.harness.units import format_bytes, parse_bytes
from bench_lib.planner import footprint, sharding
from bench_lib.planner import plan_calibration as calib
from bench_lib.suites import models

CUDA_CONTEXT_BYTES = 2**30
ALLOCATOR_SLACK = 0.05
DRIVER_RESERVE = 0.02


# a model config's sizes: whole numbers from 1 to this (2**31: beyond any real model, within every formula)
MAX_SIZE = 2**31
_PRESET_SIZES = ("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab", "max_positions")


def load_model(name_or_path: str) -> models.ModelPreset:
    """A preset name, a JSON file of :class:`ModelPreset` fields, or a transformers ``config.json`` (llama/gpt2).

    Raises ``ValueError`` saying which file and field is wrong: every size must be a whole number from 1 to
    :data:`MAX_SIZE` (a negative width once planned "1.92 B params ... fits NVIDIA T4")."""
    if name_or_path in models.PRESETS:
        return models.PRESETS[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"--model {name_or_path!r} is neither a preset ({', '.join(models.PRESETS)}) nor a file")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(f"--model {path}: nested too deeply to be a model config") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"--model {path}: not a JSON model config ({exc})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"--model {path}: a model config is a JSON object, not {type(cfg).__name__}")
    fields_ = _preset_fields(path, cfg)
    for key in _PRESET_SIZES:
        value = fields_.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
            raise ValueError(f"--model {path}: {key} = {repr(value)[:40]} must be a whole number from 1 to {MAX_SIZE}")
    if not isinstance(fields_.get("name"), str) or not isinstance(fields_.get("tie_embeddings", False), bool):
        raise ValueError(f"--model {path}: 'name' must be text and 'tie_embeddings' true or false")
    try:
        return models.ModelPreset(**fields_)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--model {path}: {exc}") from None


def _preset_fields(path: Path, cfg: dict) -> dict:
    """:class:`ModelPreset` keyword arguments from a preset JSON or a transformers config (not yet checked)."""
    name = cfg.get("name") if isinstance(cfg.get("name"), str) else path.stem
    if "family" in cfg:
        known = {f.name for f in fields(models.ModelPreset)}
        missing = [f.name for f in fields(models.ModelPreset) if f.default is MISSING and f.name not in cfg]
        if missing:
            raise ValueError(f"--model {path}: missing {', '.join(missing)}")
        return {k: v for k, v in cfg.items() if k in known}
    kind = cfg.get("model_type")
    try:
        if kind in ("llama", "mistral"):
            heads = cfg["num_attention_heads"]
            return {"name": name, "family": "llama", "hidden": cfg["hidden_size"], "layers": cfg["num_hidden_layers"],
                    "heads": heads, "kv_heads": cfg.get("num_key_value_heads") or heads,
                    "intermediate": cfg["intermediate_size"], "vocab": cfg["vocab_size"],
                    "max_positions": cfg.get("max_position_embeddings", 2048),
                    "tie_embeddings": bool(cfg.get("tie_word_embeddings", False))}
        if kind == "gpt2":
            d = cfg["n_embd"]
            inner = cfg.get("n_inner") or (4 * d if isinstance(d, int) else d)
            return {"name": name, "family": "gpt2", "hidden": d, "layers": cfg["n_layer"], "heads": cfg["n_head"],
                    "kv_heads": cfg["n_head"], "intermediate": inner, "vocab": cfg["vocab_size"],
                    "max_positions": cfg.get("n_positions", 1024), "tie_embeddings": True}
    except KeyError as exc:
        raise ValueError(f"--model {path}: a {kind} config.json needs {exc.args[0]!r}") from None
    raise ValueError(f"{path}: model_type {str(kind)[:40]!r} is not supported (llama, mistral, gpt2), and no 'family' field")


def overhead_bytes(fp: footprint.Footprint, device_type: str, measured_overhead: float | None) -> float:
    """Device memory beyond the tensors (see the module docstring); 0 on CPU."""
    if device_type != "cuda":
        return 0.0
    if measured_overhead is not None:
        return measured_overhead
    return CUDA_CONTEXT_BYTES + ALLOCATOR_SLACK * fp.peak_bytes


def gpu_table(total: float, specs: list[hardware.GpuSpec]) -> list[dict]:
    """Every catalog GPU with whether ``total`` bytes fit and the headroom left (negative: short by)."""
    rows = []
    for s in sorted(specs, key=lambda s: (s.memory_bytes, s.id)):
        usable = s.memory_bytes * (1 - DRIVER_RESERVE)
        rows.append({"id": s.id, "name": s.name, "memory_bytes": s.memory_bytes, "fits": total <= usable,
                     "headroom_bytes": usable - total, "headroom_frac": (usable - total) / s.memory_bytes,
                     "price_per_hour_usd": s.price_per_hour_usd})
    return rows


def make_plan(args) -> dict:
    """Everything ``effbench plan`` shows, as one JSON-able dict."""
    preset = load_model(args.model)
    setup = footprint.Setup(args.method, seq=args.seq, batch=args.batch, rank=args.rank, targets=args.targets,
                            checkpointing=args.checkpointing, base_dtype=args.base_dtype, quant=args.quant,
                            attention=args.attention, device_type=args.device)
    par = sharding.Parallel(getattr(args, "strategy", "single"), getattr(args, "gpus", 1),  # callers' Namespaces
                            getattr(args, "gradient_as_bucket_view", False))
    records = [r for path in (args.calibrate or []) for r in calib.read_records(path)]
    coefficients = calib.calibrate(records) if records else {}
    k = coefficients.get(args.method, {}).get("coefficient", 1.0)
    fp = sharding.predict(preset, setup, par, k)
    extra = overhead_bytes(fp, args.device, calib.cuda_overhead(records))
    total = fp.peak_bytes + extra
    specs = hardware.catalog(args.prices)
    if args.gpu:
        spec = hardware.find(args.gpu, specs)
        if spec is None:
            raise ValueError(f"--gpu {args.gpu!r} is no catalog id or known device name")
        specs = [spec]
    budget = parse_bytes(args.memory_budget) if args.memory_budget else None
    return {
        "model": asdict(preset), "setup": asdict(setup), "parallel": asdict(par), "per_gpu": True,
        "total_params": fp.total_params, "trainable_params": fp.trainable_params,
        "components": {  # bytes on each GPU
            "weights_bytes": fp.weights_bytes, "gradients_bytes": fp.gradients_bytes,
            "optimizer_state_bytes": fp.optimizer_state_bytes, "all_gather_bytes": fp.gather_bytes,
            "ddp_buckets_bytes": fp.bucket_bytes, "activation_bytes": fp.activation_bytes,
            "loss_buffers_bytes": fp.loss_buffers_bytes, "optimizer_temp_bytes": fp.optimizer_temp_bytes,
            "autocast_copies_bytes": fp.autocast_copies_bytes, "overhead_bytes": extra,
        },
        "static_bytes_per_param": (fp.weights_bytes + fp.gradients_bytes + fp.optimizer_state_bytes
                                   + fp.bucket_bytes) / fp.total_params,
        "phases": fp.phases, "peak_phase": fp.peak_phase,
        "tensor_peak_bytes": fp.peak_bytes, "step_added_bytes": fp.step_added_bytes, "peak_bytes": total,
        "activation_coefficient": k, "calibration": coefficients,
        "measured_vs_predicted": calib.compare(records, coefficients) if records else [],
        "budget_bytes": budget, "fits_budget": None if budget is None else total <= budget,
        "gpus": gpu_table(total, specs),
    }


_PHASES = {"backward": "activations + loss buffers (+ the unsharded root and a block) at the start of backward",
           "prefetch": "activations + two all-gathered blocks in a block's backward",
           "reduce": "root's unsharded parameters and gradients at the end of backward",
           "optimizer": "gradients + AdamW temporaries in the optimizer step",
           "recompute": "layer inputs + one recomputed layer + gradients"}
_NOTES = {
    "weights_bytes": "resident", "gradients_bytes": "fp32, 4 B/trainable param",
    "optimizer_state_bytes": "AdamW exp_avg + exp_avg_sq, 8 B/trainable param",
    "activation_bytes": "saved for backward", "loss_buffers_bytes": "fp32 grads of log-probs and logits",
    "optimizer_temp_bytes": "AdamW temporaries", "autocast_copies_bytes": "bf16 weight copies under autocast",
    "all_gather_bytes": "fsdp: unsharded root + 2 blocks, in backward",
    "ddp_buckets_bytes": "ddp: gradient buckets, resident",
    "overhead_bytes": "baseline: CUDA context, workspaces, allocator slack",
}


def render_text(plan: dict) -> str:
    s, m = plan["setup"], plan["model"]
    lines = [
        f"{m['name']}: {plan['total_params'] / 1e9:.3g} B params, {s['method']}"
        + (f" (rank {s['rank']}, targets {s['targets']}, {plan['trainable_params']:,} trainable)" if s["method"] in ("lora", "qlora") else "")
        + f", seq {s['seq']} x batch {s['batch']}, {'with' if s['checkpointing'] else 'no'} checkpointing, {s['device_type']}",
    ]
    par = plan["parallel"]
    if par["strategy"] != "single":
        lines.append(f"  {par['strategy']} over {par['world_size']} GPUs (batch {s['batch']} per GPU), "
                     f"per GPU:" + (" gradients are views into DDP's buckets" if par["gradient_as_bucket_view"] else ""))
    for key, value in plan["components"].items():
        if value:
            lines.append(f"  {key.removesuffix('_bytes').replace('_', ' '):<18} {format_bytes(value):>12}  {_NOTES[key]}")
    buckets = " + DDP buckets" if plan["components"]["ddp_buckets_bytes"] else ""
    lines.append(f"  weights + gradients + optimizer state{buckets} = {plan['static_bytes_per_param']:.2f} B/param"
                 + (" (per GPU)" if plan["parallel"]["strategy"] != "single" else ""))
    lines.append(f"  activation coefficient {plan['activation_coefficient']:.3f}"
                 + (" (calibrated)" if plan["calibration"] else " (uncalibrated)"))
    lines.append(f"  predicted peak {format_bytes(plan['peak_bytes'])} ({plan['peak_bytes'] / 1e9:.2f} GB); "
                 f"peak phase: {_PHASES[plan['peak_phase']]}")
    if plan["budget_bytes"]:
        lines.append(f"  budget {format_bytes(plan['budget_bytes'])}: {'fits' if plan['fits_budget'] else 'does NOT fit'}")
    for method, c in plan["calibration"].items():
        lines.append(f"  calibration {method}: k = {c['coefficient']:.3f} from {c['cases']} case(s) ({c['source']})"
                     + (f", skipped {len(c['skipped'])}" if c["skipped"] else ""))
    single = [r for r in plan["measured_vs_predicted"] if r["strategy"] == "single"]
    for row in single:
        lines.append(f"    {row['id']}: predicted {format_bytes(row['predicted_bytes'])}, measured "
                     f"{format_bytes(row['measured_bytes'])} ({row['view']}), {row['rel_error']:+.1%}")
    lines += distributed_table([r for r in plan["measured_vs_predicted"] if r["strategy"] != "single"])
    who = f"one of {plan['parallel']['world_size']} GPUs" if plan["parallel"]["strategy"] != "single" else "the GPU"
    lines.append(f"GPUs (fits: {who} holds the per-GPU total; {DRIVER_RESERVE:.0%} of memory reserved for the driver):")
    for g in plan["gpus"]:
        verdict = "fits" if g["fits"] else "no  "
        lines.append(f"  {verdict} {g['name']:<30} {format_bytes(g['memory_bytes']):>11}  headroom "
                     f"{format_bytes(g['headroom_bytes']):>11} ({g['headroom_frac']:+.0%})")
    return "\n".join(lines)


def distributed_table(rows: list[dict]) -> list[str]:
    """Predicted against measured per GPU (the largest rank) for distributed cases, with the ratio."""
    if not rows:
        return []
    out = ["  distributed cases, predicted against measured per GPU (the largest rank):",
           f"    {'case':<40} {'view':<34} {'predicted':>11} {'measured':>11} {'ratio':>6}"]
    for r in rows:
        out.append(f"    {str(r['id'])[:40]:<40} {r['view']:<34} {format_bytes(r['predicted_bytes']):>11} "
                   f"{format_bytes(r['measured_bytes']):>11} {r['predicted_bytes'] / r['measured_bytes']:6.3f}")
        for prefix, view in (("process", "cpu_peak_rss_bytes"), ("live", "cpu_peak_malloc_bytes")):
            if f"{prefix}_rel_error" in r:
                out.append(f"    {'':<40} {view + ' (+baseline)':<34} "
                           f"{format_bytes(r[f'{prefix}_predicted_bytes']):>11} "
                           f"{format_bytes(r[f'{prefix}_measured_bytes']):>11} "
                           f"{r[f'{prefix}_predicted_bytes'] / r[f'{prefix}_measured_bytes']:6.3f}")
    return out


def _gpus(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus wants a whole number of GPUs, not {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="preset name, ModelPreset JSON, or a transformers config.json")
    p.add_argument("--method", required=True, choices=footprint.METHODS)
    p.add_argument("--rank", type=int, default=8, help="LoRA rank (higher: more trainable params and memory)")
    p.add_argument("--targets", default="attn", help="attn | all_linear | comma-separated module names")
    p.add_argument("--seq", type=int, default=512, help="tokens per sequence (activations grow linearly)")
    p.add_argument("--batch", type=int, default=1, help="sequences per step (activations grow linearly)")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing: keep layer inputs only")
    p.add_argument("--base-dtype", choices=sorted(footprint.DTYPE_BYTES), default=None,
                   help="frozen base dtype (default: fp32 for lora, bf16 for qlora's non-quantized parts)")
    p.add_argument("--quant", choices=sorted(footprint.QUANT_BITS), default="nf4", help="qlora: nf4 (4.5 bits) or nf4_dq")
    p.add_argument("--attention", choices=("sdpa", "eager"), default="sdpa")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="where the step runs (default cuda)")
    p.add_argument("--strategy", choices=sharding.STRATEGIES, default="single",
                   help="single GPU, ddp (replicated, + gradient buckets) or fsdp (FSDP2: sharded 1/N); memory is per GPU")
    p.add_argument("--gpus", type=_gpus, default=1, metavar="N",
                   help="GPUs the step is spread over (ddp/fsdp; more GPUs: less memory per GPU with fsdp only)")
    p.add_argument("--gradient-as-bucket-view", action="store_true",
                   help="ddp: gradients are views into DDP's buckets (saves one copy of the gradients)")
    p.add_argument("--gpu", help="show only this GPU (catalog id or device name)")
    p.add_argument("--memory-budget", help="also check against this size, e.g. 24GiB")
    p.add_argument("--calibrate", nargs="+", metavar="RUN", help="run files (.json or .jsonl) to calibrate on")
    p.add_argument("--prices", help=f"price override JSON (default: ${hardware.PRICES_ENV})")
    p.add_argument("--format", choices=("text", "json"), default="text")


def main(args) -> int:
    try:
        plan = make_plan(args)
    except (ValueError, OverflowError, OSError, hardware.CatalogError) as exc:
        print(f"effbench plan: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(plan, indent=1, default=str) if args.format == "json" else render_text(plan))
    return 0
