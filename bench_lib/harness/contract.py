"""The results contract as data: every key a run file holds, with its unit and meaning.

``docs/results-contract.md`` is generated from this module (``python -m bench_lib.harness.contract``) and a
test keeps the two identical; ``python -m bench_lib.harness.schema`` flags any metric or memory key a run
holds that is not listed here. Add a key here in the same change that first records it.
"""

from __future__ import annotations

import sys

# schema_version -> what changed (a change to the shape of run files bumps bench_lib.SCHEMA_VERSION)
HISTORY = {
    1: "first public version: pytest-benchmark JSON + machine_info.effbench + extra_info + top-level effbench",
}

OUTCOMES = {
    "ok": "measured; metrics and memory are filled",
    "unsupported": "cannot run here (missing package, device, dtype); the reason says what is missing",
    "oom": "ran out of device or host memory; memory was released and the run went on",
    "error": "raised, or failed its correctness check (over tolerance); metrics keep what was measured",
    "timeout": "exceeded the per-case time limit",
    "crashed": "the process died while the case ran (found on resume)",
}

TOP_LEVEL = {
    "machine_info": "pytest-benchmark's machine record; `machine_info.effbench` is effbench's environment (below)",
    "commit_info": "pytest-benchmark's git commit record",
    "benchmarks": "pytest-benchmark's entries, one per measured case (`ok` and measured-then-failed)",
    "datetime": "pytest-benchmark's time the file was written",
    "version": "pytest-benchmark's version",
    "effbench": "effbench's block: every case record, whatever its outcome (below)",
}

EFFBENCH_BLOCK = {
    "schema_version": "the contract version this file follows",
    "profile": "smoke, quick or full",
    "device": "cpu or cuda",
    "started_at": "ISO 8601 UTC time the run started",
    "finished_at": "ISO 8601 UTC time the run finished (null when assembled from a cut run)",
    "cases": "one record per case (below), every outcome",
    "gpu_after": "GPU temperature and SM clock after the run (null without a GPU)",
    "prepared": "only when the session prepared shared work before its cases (the trained weights quality cases "
                "load): one record per preparation per session, with name, suite, outcome (ok, error, timeout), "
                "reason, trained_here_s (seconds this session spent; 0 when found in the cache), reused, "
                "started_at and finished_at. That time is in no case's time or limit",
    "not_run": "only in a run a time budget cut (scripts/gpu_check.sh): the planned cases that never started, "
               "each with suite, id and a \"not started\" reason",
    "shard": "only in a sharded sweep (effbench run under torchrun): world_size, split (round-robin over the "
             "sorted (suite, id); calibration on every rank, rank 0's kept) and ranks: per rank its rank, "
             "local_rank, node_rank, rc, device (its GPU name, uuid, PCI bus id, or the CPU threads) and machine_info (that rank's environment)",
}

ENVIRONMENT = {
    "schema_version": "the contract version",
    "device": "cpu or cuda",
    "machine_slug": "hardware id runs are grouped by, e.g. `cpu-intel-xeon-2c`, `nvidia-h200-x1`; never the hostname",
    "profile": "the profile of the run",
    "python": "Python version",
    "platform": "OS system, kernel release and machine architecture",
    "cpu": "CPU model, architecture, logical/physical/usable cores, torch threads, memory bytes",
    "gpu": "GPU name, count (visible to this process), visible_count, physical_count (in the machine: the slug "
           "uses it), memory bytes, compute capability, driver, CUDA, clocks (MHz), power limit (W), "
           "temperature (C) before the run; null without a GPU",
    "packages": "versions of torch, transformers, peft, bitsandbytes, flash-attn, pytest-benchmark and the rest",
    "torch": "torch version, CUDA version, TF32 flags, float32 matmul precision, thread count",
    "git": "commit of the suite and whether the tree was dirty",
}

RECORD = {
    "id": "the case id: pytest id, results value and plot label",
    "suite": "calibration, attention, precision, finetune or fit",
    "case": "the case's parameters (per suite, below)",
    "outcome": "one of the outcomes above",
    "reason": "why, for every outcome but ok (null for ok)",
    "metrics": "measured and derived values, unit in each name (below)",
    "memory": "peak memory of the untimed repeat, by view (below)",
    "samples_s": "raw timed samples, seconds each",
    "series": "named lists kept whole (loss curves, fit probes)",
    "nodeid": "the pytest node id (used to re-run one case)",
    "started_at": "ISO 8601 UTC time the case started",
    "finished_at": "ISO 8601 UTC time the case finished",
    "shard_rank": "only in a sharded sweep: the torchrun rank that measured the case",
}

