"""Profiles and grids: every size a run measures lives here, as data.

A profile sets how hard each case is measured (warmup, rounds, time limits); each suite's grid function
returns the cases for (profile, device type). CPU grids must keep the budgets: ``smoke`` under 3 minutes and
``quick`` under 10 minutes for all suites together on a 2-core machine. GPU grids reach the sizes that matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench_lib.harness.workload import Case

PROFILE_CHOICES = ("smoke", "quick", "full")


@dataclass(frozen=True)
class Profile:
    """How each case is measured.

    warmup_rounds: untimed calls before timing (more: fewer cold-cache/compile effects in the samples).
    min_rounds:    timed calls even for slow cases (more: tighter median and IQR, compare gets more power).
    max_rounds:    cap for fast cases.
    target_time_s: rounds are sized so timing takes about this long (more: less noise, longer runs).
    case_timeout_s: a case still running after this becomes ``timeout``.
    sample_min_s:  a call shorter than this is timed in blocks of calls lasting at least this long per
                   sample (more: per-sample overhead such as dispatch and sync shrinks further, fewer samples).
    l2_flush_bytes: zero a buffer this large before every timed call (CUDA), evicting L2 as triton's
                   do_bench does; 0: off (warm-cache numbers, as in a model where the data was just written).
    energy_window_s: the untimed energy window repeats the call until it lasts this long (CUDA with NVML;
                   more: NVML's 20-100 ms counter updates weigh less); 0: no energy window.
    prepare_timeout_s: limit of each preparation the session does before the cases (training the weights
                   the quality cases share; about 90 s for the quick profile on 2 CPU cores), apart from
                   every case's limit.
    """

    name: str
    warmup_rounds: int
    min_rounds: int
    max_rounds: int
    target_time_s: float
    case_timeout_s: float
    sample_min_s: float = 1e-3
    l2_flush_bytes: int = 0
    energy_window_s: float = 1.0
    prepare_timeout_s: float = 1800.0

    def __post_init__(self):
        if not (self.warmup_rounds >= 0 and 1 <= self.min_rounds <= self.max_rounds):
            raise ValueError(f"profile {self.name}: need warmup >= 0 and 1 <= min_rounds <= max_rounds")
        if self.target_time_s <= 0 or self.case_timeout_s <= 0 or self.prepare_timeout_s <= 0:
            raise ValueError(f"profile {self.name}: times must be positive")
        if self.sample_min_s < 0 or self.l2_flush_bytes < 0 or self.energy_window_s < 0:
            raise ValueError(f"profile {self.name}: sample_min_s, l2_flush_bytes and energy_window_s must be >= 0")


PROFILES = {
    # every case body once at tiny sizes: proves the suite runs, measures nothing worth keeping
    "smoke": Profile("smoke", warmup_rounds=0, min_rounds=1, max_rounds=1, target_time_s=0.01, case_timeout_s=60,
                     energy_window_s=0.0, prepare_timeout_s=300),
    "quick": Profile("quick", warmup_rounds=1, min_rounds=5, max_rounds=50, target_time_s=0.3, case_timeout_s=240,
                     sample_min_s=1e-3, energy_window_s=1.0),
    # nightly: enough samples for compare's significance test to have power
    "full": Profile("full", warmup_rounds=3, min_rounds=15, max_rounds=200, target_time_s=2.0, case_timeout_s=900,
                    sample_min_s=1e-3, energy_window_s=1.0, prepare_timeout_s=3600),
}


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"--profile must be one of {', '.join(PROFILE_CHOICES)}, not {name!r}") from None


def cases(suite: str, profile: str, device_type: str) -> list[Case]:
    """The grid of ``suite`` for this profile and device type ("cpu" or "cuda")."""
    try:
        grid = GRIDS[suite]
    except KeyError:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(GRIDS)}") from None
    built = grid(get(profile).name, device_type)
    ids = [c.id for c in built]
    if len(ids) != len(set(ids)):
        raise ValueError(f"suite {suite} grid has duplicate case ids")
    return built


def checkpoint_label(path: str) -> str:
    """The model name the precision cases of a ``--model`` checkpoint carry: ``ckpt-`` and its folder or hub
    name (``/models/Llama-2-7b-hf`` and ``meta-llama/Llama-2-7b-hf`` -> ``ckpt-llama-2-7b-hf``)."""
    name = re.sub(r"[^a-z0-9]+", "-", path.rstrip("/").split("/")[-1].lower()).strip("-")
    return f"ckpt-{name or 'model'}"


def precision_cases_for_checkpoint(grid: list[Case], path: str) -> list[Case]:
    """With ``--model``, the precision grid's ladder of presets becomes the one checkpoint: the first preset's
    batches in every precision of the grid, named after the checkpoint so results never carry a preset's name."""
    if not grid:
        return grid
    first, label = grid[0].params["model"], checkpoint_label(path)
    out = [Case(c.suite, label + c.id[len(first):], {**c.params, "model": label})
           for c in grid if c.params["model"] == first]
    # a precision the first preset lacks (CPU runs torchao only on the trained weights, for time) is still
    # measured on the user's checkpoint: at the first preset's batches, with its prompt and new tokens
    have = {c.params["precision"] for c in out}
    template = [c for c in out if c.params["precision"] == out[0].params["precision"] and "compile" not in c.params]
    for prec in dict.fromkeys(c.params["precision"] for c in grid):
        if prec not in have:
            out += [Case(t.suite, t.id.replace(f"-{t.params['precision']}-", f"-{prec}-", 1),
                         {**t.params, "precision": prec}) for t in template]
    return out


# ---------------------------------------------------------------- calibration
def calibration_grid(profile: str, device_type: str) -> list[Case]:
    # matmul size: large enough to reach the compute ceiling, small enough for the profile's budget
    n = {"smoke": 256, "quick": 1024, "full": 2048}[profile]
    if device_type == "cuda":
        n = {"smoke": 1024, "quick": 8192, "full": 8192}[profile]
        dtypes = ["fp32", "tf32", "fp16", "bf16", "fp8"]  # fp8: unsupported with its reason below sm89
    else:
        dtypes = ["fp32", "bf16"]
    # copy size: well beyond any cache so it measures device memory, not L2/L3
    copy_mib = {"smoke": 16, "quick": 256, "full": 512}[profile]
    if device_type == "cuda":
        copy_mib = {"smoke": 64, "quick": 1024, "full": 2048}[profile]
    out = [Case("calibration", f"matmul-{dt}-n{n}", {"kind": "matmul", "dtype": dt, "n": n}) for dt in dtypes]
    out.append(Case("calibration", f"copy-{copy_mib}MiB", {"kind": "copy", "mib": copy_mib}))
    return out


# ---------------------------------------------------------------- attention (issue: attention suite)
def attention_grid(profile: str, device_type: str) -> list[Case]:
    """Attention kernels: a sequence-length sweep at one shape (time and memory vs s per impl), plus
    head_dim / GQA / non-causal / dtype variations at one length. Not a cartesian product on CPU.

    Batch is ``tokens // seq_len`` so every point of a sweep holds the same number of tokens (as
    flash-attention's benchmark_flash_attention.py does); on GPU heads * head_dim is kept at 2048 as there.
    Every impl is listed at every point: where one cannot run, the case is ``unsupported`` with the reason.
    """
    impls = ["eager", "sdpa_math", "sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "flash_attn", "flash_attn3"]
    points = []  # (direction, dtype, seq_len, tokens, heads, kv_heads, head_dim, causal)

    def sweep(directions, dtypes, lengths, tokens, heads, head_dims=(64,), causals=(True,), kv_heads=None):
        for direction in directions:
            for dtype in dtypes:
                for d in head_dims:
                    h = heads if isinstance(heads, int) else heads[d]
                    for causal in causals:
                        points.extend((direction, dtype, s, tokens, h, kv_heads or h, d, causal) for s in lengths)

    if device_type == "cpu":
        if profile == "smoke":  # every impl, both directions and dtypes, GQA and d=128 once, at tiny size
            sweep(["fwd", "fwd_bwd"], ["fp32", "bf16"], [128], tokens=256, heads=2)
            sweep(["fwd_bwd"], ["bf16"], [128], tokens=256, heads=4, kv_heads=2)
            sweep(["fwd"], ["fp32"], [128], tokens=256, heads=2, head_dims=(128,), causals=(False,))
        else:  # quick and full: ~2 minutes of the CPU quick budget on 2 cores
            lengths = [256, 512, 1024, 2048, 4096] if profile == "quick" else [256, 512, 1024, 2048, 4096, 8192]
            # scaling with s: fwd to the longest length, fwd_bwd (3.5x the FLOPs, more saved memory) to 2048
            sweep(["fwd"], ["fp32"], lengths, tokens=4096, heads=2)
            sweep(["fwd_bwd"], ["fp32"], [s for s in lengths if s <= 2048], tokens=4096, heads=2)
            # variations at s = 1024 against the sweep's fp32 causal d=64 point there
            sweep(["fwd", "fwd_bwd"], ["bf16"], [1024], tokens=4096, heads=2)
            sweep(["fwd"], ["fp32"], [1024], tokens=4096, heads=2, head_dims=(128,))
            sweep(["fwd"], ["fp32"], [1024], tokens=4096, heads=2, causals=(False,))
            # GQA: 4 query heads on 2 KV heads (two of each, so a wrong head mapping cannot pass the check)
            sweep(["fwd_bwd"], ["fp32"], [1024], tokens=4096, heads=4, kv_heads=2)
    else:
        heads = {64: 32, 128: 16}  # heads * head_dim = 2048, as in flash-attention's benchmark
        if profile == "smoke":
            sweep(["fwd", "fwd_bwd"], ["bf16"], [1024], tokens=4096, heads=heads[128], head_dims=(128,))
        elif profile == "quick":  # ~1.5 minutes on an H200
            sweep(["fwd", "fwd_bwd"], ["bf16"], [1024, 4096, 16384], tokens=16384, heads=heads, head_dims=(128,))
            sweep(["fwd"], ["fp16"], [4096], tokens=16384, heads=heads, head_dims=(128,))
            sweep(["fwd"], ["bf16"], [4096], tokens=16384, heads=heads, head_dims=(64,))
            sweep(["fwd"], ["bf16"], [4096], tokens=16384, heads=heads, head_dims=(128,), causals=(False,))
            sweep(["fwd"], ["bf16"], [4096], tokens=16384, heads=16, head_dims=(128,), kv_heads=4)
        else:  # nightly: eager stays in until it runs out of memory (an ``oom`` outcome, the sweep goes on)
            lengths = [512, 1024, 2048, 4096, 8192, 16384, 32768]
            both = ["fwd", "fwd_bwd"]
            sweep(both, ["bf16"], lengths, tokens=32768, heads=heads, head_dims=(64, 128), causals=(True, False))
            sweep(both, ["fp16"], lengths, tokens=32768, heads=heads, head_dims=(128,))
            sweep(both, ["bf16"], lengths, tokens=32768, heads=16, head_dims=(128,), kv_heads=4)

    out = []
    for direction, dtype, s, tokens, h, kv, d, causal in points:
        b = max(1, tokens // s)
        # FA3's FP8 forward: on the bf16 forward points (e4m3 inputs quantized from the same bf16 ones)
        for impl in impls + (["flash_attn3_fp8"] if (direction, dtype) == ("fwd", "bf16") else []):
            params = {"impl": impl, "direction": direction, "dtype": dtype, "seq_len": s, "batch": b,
                      "heads": h, "kv_heads": kv, "head_dim": d, "causal": causal}
            kv_part = f"-kv{kv}" if kv != h else ""
            case_id = f"{impl}-{direction}-{dtype}-s{s}-b{b}-h{h}{kv_part}-d{d}-{'causal' if causal else 'noncausal'}"
            out.append(Case("attention", case_id, params))
    # torch.compile axis (issue 17): a few points per impl and direction, against the eager case of the same id
    # without "-compiled"; compiling costs seconds to minutes on CPU, so only one size there
    if device_type == "cpu":
        # compiling costs 1-40 s per case on 2 cores: quick compiles two points (eager fwd, where inductor
        # fuses the materialized softmax, and sdpa_flash fwd_bwd); full adds sdpa_math and both directions
        compiled_impls = ["eager", "sdpa_math", "sdpa_flash"]
        sizes = {"smoke": [("fwd", 128, 256)], "quick": [("fwd", 1024, 4096), ("fwd_bwd", 1024, 4096)]}
        compiled_points = [(d, "fp32", s, t) for d, s, t in sizes.get(profile, sizes["quick"])]
        heads_kv_d = (2, 2, 64)
        if profile == "quick":
            compiled_impls = {"fwd": ["eager"], "fwd_bwd": ["sdpa_flash"]}
    else:
        compiled_impls = ["eager", "sdpa_math", "sdpa_flash", "sdpa_efficient", "sdpa_cudnn"]
        lengths = {"smoke": [1024], "quick": [1024, 4096]}.get(profile, [1024, 4096, 16384])
        compiled_points = [(d, "bf16", s, 16384) for d in ("fwd", "fwd_bwd") for s in lengths]
        heads_kv_d = (16, 16, 128)
    if profile == "smoke" and device_type == "cpu":
        compiled_impls = ["sdpa_flash"]  # the compiled body once; eager's compile alone took 30 s here
    h, kv, d = heads_kv_d
    for direction, dtype, s, tokens in compiled_points:
        b = max(1, tokens // s)
        impls = compiled_impls[direction] if isinstance(compiled_impls, dict) else compiled_impls
        for impl in impls:
            params = {"impl": impl, "direction": direction, "dtype": dtype, "seq_len": s, "batch": b,
                      "heads": h, "kv_heads": kv, "head_dim": d, "causal": True, "compile": "compiled"}
            out.append(Case("attention", f"{impl}-{direction}-{dtype}-s{s}-b{b}-h{h}-d{d}-causal-compiled", params))
    return out


# ---------------------------------------------------------------- precision (issue: precision suite)
def precision_grid(profile: str, device_type: str) -> list[Case]:
    # (preset, batch sizes) per size; every size runs every precision, fp32 first so the quality reference
    # comes from the fp32 case's own model. More/larger sizes: more memory and time, better size scaling.
    # new_tokens is the same for every precision of a size (min = max), so tokens/s compare like for like.
    if profile == "smoke":  # tiny shapes; llama-tiny also exercises bitsandbytes' generic CPU 4-bit path
        sizes, prompt_tokens, new_tokens = [("llama-tiny", [1]), ("gpt2-tiny", [2])], 8, 8
    elif device_type == "cuda" and profile == "quick":  # ~1.5 min on an H200, shared checkpoint built on GPU
        sizes, prompt_tokens, new_tokens = [("llama-1b", [1, 8])], 32, 16
    elif device_type == "cuda":  # full: the tutorial's 7B/13B memory claims; 13B fp32 (52 GB) fits 80 GB+
        sizes = [("llama-1b", [1, 16]), ("llama-7b", [1, 16]), ("llama-13b", [1, 16])]
        prompt_tokens, new_tokens = 128, 64
    elif profile == "quick":  # 2-core CPU: ~2.5 min; bitsandbytes int8 decode is the slowest here
        sizes, prompt_tokens, new_tokens = [("llama-7m", [1, 4]), ("llama-34m", [1, 4])], 16, 16
    else:  # CPU full: adds a ~134M Llama and distilgpt2, the tutorial's model
        sizes = [("llama-7m", [1, 4]), ("llama-34m", [1, 4]), ("llama-134m", [1, 4]), ("distilgpt2", [1, 4])]
        prompt_tokens, new_tokens = 32, 32
    precisions = ["fp32", "fp16", "bf16", "int8", "nf4", "nf4_dq", "fp4"]
    # torchao precisions: on GPU in every size; on CPU only on the trained weights (quality, ~5 cases), not smoke
    ao = [] if profile == "smoke" else ["ao_int8wo", "ao_int8dq", "ao_int4wo", "ao_fp8wo", "ao_fp8dq"]
    random_weights = [
        Case("precision", f"{model}-{prec}-b{batch}-p{prompt_tokens}-n{new_tokens}",
             {"model": model, "precision": prec, "batch": batch, "prompt_tokens": prompt_tokens,
              "new_tokens": new_tokens})
        for model, batches in sizes
        for batch in batches
        for prec in precisions + (ao if device_type == "cuda" else [])
    ]
    # torch.compile'd decode (transformers' static KV cache + CompileConfig), beside the eager case of the same
    # id: ~20 s of compiling per case on 2 CPU cores, so CPU quick has one point; bitsandbytes' quantizers are
    # not compileable in transformers (recorded unsupported with that reason on GPU)
    if profile != "smoke":
        first_model, first_batches = sizes[0]
        if device_type == "cpu":
            points = [(first_model, "fp32", 1)] + ([(first_model, "fp32", first_batches[-1]),
                                                    (first_model, "ao_int8wo", 1)] if profile == "full" else [])
        else:
            points = [(m, prec, b) for m, batches in sizes[:2] for b in batches for prec in ("bf16", "ao_int8wo")]
            points += [(first_model, "nf4", 1)]
        random_weights += [
            Case("precision", f"{m}-{prec}-b{b}-p{prompt_tokens}-n{new_tokens}-compiled",
                 {"model": m, "precision": prec, "batch": b, "prompt_tokens": prompt_tokens,
                  "new_tokens": new_tokens, "compile": "compiled"}) for m, prec, b in points]
    # quality on trained weights: effbench's own capitals model (the convergence config of this profile, so
    # both suites share one cached pre-training), every precision, batch 1; prompt + new tokens fit its seq
    config = TRAINED_CONFIG["smoke" if profile == "smoke" else "standard"]
    p, n = (8, 8) if profile == "smoke" else (16, 16)
    trained = [Case("precision", f"trained-gpt2-{prec}-b1-p{p}-n{n}",
                    {"model": "trained-gpt2", "precision": prec, "batch": 1, "prompt_tokens": p, "new_tokens": n,
                     **config})
               for prec in precisions + ao]
    return random_weights + trained  # random first: --model turns the first preset's cases into the checkpoint


# bench_lib.suites.convergence.Config's fields per profile family: the trained model's size and schedule
# (more pretrain_steps: the model knows more capitals; more finetune_steps: lower final loss for all,
# smaller gaps between ranks). The smoke one trains in about a second.
TRAINED_CONFIG = {
    "standard": {"pretrain_steps": 360, "finetune_steps": 60, "seed": 0},
    "smoke": {"hidden": 32, "layers": 1, "heads": 2, "vocab": 384, "seq": 32, "pretrain_sentences": 2000,
              "pretrain_steps": 20, "pretrain_batch": 8, "finetune_steps": 10, "finetune_batch": 8},
}


# ---------------------------------------------------------------- finetune (issue: fine-tune suite)
def finetune_grid(profile: str, device_type: str) -> list[Case]:
    # Cost cases: one optimizer step per method on a fixed batch (batch x seq per size, recorded). Higher
    # rank: more trainable parameters and adapter memory; all_linear: adapters on the MLP too (more of both);
    # checkpointing: less activation memory for ~one extra forward; eager: materialized s x s attention
    # scores (more activation memory than sdpa). Convergence cases: end-to-end fine-tunes of a small
    # pre-trained GPT-2 (bench_lib.suites.convergence), full vs LoRA ranks with fixed seeds and steps.
    def cost(model, batch, seq, method, rank=None, targets=None, checkpointing=False, attention="sdpa"):
        parts = [model, method] + ([f"r{rank}", targets] if rank else []) + [f"b{batch}", f"s{seq}"]
        parts += (["ckpt"] if checkpointing else []) + ([attention] if attention != "sdpa" else [])
        return Case("finetune", "-".join(parts), {
            "group": "cost", "model": model, "method": method, "rank": rank, "targets": targets,
            "checkpointing": checkpointing, "attention": attention, "batch": batch, "seq": seq})

    def compiled(model, batch, seq, methods=("full", "lora")):
        """torch.compile axis (issue 17): the model's forward compiled, against the eager case without "-compiled"."""
        out = []
        for m in methods:
            c = cost(model, batch, seq, m, None if m == "full" else 16, None if m == "full" else "attn")
            out.append(Case("finetune", c.id + "-compiled", {**c.params, "compile": "compiled"}))
        return out

    def size(model, batch, seq, ranks, r=16, qlora=("attn",), ckpt=(), eager=False):
        """full, full_amp, LoRA at ``ranks`` on attn and at ``r`` on all_linear, QLoRA (r) on ``qlora``
        targets, checkpointing for the ``ckpt`` methods, and eager attention for full and LoRA."""
        out = [cost(model, batch, seq, m) for m in ("full", "full_amp")]
        out += [cost(model, batch, seq, "lora", rank, "attn") for rank in ranks]
        out += [cost(model, batch, seq, "lora", r, "all_linear")]
        out += [cost(model, batch, seq, "qlora", r, t) for t in qlora]
        out += [cost(model, batch, seq, m, None if m == "full" else r, None if m == "full" else "attn",
                     checkpointing=True) for m in ckpt]
        if eager:
            out += [cost(model, batch, seq, "full", attention="eager"),
                    cost(model, batch, seq, "lora", r, "attn", attention="eager")]
        return out

    def convergence(ranks, qlora_rank, **config):
        """full, LoRA at ``ranks`` and QLoRA at ``qlora_rank`` (same rank, data and steps as that LoRA case),
        plus the merge cases: decode with the base, the unmerged and the merged adapter, on fp32 and NF4."""
        runs = [("full", None)] + [("lora", r) for r in ranks] + [("qlora", qlora_rank)]
        out = [Case("finetune", f"convergence-{m}" + (f"-r{r}-attn" if r else ""),
                    {"group": "convergence", "method": m, "rank": r, "targets": "attn" if r else None, **config})
               for m, r in runs]
        p, n = (8, 8) if profile == "smoke" else (16, 16)
        return out + [Case("finetune", f"merge-{base}-{variant}-r{qlora_rank}-attn",
                           {"group": "merge", "base": base, "variant": variant, "rank": qlora_rank, "targets": "attn",
                            "batch": 1, "prompt_tokens": p, "new_tokens": n, **config})
                      for base in ("fp32", "nf4") for variant in ("base", "unmerged", "merged")]

    def distributed(model, batch, seq, worlds, methods=("full", "lora"), r=16, steps=3):
        """DDP and FSDP2 cases (bench_lib.suites.distributed): each also runs world size 1 with the same
        per-rank ``batch`` in the same launcher (weak scaling); QLoRA+FSDP2 is recorded ``unsupported``."""
        out = []
        for world in worlds:
            for strategy in ("ddp", "fsdp"):
                for m in methods:
                    c = cost(model, batch, seq, m, None if m == "full" else r, None if m == "full" else "attn")
                    out.append(Case("finetune", f"{c.id}-{strategy}-w{world}", {
                        **c.params, "group": "distributed", "strategy": strategy, "world_size": world,
                        "steps": steps}))
        return out

    every_rank = [1, 2, 4, 8, 16, 32, 64]
    # bench_lib.suites.convergence.Config per profile family, stated so records carry it (see TRAINED_CONFIG)
    standard = TRAINED_CONFIG["standard"]
    all_ckpt = ("full", "lora", "qlora")
    if profile == "smoke":  # every method and option once, at tiny sizes; GPT-2's Conv1D path for LoRA too
        return (size("llama-tiny", 2, 32, [4], r=4, ckpt=("full", "lora"), eager=True)
                + [cost("gpt2-tiny", 2, 32, "lora", 4, t) for t in ("attn", "all_linear")]
                + compiled("llama-tiny", 2, 32, ("lora",))
                + convergence([4], 4, **TRAINED_CONFIG["smoke"]))
    if device_type == "cpu":  # quick: ~2 min of cost cases + ~2 min of convergence and merge on 2 cores
        grid = (size("llama-7m", 4, 128, [4, 16, 64], eager=True)
                + size("llama-34m", 2, 128, [4, 16, 64], ckpt=("full", "lora")))
        if profile == "full":  # adds the tutorial's model (GPT-2 shapes) and a ~134M Llama
            grid += size("distilgpt2", 2, 128, [4, 16, 64], ckpt=("full", "lora"))
            grid += size("llama-134m", 1, 128, [8, 64], ckpt=("full", "lora"))
            # compiling the fine-tune step took minutes on 2 shared cores (issue 17 measurement): too much for
            # quick's 10-minute budget
            grid += compiled("llama-7m", 4, 128, ("lora",))
        # DDP and FSDP2 over 2 gloo ranks, full and LoRA: ~20-45 s per case (two torchrun launches each)
        grid += distributed("llama-7m", 2, 64, [2])
        return grid + convergence(every_rank, 16, **standard)
    if profile == "quick":  # ~1.5 min on an H200
        return (size("llama-134m", 8, 512, [8, 16, 64], qlora=("attn", "all_linear"), ckpt=all_ckpt, eager=True)
                + compiled("llama-134m", 8, 512)
                + size("llama-1b", 4, 512, [16], qlora=(), ckpt=("full", "lora"))
                + convergence([4, 64], 4, **standard)
                + distributed("llama-134m", 8, 512, [2, 4, 8], methods=("full", "lora", "qlora")))
    # full (nightly): LoRA/QLoRA up to 7B; full fine-tuning stays in until it runs out of memory (``oom``)
    grid = size("llama-1b", 8, 1024, [8, 16, 64], qlora=("attn", "all_linear"), ckpt=all_ckpt, eager=True)
    grid += compiled("llama-1b", 8, 1024)
    for model in ("llama-3b", "llama-7b"):
        grid += size(model, 4, 1024, [8, 64], qlora=("attn", "all_linear"), ckpt=all_ckpt)
    grid += size("gpt2-xl", 8, 1024, [16], ckpt=("full", "lora"))
    grid += distributed("llama-1b", 4, 1024, [2, 4, 8], methods=("full", "lora", "qlora"))
    return grid + convergence(every_rank, 16, **standard)


GRIDS = {
    "calibration": calibration_grid,
    "attention": attention_grid,
    "precision": precision_grid,
    "finetune": finetune_grid,
}
