"""Writes the synthetic run files the report tests use (hand-made per the results contract in BRIEF/DESIGN).

They stand in for real harness runs until those exist, and keep covering shapes a real CPU run never has
(a second machine, a GPU run, crashed/timeout outcomes, a pre-contract "version 0" file). Values follow
simple laws with small seeded noise so that tests can assert them:

- attention: time per sequence ~ s^2 (b*s kept constant), eager extra memory per sequence ~ s^2,
  sdpa_flash extra memory per sequence ~ s;
- fine-tune: full = 16 bytes/param static; LoRA trainable params = r * 2 * 4 * hidden * layers.

Run ``python tests/data/report/make_synthetic.py`` to regenerate; the output is deterministic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
TOKENS = 4096  # batch * seq_len for every attention point


def env(slug: str, device: str, cpu: str, gpu: str | None, profile: str = "quick") -> dict:
    """An environment record shaped like ``bench_lib.harness.env.record``."""
    gpu_rec = None
    if gpu:
        gpu_rec = {"name": gpu, "count": 1, "memory_bytes": 150_754_820_096, "capability": "9.0",
                   "multiprocessors": 132, "cuda": "12.8", "cudnn": 91002, "driver": "570.86",
                   "sm_clock_mhz": 1980, "sm_clock_max_mhz": 1980, "mem_clock_max_mhz": 3201,
                   "power_limit_w": 700.0, "temperature_c": 31, "energy_counter": True}
    cores = 2 if device == "cpu" else 16
    return {"schema_version": 1, "device": device, "machine_slug": slug, "profile": profile, "python": "3.11.9",
            "platform": {"system": "Linux", "release": "6.1.0", "machine": "x86_64"},
            "cpu": {"model": cpu, "arch": "x86_64", "logical_cores": cores, "physical_cores": cores,
                    "usable_cores": cores, "torch_threads": cores, "memory_bytes": 25_276_502_016},
            "gpu": gpu_rec,
            "packages": {"torch": "2.13.0", "transformers": "5.24.0", "peft": "0.21.2", "bitsandbytes": "0.50.2",
                         "flash-attn": None, "flash_attn_3": None, "pytest-benchmark": "5.2.3"},
            "torch": {"version": "2.13.0", "cuda": "12.8" if gpu else None, "tf32_matmul": False,
                      "tf32_cudnn": True, "float32_matmul_precision": "highest", "num_threads": cores},
            "git": {"commit": "2af98ee", "dirty": False}}


def case(suite, cid, params, outcome="ok", reason=None, metrics=None, memory=None, series=None, samples=None):
    return {"type": "case", "id": cid, "suite": suite, "nodeid": f"benchmarks/test_{suite}.py::test_{suite}[{cid}]",
            "case": params, "outcome": outcome, "reason": reason, "metrics": metrics or {},
            "memory": memory or {}, "samples_s": samples or [], "series": series or {},
            "started_at": "2025-01-01T00:00:00+00:00", "finished_at": "2025-01-01T00:00:01+00:00"}


def measured(rng, t, peak, extra, speed, **more):
    t = t * speed * (1 + 0.02 * rng.uniform(-1, 1))
    samples = [t * (1 + 0.01 * rng.uniform(-1, 1)) for _ in range(5)]
    metrics = {"time_s": t, "time_s_iqr": 0.01 * t, "rounds": 5, "warmup_rounds": 1,
               "peak_bytes": int(peak), "extra_peak_bytes": int(extra), **more}
    memory = {"primary": "cpu_peak_rss_bytes", "cpu_peak_rss_bytes": int(peak),
              "cpu_rss_before_bytes": int(peak - extra)}
    return metrics, memory, samples


def calibration(rng, speed):
    out = []
    for dt, tf in (("fp32", 0.1), ("bf16", 0.05)):
        m, mem, s = measured(rng, 2 * 1024**3 / (tf * 1e12), 3e8, 1.2e7, speed)
        m["tflops"] = 2 * 1024**3 / m["time_s"] / 1e12
        out.append(case("calibration", f"matmul-{dt}-n1024", {"kind": "matmul", "dtype": dt, "n": 1024},
                        metrics=m, memory=mem, samples=s))
    m, mem, s = measured(rng, 2 * 256 * 2**20 / 8e9, 8e8, 2.7e8, speed)
    m["bandwidth_bytes_per_s"] = 2 * 256 * 2**20 / m["time_s"]
    out.append(case("calibration", "copy-256MiB", {"kind": "copy", "mib": 256}, metrics=m, memory=mem, samples=s))
    return out


def attention(rng, speed, seqs=(256, 512, 1024, 2048, 4096), oom_at=4096):
    out, heads, d = [], 4, 64
    for direction in ("fwd", "fwd_bwd"):
        for impl in ("eager", "sdpa_math", "sdpa_flash", "sdpa_cudnn"):
            for s in seqs:
                b = TOKENS // s
                params = {"impl": impl, "direction": direction, "dtype": "fp32", "seq_len": s, "batch": b,
                          "heads": heads, "kv_heads": heads, "head_dim": d, "causal": False}
                cid = f"{impl}-{direction}-fp32-s{s}-b{b}-h{heads}-d{d}"
                if impl == "sdpa_cudnn":
                    out.append(case("attention", cid, params, "unsupported", "needs a CUDA GPU (this run is on cpu)"))
                    continue
                if impl == "eager" and s >= oom_at:
                    out.append(case("attention", cid, params, "oom", "out of memory at seq_len 4096"))
                    continue
                flop = 4 * b * heads * s * s * d * (3.5 if direction == "fwd_bwd" else 1)
                rate = {"eager": 2e10, "sdpa_math": 2.5e10, "sdpa_flash": 2e10 * (s / 256) ** 0.3}[impl]
                inputs = 3 * b * heads * s * d * 4
                per_seq = heads * s * s * 4 * 2 if impl != "sdpa_flash" else heads * s * d * 4 * 3
                extra = b * per_seq
                m, mem, smp = measured(rng, flop / rate, inputs + extra + 2e8, extra, speed, flop=flop,
                                       input_bytes=inputs, max_rel_error=1e-6, backend_ran=impl)
                m["tflops"] = flop / m["time_s"] / 1e12
                out.append(case("attention", cid, params, metrics=m, memory=mem, samples=smp))
    return out


PRECISION_BITS = {"fp32": 32.0, "bf16": 16.0, "int8": 8.5, "nf4": 4.52, "nf4_dq": 4.13, "fp4": 4.52}
PRECISION_KL = {"fp32": 0.0, "bf16": 2e-5, "int8": 4e-4, "nf4": 6e-3, "nf4_dq": 6.2e-3, "fp4": 1.1e-2}


def precision(rng, speed, models=(("llama-tiny", 222016), ("llama-7m", 7096576))):
    out = []
    for model, params_n in models:
        for prec in ("fp32", "bf16", "fp16", "int8", "nf4", "nf4_dq", "fp4"):
            cid = f"{model}-{prec}-b1"
            params = {"model": model, "precision": prec, "batch": 1}
            if prec == "fp16":
                out.append(case("precision", cid, params, "unsupported", "fp16 matmul is not supported on this CPU"))
                continue
            bits = PRECISION_BITS[prec]
            wb = params_n * bits / 8
            t = 0.002 * params_n / 222016 ** 0.5 / 100 * (1 + bits / 32)
            m, mem, smp = measured(rng, t, wb * 1.3 + 2e8, wb * 0.3, speed, weight_bytes=int(wb),
                                   bits_per_param=bits, model_bytes=int(wb * 1.1), load_s=0.1, ttft_s=t * 3,
                                   prefill_s=t * 2, decode_tokens_per_s=16 / t,
                                   kl_vs_ref=PRECISION_KL[prec] * (1 + 0.1 * rng.uniform(-1, 1)),
                                   top1_agreement=1 - PRECISION_KL[prec] * 5, perplexity=None,
                                   synthetic_weights=True, reference_precision="fp32")
            out.append(case("precision", cid, params, metrics=m, memory=mem, samples=smp))
    return out


def finetune(rng, speed, models=(("llama-tiny", 222016, 64, 2), ("llama-7m", 7096576, 256, 4))):
    out = []
    variants = [("full", None, None, False), ("full", None, None, True), ("full_amp", None, None, False),
                ("lora", 4, "attn", False), ("lora", 8, "attn", False), ("lora", 16, "attn", False),
                ("lora", 8, "all_linear", False), ("qlora", 8, "attn", False)]
    for model, n, hidden, layers in models:
        for method, rank, targets, ckpt in variants:
            params = {"model": model, "method": method, "rank": rank, "targets": targets, "checkpointing": ckpt,
                      "attention": "sdpa", "batch": 4, "seq": 128, "group": "cost"}
            cid = f"{model}-{method}" + (f"-r{rank}-{targets}" if rank else "") + ("-ckpt" if ckpt else "")
            if method in ("full", "full_amp"):
                trainable = n
            else:
                trainable = rank * 2 * 4 * hidden * layers * (2.5 if targets == "all_linear" else 1)
            wbytes = n * (4 if method != "qlora" else 0.6)
            grads, opt = trainable * 4, trainable * 8
            act = n * (2.0 if not ckpt else 0.7)
            peak = wbytes + grads + opt + act
            t = n * 6 * 512 / 5e10 * (0.75 if method in ("lora", "qlora") else 1) * (1.3 if ckpt else 1)
            if method == "qlora":
                t *= 1.6
            m, mem, smp = measured(rng, t, peak + 2e8, peak, speed, step_s=None, tokens_per_s=None,
                                   weight_bytes=int(wbytes), grad_bytes=int(grads),
                                   optimizer_state_bytes=int(opt), activation_bytes=int(act),
                                   trainable_params=int(trainable), total_params=n + int(trainable if rank else 0),
                                   trainable_frac=trainable / (n + (trainable if rank else 0)),
                                   adapter_bytes=int(trainable * 4) if rank else None)
            m["step_s"] = m["time_s"]
            m["tokens_per_s"] = 512 / m["time_s"]
            out.append(case("finetune", cid, params, metrics=m, memory=mem, samples=smp))
    # convergence group (the suite's shape): every case carries the shared pre-training curve and its own
    # fine-tuning curve; full vs LoRA rank sweep on capital cities
    conv = {"group": "convergence", "pretrain_steps": 360, "finetune_steps": 60, "seed": 0}
    pre = [6.9 * (0.97 ** i) + 1.2 for i in range(60)]
    for method, rank in [("full", None)] + [("lora", r) for r in (1, 2, 4, 8, 16, 32, 64)]:
        final = 0.4 if method == "full" else 0.45 + 1.6 / rank
        curve = [3.0 * (1 - i / 40) + final * (i / 40) for i in range(41)]
        acc = 0.95 if method == "full" else min(0.95, 0.3 + 0.1 * rank ** 0.5 * 2)
        m, mem, smp = measured(rng, 8.0, 4e8, 2e8, speed, final_loss=final, initial_loss=curve[0],
                               accuracy=acc, trainable_params=182016 if not rank else rank * 2 * 2 * 64 * 2,
                               finetune_s=8.0 * speed, pretrain_s=20.0 * speed, pretrain_final_loss=pre[-1])
        cid = "convergence-full" if not rank else f"convergence-lora-r{rank}"
        out.append(case("finetune", cid, {**conv, "method": method, "rank": rank, "targets": "attn" if rank else None},
                        metrics=m, memory=mem,
                        samples=smp[:1], series={"loss_curve": curve, "pretrain_loss": pre}))
    out.append(case("finetune", "llama-7m-lora-r64-attn-crash", {"model": "llama-7m", "method": "lora", "rank": 64,
                    "targets": "attn", "checkpointing": False, "attention": "eager", "batch": 4, "seq": 128,
                    "group": "cost"}, "crashed", "child process died (signal 9) while this case ran"))
    out.append(case("finetune", "llama-7m-full-eager", {"model": "llama-7m", "method": "full", "rank": None,
                    "targets": None, "checkpointing": False, "attention": "eager", "batch": 4, "seq": 128,
                    "group": "cost"}, "timeout", "still running after 120 s"))
    return out


def run_file(environment, cases, profile="quick"):
    """The pytest-benchmark JSON with effbench keys (ok cases also appear as benchmarks)."""
    benchmarks = []
    for c in cases:
        if c["outcome"] != "ok":
            continue
        data = c["samples_s"]
        benchmarks.append({
            "group": c["suite"], "name": f"test_{c['suite']}[{c['id']}]", "fullname": c["nodeid"],
            "params": {"case": c["id"]}, "param": c["id"],
            "extra_info": {k: c[k] for k in ("suite", "case", "outcome", "metrics", "memory")},
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "max_time": 1.0,
                        "min_time": 5e-06, "warmup": True},
            "stats": {"min": min(data), "max": max(data), "mean": sum(data) / len(data),
                      "stddev": 0.0, "rounds": len(data), "median": sorted(data)[len(data) // 2],
                      "iqr": 0.0, "q1": min(data), "q3": max(data), "iqr_outliers": 0, "stddev_outliers": 0,
                      "outliers": "0;0", "ld15iqr": min(data), "hd15iqr": max(data), "ops": 1.0,
                      "total": sum(data), "data": data, "iterations": 1},
        })
    machine_info = {"node": "redacted", "processor": "x86_64", "machine": "x86_64", "python_implementation": "CPython",
                    "python_version": "3.11.9", "release": "6.1.0", "system": "Linux",
                    "cpu": {"brand_raw": environment["cpu"]["model"], "count": environment["cpu"]["logical_cores"]},
                    "effbench": environment}
    return {"machine_info": machine_info, "commit_info": {"id": "2af98ee", "dirty": False, "branch": "main"},
            "benchmarks": benchmarks, "datetime": "2025-01-01T00:10:00+00:00", "version": "5.2.3",
            "effbench": {"schema_version": 1, "profile": profile, "device": environment["device"],
                         "started_at": "2025-01-01T00:00:00+00:00", "finished_at": "2025-01-01T00:10:00+00:00",
                         "cases": cases}}


def journal_lines(doc, upto=None):
    header = {"type": "header", "schema_version": 1, "machine_info": doc["machine_info"],
              "commit_info": doc["commit_info"], "profile": doc["effbench"]["profile"],
              "device": doc["effbench"]["device"], "started_at": doc["effbench"]["started_at"]}
    cases = doc["effbench"]["cases"][:upto]
    return [json.dumps(header)] + [json.dumps(c) for c in cases]


def version0(doc):
    """A plain pytest-benchmark file as written before the effbench contract: no effbench keys anywhere."""
    machine_info = {k: v for k, v in doc["machine_info"].items() if k != "effbench"}
    benchmarks = [{k: v for k, v in b.items() if k != "extra_info"} | {"extra_info": {}}
                  for b in doc["benchmarks"] if b["group"] == "attention"]
    return {"machine_info": machine_info, "commit_info": doc["commit_info"], "benchmarks": benchmarks,
            "datetime": doc["datetime"], "version": "4.0.0"}


def all_cases(seed, speed):
    rng = random.Random(seed)
    return calibration(rng, speed) + attention(rng, speed) + precision(rng, speed) + finetune(rng, speed)


def main():
    a = run_file(env("cpu-epyc-2c", "cpu", "AMD EPYC 7B13", None), all_cases(1, 1.0))
    b = run_file(env("cpu-xeon-4c", "cpu", "Intel Xeon Platinum 8375C", None), all_cases(2, 0.6))
    rng = random.Random(3)
    gpu_cases = attention(rng, 0.01, seqs=(512, 1024, 2048, 4096), oom_at=10**9)
    gpu_cases.append(case("finetune", "llama-7b-qlora-r8-attn-ckpt",
                          {"model": "llama-7b", "method": "qlora", "rank": 8, "targets": "attn", "checkpointing": True,
                           "attention": "sdpa", "batch": 1, "seq": 512, "group": "cost"},
                          metrics={"time_s": 0.41, "step_s": 0.41, "peak_bytes": 6_900_000_000,
                                   "tokens_per_s": 512 / 0.41, "avg_power_w": 400.0, "energy_j": 820.0,
                                   "trainable_params": 4194304, "total_params": 6742609920},
                          memory={"primary": "torch_peak_allocated_bytes",
                                  "torch_peak_allocated_bytes": 6_900_000_000}, samples=[0.41] * 5))
    gpu_cases.append(case("precision", "llama-1b-bf16-b1", {"model": "llama-1b", "precision": "bf16", "batch": 1},
                          metrics={"time_s": 0.2, "weight_bytes": 2.2e9, "bits_per_param": 16.0, "model_bytes": 2.4e9,
                                   "decode_tokens_per_s": 100.0, "generate_tokens_per_s": 80.0,
                                   "decode_weight_bytes_per_s": 2.4e11, "avg_power_w": 320.0, "compute_dtype": "bfloat16",
                                   "kl_vs_ref": 1e-5, "top1_agreement": 0.999, "synthetic_weights": True},
                          memory={"primary": "torch_peak_allocated_bytes", "torch_peak_allocated_bytes": 3e9},
                          samples=[0.2] * 5))
    g = run_file(env("cuda-h200", "cuda", "Intel Xeon 8480+", "NVIDIA H200"), gpu_cases)
    (HERE / "cpu-a.json").write_text(json.dumps(a))
    (HERE / "cpu-b.json").write_text(json.dumps(b))
    (HERE / "gpu-h200.json").write_text(json.dumps(g))
    # an interrupted run: the journal alone (no JSON), its last line cut mid-write by the kill
    lines = journal_lines(a, upto=12)
    (HERE / "interrupted.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    (HERE / "v0-plain-pytest-benchmark.json").write_text(json.dumps(version0(a)))
    text = json.dumps(b)
    (HERE / "truncated.json").write_text(text[: len(text) // 3])


if __name__ == "__main__":
    main()