CASE_PARAMETERS = {
    "calibration": "kind (matmul, copy), dtype, n (matrix side), mib (copy size, MiB)",
    "attention": "impl, direction (fwd, fwd_bwd), dtype, seq_len, batch, heads, kv_heads (GQA), head_dim, causal",
    "precision": "model (preset), precision, batch, prompt_tokens, new_tokens; trained-weight cases also the "
                 "trained model's config (vocab, hidden, layers, heads, seq, pretrain_*, finetune_*)",
    "finetune": "group (cost, convergence, merge), model, method (full, full_amp, lora, qlora), rank, targets, "
                "checkpointing, attention, batch, seq; convergence and merge cases also the trained model's config "
                "(vocab, hidden, layers, heads, pretrain_*, finetune_*); merge cases also base (fp32, nf4), variant "
                "(base, unmerged, merged), prompt_tokens, new_tokens",
    "fit": "the base case's parameters plus target_suite, base_case, vary, min, max, multiple, budget_bytes",
}

# metric -> (unit, meaning). Units: s, bytes, B/s, FLOP, FLOP/s, TFLOP/s, nats, count, fraction, J, W, text.
METRICS = {
    # timing and memory summary (every timed case)
    "time_s": ("s", "median of the timed samples (suites whose time has another name use that name, below)"),
    "time_s_iqr": ("s", "interquartile range of the timed samples"),
    "time_s_min": ("s", "fastest timed sample"),
    "rounds": ("count", "timed samples taken"),
    "warmup_rounds": ("count", "untimed warm-up samples before the first timed sample"),
    "warmup_calls": ("count", "untimed warm-up calls in all (warm-up samples times their calls)"),
    "calls_per_sample": ("count", "back-to-back calls one timed sample covers; a sample is the block's time / calls "
                                  "(calls shorter than the profile's sample_min_s are blocked so per-call overhead is amortized)"),
    "compile_s": ("s", "torch.compile cases (param compile=compiled): seconds of the first call, which compiles; "
                       "timed apart, before check and warm-up, never in the samples"),
    "recompiles": ("count", "torch.compile cases: dynamo frame compilations (counters['frames']['total']) during the "
                            "timed rounds; any makes the case an error"),
    "graph_breaks": ("count", "torch.compile cases: graph breaks (counters['graph_break']) during the compiling call"),
    "timer": ("text", "cuda_events on CUDA, perf_counter after a device synchronize elsewhere"),
    "l2_flush_bytes": ("bytes", "size of the buffer zeroed before each call to flush the L2 cache, outside the timed "
                                "events (0: no flush)"),
    "peak_bytes": ("bytes", "the case's peak memory in its primary view (see memory.primary)"),
    "extra_peak_bytes": ("bytes", "peak bytes the call added above what was live before it (the primary view)"),
    "step_s": ("s", "median time of one fine-tune step (forward, backward, optimizer)"),
    "compiled_loss": ("nats", "compiled fine-tune cases: the compiled model's loss on the case's batch (untimed check)"),
    "eager_loss": ("nats", "compiled fine-tune cases: the same weights' loss under torch.compiler.set_stance('force_eager')"),
    "compiled_rel_error": ("fraction", "compiled fine-tune cases: |compiled_loss - eager_loss| / |eager_loss|; over the "
                                       "tolerance the case is an error"),
    "world_size": ("count", "distributed cases: ranks of the measured run (one GPU each on CUDA)"),
    "backend": ("text", "distributed cases: torch.distributed backend (gloo on CPU, nccl on CUDA)"),
    "strategy": ("text", "distributed cases: ddp (DistributedDataParallel) or fsdp (FSDP2 fully_shard per block)"),
    "ws1_step_s": ("s", "distributed cases: median step of the same case at world size 1, same per-rank batch, "
                        "launched in the same case"),
    "scaling_efficiency": ("fraction", "distributed cases: ws1_step_s / step_s (weak scaling; ideal 1.0)"),
    "tokens_per_s_per_rank": ("tokens/s", "distributed cases: batch x seq / step_s (tokens_per_s is world_size times it)"),
    "comm_s": ("s", "DDP cases: median over pairs of (step with the gradient all-reduce - the same step under "
                    "no_sync()), the largest rank's; negative: below the pairs' noise"),
    "comm_method": ("text", "distributed cases: how comm_s was measured"),
    "rank{R}_<memory view>": ("bytes", "distributed cases: that memory view of rank R (the record's memory is the "
                                       "largest rank's)"),
    "ws1_<memory view>": ("bytes", "distributed cases: that memory view of the same case's world-size-1 run (the "
                                   "reference per-rank memory is compared with)"),
    "threads_per_rank": ("count", "distributed CPU cases: torch threads of every rank, at world size 1 and N alike "
                                  "(cores / world size)"),
    "step_s_iqr": ("s", "interquartile range of the step time"),
    "generate_s": ("s", "median time of one fixed-length `generate` call"),
    "generate_s_iqr": ("s", "interquartile range of the generate time"),
    "finetune_s": ("s", "wall time of a whole convergence fine-tune (one round)"),
    "finetune_s_iqr": ("s", "interquartile range of the convergence fine-tune time (0 for one round)"),
    # work and throughput
    "flop": ("FLOP", "floating-point operations of one call, by the formula named in flop_formula"),
    "flop_formula": ("text", "id of the FLOP formula (attention: flash-attention convention)"),
    "flop_per_s": ("FLOP/s", "flop / time_s (calibration ceilings)"),
    "tflops": ("TFLOP/s", "flop / time / 1e12"),
    "frac_of_peak": ("fraction", "tflops over the GPU catalog's datasheet peak for this dtype"),
    "frac_of_measured_peak": ("fraction", "tflops over the matmul ceiling the calibration suite measured in this run"),
    "bytes_moved": ("bytes", "bytes read plus written by one copy call (calibration)"),
    "bandwidth_bytes_per_s": ("B/s", "bytes_moved / time_s (calibration copy ceiling)"),
    "input_bytes": ("bytes", "bytes of the call's input tensors"),
    "tokens_per_s": ("tokens/s", "training tokens per second (batch x seq / step_s)"),
    "tokens_per_step": ("count", "tokens in one fine-tune step"),
    "matmul_dtype": ("text", "dtype the matmuls ran in (fractions of peak use its peak)"),
    "backend_ran": ("text", "the SDPA backend that actually ran (forced by sdpa_kernel, recorded from the dispatcher)"),
    # correctness
    "max_rel_error": ("fraction", "largest relative error against a higher-precision reference on the same inputs"),
    "max_rel_error_out": ("fraction", "max_rel_error of the attention output"),
    "max_rel_error_dq": ("fraction", "max_rel_error of the query gradient"),
    "max_rel_error_dk": ("fraction", "max_rel_error of the key gradient"),
    "max_rel_error_dv": ("fraction", "max_rel_error of the value gradient"),
    "tolerance": ("fraction", "the error over which the case is an error, for this dtype"),
    # precision suite: size and load
    "weight_bytes": ("bytes", "bytes of the linear layers' weights as held (quantized storage and scales included)"),
    "weight_bytes_in_use": ("bytes", "weight_bytes after the first forward (bitsandbytes may repack on CPU)"),
    "linear_params": ("count", "parameters of the linear layers"),
    "bits_per_param": ("bits", "8 x weight_bytes / linear_params, from the tensors held"),
    "model_bytes": ("bytes", "bytes of every parameter and buffer of the loaded model"),
    "load_s": ("s", "time to build or load the model in this precision"),
    "weights_stored_dtype": ("text", "dtype the synthetic weights were stored in before loading"),
    "compute_dtype": ("text", "dtype the matmuls compute in"),
    "bnb_cpu_4bit_kernel": ("text", "which bitsandbytes CPU 4-bit kernel ran"),
    "model_source": ("text", "preset name, or the checkpoint path or hub id given with --model"),
    "batch": ("count", "sequences per generate call"),
    "prompt_tokens": ("count", "prompt length in tokens"),
    "new_tokens": ("count", "tokens generated per sequence (min = max new tokens)"),
    # precision suite: speed of generation
    "ttft_s": ("s", "time to first token, from the per-token stamps of the timed generate calls (median)"),
    "prefill_s": ("s", "time of one forward over the prompt (untimed check, median of up to 3)"),
    "decode_s": ("s", "time of the decode steps after the first token, from the same stamps (median)"),
    "decode_tokens_per_s": ("tokens/s", "batch x (new_tokens - 1) / decode_s"),
    "generate_tokens_per_s": ("tokens/s", "batch x new_tokens / generate_s"),
    "torchao_version": ("text", "torchao precisions: the installed torchao"),
    "ao_config": ("text", "torchao precisions: repr of the config object passed to quantize_"),
    "ao_group_size": ("count", "torchao int4 precision: weights per quantization group (one scale and zero point each)"),
    "fp8_format": ("text", "FP8 attention cases: the e4m3 format and scaling of q/k/v, and where the tolerance comes from"),
    "cache_implementation": ("text", "compiled decode cases: the KV cache transformers generated with ('static')"),
    "compile_scope": ("text", "compiled decode cases: what torch.compile covers (the decoding step's forward)"),
    "tokens_match_eager": ("fraction", "compiled decode cases: share of greedy tokens equal to the same weights' "
                                       "eager decode (dynamic cache); below 0.5 the case is an error"),
    "decode_weight_bytes_per_s": ("B/s", "model_bytes x decode steps / decode_s (every step reads every weight)"),
    "itl_p50_s": ("s", "median inter-token latency of the timed calls (per-token stamps inside each generate)"),
    "itl_p90_s": ("s", "90th percentile inter-token latency"),
    "itl_p99_s": ("s", "99th percentile inter-token latency"),
    "per_token_calls": ("count", "timed generate calls whose per-token stamps TTFT, decode and ITL come from"),
    "token_clock_call_s": ("s", "cost of one per-token stamp (synchronize + clock read), measured in the case"),
    "token_clock_overhead_frac": ("fraction", "token_clock_call_s x new_tokens / decode_s: what the stamps cost"),
    # precision suite: quality against the full-precision reference
    "reference_precision": ("text", "the precision quality is measured against (null: none fits here)"),
    "kl_vs_ref": ("nats", "mean KL divergence of next-token distributions from the reference's"),
    "top1_agreement": ("fraction", "share of positions whose most likely token equals the reference's"),
    "reference_entropy_nats": ("nats", "mean entropy of the reference's next-token distributions"),
    "perplexity": ("ratio", "perplexity on held-out text"),
    "reference_perplexity": ("ratio", "the reference's perplexity on the same text"),
    "kl_vs_ref_ci_low": ("nats", "95% bootstrap interval of kl_vs_ref over the evaluation sequences, low end"),
    "kl_vs_ref_ci_high": ("nats", "the same interval's high end"),
    "top1_agreement_ci_low": ("fraction", "95% bootstrap interval of top1_agreement over the sequences, low end"),
    "top1_agreement_ci_high": ("fraction", "the same interval's high end"),
    "quality_items": ("count", "evaluation sequences behind KL and top-1"),
    "quality_positions": ("count", "next-token distributions behind KL and top-1"),
    "quality_text": ("text", "which held-out text quality was measured on"),
    "heldout_accuracy": ("fraction", "task accuracy on capitals the fine-tune never saw, at this precision"),
    "heldout_accuracy_ci_low": ("fraction", "95% Wilson interval of heldout_accuracy, low end"),
    "heldout_accuracy_ci_high": ("fraction", "the same interval's high end"),
    "heldout_accuracy_items": ("count", "held-out task items"),
    "reference_heldout_accuracy": ("fraction", "the reference precision's held-out task accuracy"),
    "synthetic_weights": ("bool", "true: random weights, right for speed and memory, wrong for quality claims"),
    "trained_weights": ("bool", "true: weights effbench trained itself (cached), the ones quality claims rest on"),
    "pretrain_corpus": ("text", "the text the model was pre-trained on (generated-capitals-v1: generated, not a real corpus)"),
    "weights_cache": ("text", "folder of the cached trained weights (EFFBENCH_CACHE, default ~/.cache/effbench)"),
    "weights_reused": ("bool", "true: the trained weights came from the cache, nothing was trained for this case"),
    "weights_trained_here_s": ("s", "time this case spent training its weights (0 when reused), never in its timed rounds"),
    "synthetic_logit_std": ("ratio", "std of the synthetic output layer's logits (sets the reference entropy)"),
    # fine-tune suite
    "trainable_params": ("count", "parameters the optimizer updates"),
    "total_params": ("count", "all parameters of the model"),
    "trainable_frac": ("fraction", "trainable_params / total_params"),
    "optimizer_state_bytes": ("bytes", "bytes of the optimizer's state tensors"),
    "grad_bytes": ("bytes", "bytes of the gradients after a backward pass"),
    "activation_bytes": ("bytes", "peak bytes above the model, gradients and optimizer state during a step"),
    "adapter_bytes": ("bytes", "bytes of what a checkpoint of the method saves (the adapters, or the whole model)"),
    "warm_step_loss": ("nats", "training loss of a warm step (shows the step computes)"),
    # convergence cases
    "pretrain_s": ("s", "wall time of the pre-training the fine-tune starts from"),
    "pretrain_final_loss": ("nats", "mean loss over the last pre-training steps"),
    "pretrain_fact_accuracy": ("fraction", "facts the pre-trained model completes correctly"),
    "initial_loss": ("nats", "fine-tune loss at the first step"),
    "final_loss": ("nats", "mean fine-tune loss over the last steps"),
    "accuracy": ("fraction", "held-out task accuracy (capitals the fine-tune never saw), greedy decoding"),
    "accuracy_ci_low": ("fraction", "95% Wilson interval of accuracy, low end"),
    "accuracy_ci_high": ("fraction", "the same interval's high end"),
    "accuracy_items": ("count", "held-out task items behind accuracy"),
    "base_precision": ("text", "precision of the frozen or trained base (fp32, nf4)"),
    "pretrain_reused": ("bool", "true: the pre-trained model came from the on-disk cache; false: this run trained it "
                                "(its session's preparation, see effbench.prepared, or this case)"),
    "pretrain_trained_here_s": ("s", "pre-training time spent in this case (0 when reused or trained by the "
                                        "session's preparation before the cases: effbench.prepared has that time)"),
    # merge cases (does a merged LoRA adapter add inference latency?)
    "variant": ("text", "base (no adapter), unmerged (adapter applied at run time) or merged (W + BA folded in)"),
    "merge_s": ("s", "time of peft's merge_and_unload"),
    "merge_max_abs_diff": ("logit", "largest |merged - unmerged| logit on held-out text"),
    "merge_tolerance": ("logit", "the difference over which an fp32 merge is wrong (1e-4 of the largest logit)"),
    "merge_within_tolerance": ("bool", "merge_max_abs_diff <= merge_tolerance"),
    "merge_kl_vs_unmerged": ("nats", "KL of the merged model's next-token distributions from the unmerged one's"),
    "merge_top1_agreement": ("fraction", "top-1 agreement of merged and unmerged"),
    "merge_requantized": ("bool", "true: the base is NF4, so merging dequantized, added BA and re-quantized"),
    "adapter_trained_here_s": ("s", "time this case spent training the adapter (0 when reused)"),
    "adapter_trained_on_precision": ("text", "precision of the base the adapter was trained on"),
    "train_accuracy": ("fraction", "task accuracy on the fine-tune's own items"),
    "heldout_answer_loss": ("nats", "mean loss of the held-out answers"),
    "heldout_countries": ("count", "held-out evaluation items"),
    "finetune_tokens": ("count", "tokens the fine-tune trained on"),
    # energy (CUDA with NVML)
    "energy_j": ("J", "GPU energy over the energy window, null below the counter's resolution"),
    "energy_window_s": ("s", "length of the untimed energy window (repeated calls until the profile's energy_window_s)"),
    "energy_window_calls": ("count", "calls inside the energy window"),
    "energy_counter_updates": ("count", "times NVML's energy counter advanced during the window"),
    "energy_counter_period_s": ("s", "measured mean time between counter updates"),
    "energy_per_call_j": ("J", "energy_j / calls in the window"),
    "avg_power_w": ("W", "energy_j / window seconds"),
    "energy_reason": ("text", "why no energy was measured"),
    # fit (largest size that fits a budget)
    "largest_fit": ("count", "the largest size that ran within the budget"),
    "smallest_fail": ("count", "the next size up, which did not (null: the largest allowed size ran)"),
    "largest_fit_peak_bytes": ("bytes", "measured peak of the largest size that fit"),
    "budget_bytes": ("bytes", "the memory budget searched against"),
    "probes": ("count", "sizes tried"),
    "search_s": ("s", "wall time of the search"),
}

