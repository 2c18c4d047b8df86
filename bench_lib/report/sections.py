"""Assemble the report: tidy tables in, a :class:`~bench_lib.report.document.Document` out (figures saved).

One function per section. A section whose suite is absent from the runs says "not measured in these runs"
instead of failing. Numbers come from :mod:`aggregate`, :mod:`views` and :mod:`claims`; this module only
chooses what to show and in which units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench_lib.report import (
    aggregate,
    claims,
    costs,
    fmt,
    render_attention,
    render_finetune,
    render_machines,
    render_precision,
    render_scaling,
    views,
)
from bench_lib.report.document import Document, Paragraph, Section, table

NOT_MEASURED = "not measured in these runs"
MACHINE_TABLE_ROWS = 40


@dataclass
class Inputs:
    """What every section draws from: tidy cases, their medians per machine, series, baselines, output folder."""

    cases: pd.DataFrame
    med: pd.DataFrame
    series: pd.DataFrame
    baselines: dict[str, str]
    outdir: Path
    runs: pd.DataFrame
    prices_path: str | None = None

    def fmt(self, **more) -> dict:
        """Cell formatters: machines by their slug in tables (the Runs table maps slug to hardware)."""
        short = dict(zip(self.cases["machine"], self.cases["machine_slug"], strict=True))
        return {"machine": lambda m: short.get(m, m), **more}


def resolve_baselines(cases: pd.DataFrame, requested: str | None) -> dict[str, str]:
    """Default baseline per suite, with ``requested`` (an impl, precision or method id) overriding the suite
    whose variant column holds it. Unknown ids raise ``ValueError`` listing what the runs contain."""
    baselines = dict(aggregate.DEFAULT_BASELINE)
    if requested is None:
        return baselines
    known = {}
    for suite, col in aggregate.VARIANT.items():
        if suite in baselines and col in cases.columns:
            known[suite] = set(cases.loc[cases["suite"] == suite, col].dropna().astype(str))
    for suite, ids in known.items():
        if requested in ids:
            baselines[suite] = requested
            return baselines
    listing = "; ".join(f"{s}: {', '.join(sorted(i))}" for s, i in known.items() if i) or "none"
    raise ValueError(f"--baseline {requested!r} is not an impl, precision or method in these runs (known: {listing})")


def _absent(section: Section) -> Section:
    return section.add(Paragraph(f"{section.title}: {NOT_MEASURED}.", "muted"))


def overview(runs, cases, problems) -> Section:
    s = Section("overview", "Runs")
    for p in problems:
        s.add(Paragraph(str(p), "warning"))
    rows = runs.assign(machine=cases.groupby("run")["machine"].first().reindex(runs["run"]).to_numpy(),
                       n_cases=[len(c) for c in runs["cases"]])
    s.add(table("Runs in this report", rows, {"run": "run", "machine": "machine", "device": "device",
                                               "profile": "profile", "source": "read from", "n_cases": "cases",
                                               "started_at": "started", "path": "file"}))
    counts = cases["outcome"].value_counts()
    s.add(Paragraph("Outcomes: " + ", ".join(f"{n} {o}" for o, n in counts.items()) + "."))
    return s


def claims_section(x: Inputs) -> Section:
    s = Section("claims", "The tutorial's claims, checked")
    result = claims.check(x.med, x.cases)
    s.add(table("Each claim, the value measured in these runs, and the verdict", result,
                {"number": "#", "claim": "claim", "tutorial": "tutorial says", "measured": "measured here",
                 "verdict": "verdict", "basis": "how it is judged"}))
    return s


def _compiled_table(x: Inputs, suite: str, time_col: str, what: str):
    """The torch.compile axis: each compiled case beside its eager twin (None when no pair ran)."""
    pairs = views.compiled_vs_eager(x.med, suite, time_col)
    if pairs.empty:
        return None
    return table(f"torch.compile against eager ({what}): speedup = eager median / compiled median (above 1: compiled "
                 "is faster), both measured in the same run; compile time is the first, uncounted call and is not in "
                 "the timed rounds; recompiles during the timed rounds would have made the case an error", pairs,
                 {"machine": "machine", "eager_id": "case (eager id)", "eager_s": "eager", "compiled_s": "compiled",
                  "speedup": "speedup", "compile_s": "compile", "graph_breaks": "graph breaks",
                  "recompiles": "recompiles", "eager_peak_bytes": "eager peak", "compiled_peak_bytes": "compiled peak"},
                 x.fmt(speedup=fmt.ratio, graph_breaks=fmt.number, recompiles=fmt.number))


def attention_section(x: Inputs) -> Section:
    s = Section("attention", "Attention kernels")
    baseline = x.baselines["attention"]
    if views.suite_rows(x.cases, "attention").empty:
        return _absent(s)
    view = views.attention(x.med, x.cases)
    rows, points, exponents = view["rows"], view["points"], view["exponents"]
    for fig in render_attention.figures(points, view["oom"], view["shape"], x.outdir):
        s.add(fig)
    if (compiled := _compiled_table(x, "attention", "time_s", "attention call")) is not None:
        s.add(compiled)
    if points.empty:
        s.add(Paragraph("No figures: they need a sweep over two or more sequence lengths at one shape, and these "
                        "runs have one length per shape (a smoke run?).", "muted"))
    if not exponents.empty:
        wide = exponents.pivot_table(index=["machine", "impl", "direction", "dtype", "x_min", "x_max"],
                                     columns="metric", values=["exponent", "exponent_upper"])
        wide.columns = [f"{metric}:{kind}" for kind, metric in wide.columns]
        wide = wide.reset_index()
        two = "{:.2f}".format
        s.add(table("Fitted log-log exponents per sequence (time and extra peak memory ∝ seq_len^k), over all "
                    "lengths and over the longer half", wide,
                    {"machine": "machine", "impl": "impl", "direction": "direction", "dtype": "dtype",
                     "x_min": "from", "x_max": "to", "time_s:exponent": "time, all",
                     "time_s:exponent_upper": "time, longer half", "extra_peak_bytes:exponent": "memory, all",
                     "extra_peak_bytes:exponent_upper": "memory, longer half"},
                    x.fmt(**{c: two for c in ("time_s:exponent", "time_s:exponent_upper", "extra_peak_bytes:exponent",
                                              "extra_peak_bytes:exponent_upper")})))
    if not rows.empty and "time_s" in rows.columns:
        shape = [c for c in ("seq_len", "batch", "heads", "kv_heads", "head_dim", "causal") if c in rows.columns]
        ratios = aggregate.ratio_to_baseline(rows, "attention", baseline, "time_s")
        ratios = ratios.pivot_table(index=["machine", "direction", "dtype", *shape], columns="impl",
                                    values="time_s_vs_baseline", dropna=False).dropna(how="all").reset_index()
        impls = [c for c in ratios.columns if c not in ("machine", "direction", "dtype", *shape)]
        s.add(table(f"Time relative to {baseline} at the same shape (×; below 1 is faster)", ratios,
                    {"machine": "machine", "direction": "direction", "dtype": "dtype", **{c: c for c in shape},
                     **{i: i for i in impls}}, x.fmt(**{i: fmt.ratio for i in impls})))
        best = rows.sort_values("tflops", ascending=False).drop_duplicates(["machine", "impl", "direction", "dtype"])
        s.add(table("Best throughput per impl, and as a fraction of this run's measured matmul peak", best,
                    {"machine": "machine", "impl": "impl", "direction": "direction", "dtype": "dtype",
                     "seq_len": "at seq_len", "tflops": "TFLOP/s", "frac_of_measured_peak": "of measured peak",
                     "max_rel_error": "max rel. error"}, x.fmt()))
    return s


def precision_section(x: Inputs) -> Section:
    s = Section("precision", "Precision and quantization")
    baseline = x.baselines["precision"]
    if views.suite_rows(x.cases, "precision").empty:
        return _absent(s)
    rows = views.precision(x.med)
    for fig in render_precision.figures(rows, x.outdir):
        s.add(fig)
    if rows.empty:
        return s
    if "decode_tokens_per_s" in rows.columns:
        rows = aggregate.ratio_to_baseline(rows, "precision", baseline, "decode_tokens_per_s")
    s.add(table(f"Per model and precision: memory and speed (decode relative to {baseline}; above 1 is faster). "
                "TTFT, decode and inter-token latency come from per-token stamps inside the same timed calls.", rows,
                {"machine": "machine", "model": "model", "weights": "weights", "precision": "precision",
                 "batch": "batch", "bits_per_param": "bits/param", "weight_bytes": "weight memory", "model_bytes": "whole model",
                 "load_s": "load", "ttft_s": "time to first token", "decode_tokens_per_s": "decode tokens/s",
                 "decode_tokens_per_s_vs_baseline": "decode vs baseline", "itl_p50_s": "inter-token p50",
                 "itl_p99_s": "inter-token p99", "token_clock_overhead_frac": "per-token clock cost",
                 "peak_bytes": "peak"},
                x.fmt(decode_tokens_per_s_vs_baseline=fmt.ratio, token_clock_overhead_frac=fmt.percent)))
    if (compiled := _compiled_table(x, "precision", "decode_s", "decode steps of generate, static KV cache when "
                                    "compiled")) is not None:
        s.add(compiled)
    same_bits = views.ao_vs_bnb(rows, x.cases)
    if not same_bits.empty:
        for c in ("kl_vs_ref", "top1_agreement", "heldout_accuracy"):
            if c not in same_bits.columns:
                same_bits[c] = float("nan")
        trained = (same_bits["weights"] != "random weights") if "weights" in same_bits.columns else False
        same_bits = same_bits.assign(
            kl_text=views.with_interval(same_bits, "kl_vs_ref", fmt.number).where(trained, "random weights"),
            top1_text=views.with_interval(same_bits, "top1_agreement", fmt.percent).where(trained, ""),
            accuracy_text=views.with_interval(same_bits, "heldout_accuracy", fmt.percent).where(trained, ""))
        s.add(table("torchao against bitsandbytes/native at the same nominal bits (8-bit float rows: torchao FP8 beside "
                    "the native 16-bit formats, as bitsandbytes has no FP8). Quality only on trained weights; a case "
                    "that did not run shows its outcome and reason.", same_bits,
                    {"machine": "machine", "model": "model", "weights": "weights", "bits_group": "bits",
                     "library": "library", "precision": "precision", "status": "status",
                     "bits_per_param": "bits/param", "weight_bytes": "weight memory", "peak_bytes": "peak",
                     "decode_tokens_per_s": "decode tokens/s", "ttft_s": "time to first token",
                     "kl_text": "KL vs ref (nats)", "top1_text": "top-1 agreement", "perplexity": "perplexity",
                     "accuracy_text": "held-out task accuracy"},
                    x.fmt()))
    judged = views.quality_rows(rows)
    if judged.empty:
        s.add(Paragraph("No quality on trained weights in these runs: quality from random weights shows how far each "
                        "format moves a random network's logits, which says nothing about a trained model, so it is "
                        "not shown and decides no claim. The trained-gpt2 cases (or --model) measure it.", "muted"))
        return s
    judged = judged.assign(kl_text=views.with_interval(judged, "kl_vs_ref", fmt.number),
                           top1_text=views.with_interval(judged, "top1_agreement", fmt.percent),
                           accuracy_text=views.with_interval(judged, "heldout_accuracy", fmt.percent))
    source = "; ".join(sorted(set(judged["quality_text"].dropna().astype(str)))) if "quality_text" in judged.columns else ""
    s.add(table("Quality on trained weights against the fp32 reference, 95% intervals (KL and top-1: bootstrap "
                "over held-out sequences; task accuracy: Wilson over held-out capitals the fine-tune never asked "
                f"about). Text: {source or 'as recorded'}.", judged,
                {"machine": "machine", "model": "model", "weights": "weights", "precision": "precision",
                 "bits_per_param": "bits/param", "kl_text": "KL vs ref (nats)", "top1_text": "top-1 agreement",
                 "quality_items": "sequences", "perplexity": "perplexity", "reference_perplexity": "fp32 perplexity",
                 "accuracy_text": "held-out task accuracy", "reference_heldout_accuracy": "fp32 task accuracy",
                 "pretrain_corpus": "pre-training corpus"},
                x.fmt(reference_heldout_accuracy=fmt.percent)))
    return s


def finetune_section(x: Inputs) -> Section:
    s = Section("finetune", "Fine-tuning: full vs LoRA vs QLoRA")
    baseline = x.baselines["finetune"]
    if views.suite_rows(x.cases, "finetune").empty:
        return _absent(s)
    cost, conv = views.finetune(x.med)
    sweep = views.rank_sweep(cost, conv)
    curves = views.loss_curves(x.series, conv)
    for fig in render_finetune.figures(cost, views.memory_breakdown(cost), sweep, curves, x.outdir):
        s.add(fig)
    if sweep.empty:
        s.add(Paragraph("No rank-sweep figure: it needs LoRA at two or more ranks on one model and target set.",
                        "muted"))
    if not cost.empty and "step_s" in cost.columns:
        cost = aggregate.ratio_to_baseline(cost, "finetune", baseline, "step_s")
        s.add(table(f"Cost per method (step time relative to {baseline}; below 1 is faster)", cost,
                    {"machine": "machine", "model": "model", "variant": "method", "step_s": "step time",
                     "step_s_vs_baseline": "vs baseline", "tokens_per_s": "tokens/s", "peak_bytes": "peak",
                     "static_bytes_per_param": "static bytes/param", "trainable_params": "trainable params",
                     "trainable_frac": "trainable fraction", "adapter_bytes": "adapter file"},
                    x.fmt(step_s_vs_baseline=fmt.ratio, static_bytes_per_param="{:.2f}".format)))
    if (compiled := _compiled_table(x, "finetune", "step_s", "fine-tune step")) is not None:
        s.add(compiled)
    if not conv.empty:
        conv = conv.assign(accuracy_text=views.with_interval(conv, "accuracy", fmt.percent))
        s.add(table("Convergence: the capital-city fine-tune per method and rank, from the same pre-trained weights "
                    "(QLoRA: the same weights in NF4, same rank, data and steps as LoRA); held-out accuracy with its "
                    "95% Wilson interval", conv,
                    {"machine": "machine", "model": "model", "variant": "method", "base_precision": "base",
                     "initial_loss": "initial loss", "final_loss": "final loss", "accuracy_text": "held-out accuracy",
                     "train_accuracy": "train accuracy", "trainable_params": "trainable params",
                     "weight_bytes": "weights", "peak_bytes": "peak", "finetune_s": "fine-tune time",
                     "pretrain_corpus": "pre-training corpus"}, x.fmt(train_accuracy=fmt.percent)))
        qlora = claims.qlora_matches_lora(x.med, x.cases)
        if qlora[2] != claims.UNMEASURED:
            s.add(Paragraph(f"What QLoRA costs in quality, for what memory saved: {qlora[1]} ({qlora[2]}).".replace("\n", "; ")))
    else:
        s.add(Paragraph(f"Convergence cases: {NOT_MEASURED}.", "muted"))
    merges = views.merge_rows(x.med)
    if not merges.empty:
        s.add(table("Merged vs unmerged LoRA adapter: decode latency per variant (relative to the base model alone) "
                    "and how far merged logits are from unmerged ones", merges,
                    {"machine": "machine", "base": "base", "variant": "variant", "decode_s": "decode time",
                     "decode_vs_base": "vs base", "itl_p50_s": "inter-token p50", "itl_p99_s": "inter-token p99",
                     "merge_s": "merge time", "merge_max_abs_diff": "max |logit diff|",
                     "merge_tolerance": "tolerance", "merge_top1_agreement": "top-1 vs unmerged",
                     "merge_requantized": "re-quantized"},
                    x.fmt(decode_vs_base=fmt.ratio, merge_top1_agreement=fmt.percent, merge_max_abs_diff=fmt.number,
                          merge_tolerance=fmt.number, merge_requantized=str)))
    return s


def scaling_section(x: Inputs) -> Section | None:
    """Distributed fine-tune cases (DDP/FSDP over world sizes); only when present."""
    rows = views.suite_rows(x.med, "finetune")
    if rows.empty or "group" not in rows.columns:
        return None
    rows = rows[rows["group"] == views.DISTRIBUTED_GROUP]
    if rows.empty:
        return None
    s = Section("scaling", "Distributed fine-tuning: scaling with world size")
    s.add(render_scaling.figure(rows, x.outdir))
    s.add(table("Per case: the slowest rank's step, weak-scaling efficiency against world size 1 (same per-rank "
                "batch, same case), throughput, communication time and the largest rank's peak (live malloc bytes, what "
                "sharding shards, and the primary view: RSS on CPU, allocated on CUDA), beside the same case's "
                "world-size-1 run", rows,
                {"machine": "machine", "model": "model", "strategy": "strategy", "method": "method",
                 "world_size": "ranks", "backend": "backend", "step_s": "step time", "ws1_step_s": "step at 1 rank",
                 "scaling_efficiency": "efficiency", "tokens_per_s": "tokens/s", "tokens_per_s_per_rank": "tokens/s/rank",
                 "comm_s": "comm time (DDP)", "cpu_peak_malloc_bytes": "live peak (malloc, largest rank)",
                 "ws1_cpu_peak_malloc_bytes": "live peak at 1 rank", "peak_bytes": "peak (largest rank)",
                 "ws1_cpu_peak_rss_bytes": "RSS peak at 1 rank"},
                x.fmt(scaling_efficiency=fmt.ratio, world_size=fmt.number)))
    return s


def machines_section(x: Inputs) -> Section:
    s = Section("machines", "Machines compared")
    comparison = aggregate.machine_comparison(x.med)
    if comparison.empty:
        n = x.med["machine"].nunique()
        return s.add(Paragraph(f"{n} machine{'s' if n != 1 else ''} with cases in common: a comparison needs runs "
                               f"from two or more machines sharing cases ({NOT_MEASURED}).", "muted"))
    for fig in render_machines.figures(comparison, x.outdir):
        s.add(fig)
    wide = comparison.pivot_table(index=["suite", "case_id"], columns="machine", values="value").reset_index()
    ratio = comparison.pivot_table(index=["suite", "case_id"], columns="machine", values="ratio_to_reference")
    reference = comparison["reference"].iloc[0]
    others = [m for m in ratio.columns if m != reference]
    for m in others:
        wide[f"ratio {m}"] = ratio[m].to_numpy()
    wide = wide.sort_values(f"ratio {others[0]}") if others else wide
    short = x.fmt()["machine"]
    cols = {"suite": "suite", "case_id": "case"} | {m: f"time_s on {short(m)}" for m in ratio.columns}
    cols |= {f"ratio {m}": f"{short(m)} / {short(reference)}" for m in others}
    shown = wide.head(MACHINE_TABLE_ROWS)
    note = f" (first {MACHINE_TABLE_ROWS} of {len(wide)}, fastest relative first; all in cases.csv)" if len(wide) > len(shown) else ""
    s.add(table(f"Median time of each shared case, side by side{note}", shown, cols,
                {m: fmt.seconds for m in ratio.columns} | {f"ratio {m}": fmt.ratio for m in others}))
    return s


def hardware_section(x: Inputs) -> Section:
    s = Section("hardware", "GPU datasheet, cost and energy")
    gpus = costs.machines(x.runs, x.cases, x.prices_path)
    if gpus.empty:
        return s.add(Paragraph("No GPU from the hardware catalog in these runs (a CPU run has no datasheet peak or "
                               f"rental price): {NOT_MEASURED}.", "muted"))
    s.add(table("Catalog entry of each GPU (prices drift: date and source beside each; override with --prices)",
                gpus, {"machine": "machine", "gpu_name": "device name", "gpu_catalog_id": "catalog id",
                       "gpu_memory_bytes": "memory", "memory_bandwidth_bytes_per_s": "bandwidth", "tdp_w": "TDP (W)",
                       "price_per_hour_usd": "USD per hour", "price_date": "price date", "price_source": "price source",
                       "catalog_unverified": "unverified figures"}, x.fmt(price_per_hour_usd="{:.2f}".format)))
    rows = costs.per_case(x.med, gpus)
    rows = rows[rows[costs.ROW_METRICS].notna().any(axis=1)]
    attention = rows[rows["suite"] == "attention"]
    if not attention.empty:
        attention = attention.sort_values("frac_of_catalog_peak", ascending=False)
        attention = attention.drop_duplicates(["machine", "impl", "direction", "dtype"])
    shown = pd.concat([attention, rows[rows["suite"] != "attention"]])
    return s.add(table("Measured against the datasheet: attention best per impl, every decode and training case", shown,
                       {"machine": "machine", "suite": "suite", "case_id": "case", "tflops": "TFLOP/s",
                        "frac_of_catalog_peak": "of datasheet peak", "decode_frac_of_bandwidth": "of memory bandwidth",
                        "usd_per_million_decode_tokens": "USD per 1M decode tokens",
                        "usd_per_million_train_tokens": "USD per 1M training tokens",
                        "tokens_per_joule": "tokens per joule"},
                       x.fmt(usd_per_million_decode_tokens="{:.3g}".format,
                             usd_per_million_train_tokens="{:.3g}".format, tokens_per_joule="{:.3g}".format)))


def fit_section(x: Inputs) -> Section | None:
    """Largest sequence length or batch within a memory budget (``effbench fit`` records); only when present."""
    rows = views.suite_rows(x.med, "fit")
    if rows.empty:
        return None
    return Section("fit", "Largest that fits").add(table(
        "Largest size that ran within the memory budget, and the next step up that did not", rows,
        {"machine": "machine", "target_suite": "suite", "base_case": "case", "vary": "grows", "budget_bytes": "budget",
         "largest_fit": "largest that fits", "smallest_fail": "next step (did not fit)",
         "largest_fit_peak_bytes": "its peak", "probes": "probes"},
        x.fmt(largest_fit=fmt.number, smallest_fail=fmt.number, probes=fmt.number)))


def calibration_section(x: Inputs) -> Section:
    s = Section("calibration", "Measured ceilings (calibration)")
    rows = aggregate.ok(views.suite_rows(x.cases, "calibration"))
    if rows.empty:
        return _absent(s)
    return s.add(table("This machine's measured matmul throughput and copy bandwidth", rows,
                       {"run": "run", "machine": "machine", "case_id": "case", "tflops": "TFLOP/s",
                        "bandwidth_bytes_per_s": "bandwidth", "time_s": "median time"}, x.fmt()))


def outcomes_section(cases) -> Section:
    s = Section("outcomes", "Outcomes")
    counts = aggregate.outcome_counts(cases)
    s.add(table("Cases per outcome", counts, {c: c for c in counts.columns}, {c: str for c in counts.columns}))
    reasons = aggregate.outcome_reasons(cases)
    if reasons.empty:
        return s.add(Paragraph("Every case ran (outcome ok)."))
    return s.add(table("Why cases did not run: unsupported, out of memory, errors", reasons,
                       {"suite": "suite", "outcome": "outcome", "reason": "reason", "n_cases": "cases",
                        "examples": "e.g."}, {"n_cases": str}))


def _flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in (record or {}).items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        elif value is None:
            out[f"{prefix}{key}"] = "–"
        else:  # numbers by the unit in their name (memory_bytes in GiB), everything else as recorded
            out[f"{prefix}{key}"] = fmt.by_name(key, value) if isinstance(value, (int, float)) else str(value)
    return out


def environment_section(runs) -> Section:
    s = Section("environment", "Environment")
    flat = {run: _flatten(env) for run, env in zip(runs["run"], runs["environment"], strict=True)}
    frame = pd.DataFrame(flat).fillna("–").reset_index().rename(columns={"index": "field"})
    return s.add(table("The environment record of each run (machine_info.effbench)", frame,
                       {c: c for c in frame.columns}))


def build(runs, cases, series, problems, outdir: Path, baseline: str | None = None,
          prices_path: str | None = None) -> Document:
    """Everything after tidy: aggregate, check claims, draw figures into ``outdir/figures``, lay out."""
    x = Inputs(cases, aggregate.medians(cases), series, resolve_baselines(cases, baseline), outdir, runs, prices_path)
    machines = list(dict.fromkeys(cases["machine"]))
    doc = Document("effbench report", f"{len(runs)} run(s) on {len(machines)} machine(s): {', '.join(machines)}")
    doc.sections = [
        overview(runs, cases, problems),
        claims_section(x),
        attention_section(x),
        precision_section(x),
        finetune_section(x),
        scaling_section(x),
        machines_section(x),
        hardware_section(x),
        fit_section(x),
        calibration_section(x),
        outcomes_section(cases),
        environment_section(runs),
    ]
    doc.sections = [section for section in doc.sections if section is not None]
    return doc