MEMORY_VIEWS = {
    "primary": ("text", "the view a case's peak is judged on: torch_peak_allocated_bytes on CUDA, cpu_peak_rss_bytes on CPU"),
    "torch_peak_allocated_bytes": ("bytes", "CUDA allocator's peak allocated bytes (max_memory_allocated) during the call"),
    "torch_peak_reserved_bytes": ("bytes", "CUDA allocator's peak reserved bytes (max_memory_reserved)"),
    "torch_allocated_before_bytes": ("bytes", "CUDA allocated bytes when the call started"),
    "torch_reserved_before_bytes": ("bytes", "CUDA reserved bytes when the call started"),
    "nvml_peak_used_bytes": ("bytes", "NVML device memory used, sampled peak (sees the CUDA context and non-PyTorch allocations)"),
    "nvml_used_before_bytes": ("bytes", "NVML device memory used when the call started"),
    "cpu_peak_rss_bytes": ("bytes", "process high-water mark of resident memory (VmHWM after a clear_refs reset, or RSS sampled)"),
    "cpu_rss_before_bytes": ("bytes", "resident memory when the call started"),
    "cpu_peak_method": ("text", "vmhwm (clear_refs + VmHWM) or rss_sampling (where the reset is refused)"),
    "cpu_peak_malloc_bytes": ("bytes", "CPU (glibc): peak of the bytes malloc has handed out and not had back, every "
                              "thread's arena (mallinfo2 in-use + mmapped), sampled every 1 ms: live memory without "
                              "the freed heap glibc keeps, which RSS counts once re-faulted"),
    "cpu_malloc_before_bytes": ("bytes", "CPU (glibc): live malloc bytes when the call started"),
    "torch_cpu_added_peak_bytes": ("bytes", "peak of PyTorch's live CPU allocations above those at the call's start "
                                   "(profiler memory events; deterministic, unlike RSS)"),
}


def _table(rows: dict, header: tuple[str, ...]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, value in rows.items():
        cells = value if isinstance(value, tuple) else (value,)
        out.append("| " + " | ".join((f"`{key}`", *cells)) + " |")
    return out


def markdown() -> str:
    """The contract document, docs/results-contract.md, generated from the tables above."""
    lines = [
        "# The results contract",
        "",
        "<!-- generated by `python -m bench_lib.harness.contract > docs/results-contract.md`; edit"
        " bench_lib/harness/contract.py, not this file -->",
        "",
        "A run is a pytest-benchmark JSON file (readable by `pytest-benchmark compare`) with effbench's keys",
        "added, and a journal `RUN.jsonl` beside it: a header line with the environment, then one case record",
        "a line, flushed and fsynced as each case ends. `python -m bench_lib.harness.schema RUN.json` checks a",
        "file against this contract. Stored values are SI base units with the unit in the name: seconds,",
        "bytes, FLOP; reports scale them (GiB and MiB are binary).",
        "",
        "## Top level", "", *_table(TOP_LEVEL, ("key", "meaning")), "",
        "## `effbench` block", "", *_table(EFFBENCH_BLOCK, ("key", "meaning")), "",
        "## Environment (`machine_info.effbench`, and the journal's header)", "",
        *_table(ENVIRONMENT, ("key", "meaning")), "",
        "## A case record (`effbench.cases[]`, journal lines; `benchmarks[].extra_info` holds the same)", "",
        *_table(RECORD, ("key", "meaning")), "",
        "Each entry of `benchmarks` also has pytest-benchmark's `stats` (its `data` holds the raw samples),",
        "`params` (the case's parameters) and `options`.", "",
        "## Outcomes", "", *_table(OUTCOMES, ("outcome", "meaning")), "",
        "## Case parameters, per suite", "", *_table(CASE_PARAMETERS, ("suite", "parameters")), "",
        "## Metrics (`metrics`)", "", *_table(METRICS, ("metric", "unit", "meaning")), "",
        "## Memory views (`memory`)", "",
        "Measured in a separate, untimed repeat of the same call, so probes never perturb time.", "",
        *_table(MEMORY_VIEWS, ("view", "unit", "meaning")), "",
        "## Schema versions", "", *_table({str(k): v for k, v in HISTORY.items()}, ("version", "change")), "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown())
