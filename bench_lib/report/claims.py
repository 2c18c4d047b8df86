"""The tutorial's claims, checked against the runs given: one row per claim, measured value and verdict.

Each check reads the median table (:func:`bench_lib.report.aggregate.medians`, one row per machine x ok
case) and, for out-of-memory evidence, the full cases table. A check never invents a number: with no
matching cases the verdict is "not measured in these runs". Thresholds are stated in each row's ``basis``.
Source of every claim: ``shared/seed/tutorial-efficient-finetuning.txt``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench_lib.report import aggregate, views
from bench_lib.report.fmt import decimal_gb, number, percent, ratio

HOLDS, FAILS, UNMEASURED = "holds", "does not hold here", "not measured in these runs"
SEVEN_B = 7e9  # the tutorial's "7B model": its GB figures are 7e9 x bytes per weight
COLUMNS = ["number", "claim", "tutorial", "measured", "verdict", "basis"]
MATERIALIZED = ("eager", "sdpa_math")
FLASH = ("sdpa_flash", "flash_attn", "flash_attn_3", "sdpa_cudnn", "sdpa_efficient")


def _rows(med: pd.DataFrame, suite: str, **equal) -> pd.DataFrame:
    rows = views.suite_rows(med, suite)
    for col, value in equal.items():
        if col not in rows.columns:
            return rows.iloc[0:0]
        rows = rows[rows[col].isin(value if isinstance(value, (list, tuple)) else [value])]
    return rows


def _has(rows: pd.DataFrame, *cols: str) -> bool:
    return not rows.empty and all(c in rows.columns and rows[c].notna().any() for c in cols)


def lora_parameter_count(med, cases):
    tutorial = "r=8 on 4096×4096: 2·4096·8 = 65,536 trainable vs 16,777,216 (256× fewer)"
    basis = "per model/targets, trainable params are linear in r (within 1%) across ≥2 ranks"
    rows = _rows(med, "finetune", method=["lora", "qlora"])
    if not _has(rows, "trainable_params", "rank"):
        return tutorial, "no LoRA cases", UNMEASURED, basis
    per_rank = rows.assign(k=rows["trainable_params"] / rows["rank"])
    groups = [g for _, g in per_rank.groupby(["machine", "model", "targets", "method"], dropna=False) if g["rank"].nunique() >= 2]
    if not groups:
        return tutorial, "LoRA cases at one rank only", UNMEASURED, basis
    spread = max(float(g["k"].max() / g["k"].min() - 1) for g in groups)
    frac = rows["trainable_frac"] if "trainable_frac" in rows.columns else rows["trainable_params"] / rows["total_params"]
    measured = (f"{65536 * 256:,} / {2 * 4096 * 8:,} = {4096 * 4096 // (2 * 4096 * 8)}×; in {len(groups)} rank sweeps "
                f"trainable params ∝ r (max spread {percent(spread)}); trainable fraction "
                f"{percent(frac.min())}–{percent(frac.max())} over {len(rows)} LoRA cases")
    return tutorial, measured, HOLDS if spread <= 0.01 else FAILS, basis


def full_finetune_bytes(med, cases):
    tutorial = "7B full fine-tune, FP32 + Adam: ~16 bytes/param ≈ 112 GB"
    basis = "(weights + gradients + optimizer state) / params of method full cases within 10% of 16; × 7e9"
    rows = aggregate.bytes_per_param(_rows(med, "finetune", method="full"))
    if "checkpointing" in rows.columns:
        rows = rows[rows["checkpointing"] != True]  # noqa: E712
    if not _has(rows, "static_bytes_per_param"):
        return tutorial, "no method full cases with a memory breakdown", UNMEASURED, basis
    per_param = float(rows["static_bytes_per_param"].median())
    peak = float(rows["peak_bytes_per_param"].min())
    measured = (f"{per_param:.2f} bytes/param static → {decimal_gb(per_param * SEVEN_B)} for 7B "
                f"(with activations at these sizes: ≥ {peak:.1f} bytes/param)")
    return tutorial, measured, HOLDS if abs(per_param / 16 - 1) <= 0.10 else FAILS, basis


def weight_memory(med, cases):
    tutorial = "7B weights: FP32 ~28 GB, FP16 ~14 GB, INT8 ~7 GB, NF4 ~3.5 GB"
    basis = "measured bits/param × 7e9 within 15% of each figure (FP16 row uses bf16 when fp16 is absent)"
    rows = _rows(med, "precision")
    if not _has(rows, "bits_per_param", "precision"):
        return tutorial, "no precision cases", UNMEASURED, basis
    bits = rows.groupby("precision")["bits_per_param"].median()
    parts, verdicts = [], []
    for label, ids, gb in (("FP32", ["fp32"], 28), ("FP16", ["fp16", "bf16"], 14), ("INT8", ["int8"], 7),
                           ("NF4", ["nf4"], 3.5)):
        pid = next((i for i in ids if i in bits.index and np.isfinite(bits[i])), None)
        if pid is None:
            parts.append(f"{label}: not measured")
            continue
        size = bits[pid] / 8 * SEVEN_B
        parts.append(f"{label} ({pid}, {bits[pid]:.2f} bits): {decimal_gb(size)}")
        verdicts.append(abs(size / (gb * 1e9) - 1) <= 0.15)
    if not verdicts:
        return tutorial, "\n".join(parts), UNMEASURED, basis
    return tutorial, "\n".join(parts), HOLDS if all(verdicts) else FAILS, basis


def _attention_pairs(med):
    """Per (machine, direction, dtype) of the headline shape: (materialized impl, flash impl, rows)."""
    rows = views.suite_rows(med, "attention")
    if rows.empty or not {"impl", "seq_len", "time_s"} <= set(rows.columns):
        return []
    rows = views._on_shape(rows, views.headline_shape(rows))
    out = []
    for key, group in rows.groupby(["machine_slug", "direction", "dtype"], sort=False):
        impls = set(group["impl"])
        slow = next((i for i in MATERIALIZED if i in impls), None)
        fast = next((i for i in FLASH if i in impls), None)
        if slow and fast:
            out.append((key, slow, fast, group))
    return out


def flash_speedup_grows(med, cases):
    tutorial = "flash attention's speedup over materialized attention grows with sequence length"
    basis = "log-log slope of (materialized time / flash time) vs seq_len > 0 in every machine/direction/dtype"
    parts, verdicts = [], []
    for (machine, direction, dtype), slow, fast, group in _attention_pairs(med):
        t = group.pivot_table(index="seq_len", columns="impl", values="time_s")
        speedup = (t[slow] / t[fast]).dropna()
        if len(speedup) < 2:
            continue
        slope, _, _ = aggregate.fit_exponent(speedup.index, speedup.to_numpy())
        verdicts.append(slope > 0)
        parts.append(f"{machine} {direction} {dtype}: {slow}/{fast} {ratio(speedup.iloc[0])} at "
                     f"{int(speedup.index[0])} → {ratio(speedup.iloc[-1])} at {int(speedup.index[-1])}")
    if not verdicts:
        return tutorial, "no materialized/flash pair at two or more lengths", UNMEASURED, basis
    return tutorial, "\n".join(parts), HOLDS if all(verdicts) else FAILS, basis


MIN_SWEEP = 4  # lengths a sweep needs before its exponent is judged (its longer half then has two or more)


def attention_memory_order(med, cases):
    tutorial = "attention memory is O(n²) materialized, O(n) flash"
    basis = (f"log-log exponent of extra peak memory per sequence over the longer half of each sweep of ≥{MIN_SWEEP} "
             "lengths, read as the nearer of 1 (O(n)) and 2 (O(n²)): materialized must read 2 (≥ 1.5), flash 1 (< 1.5)")
    parts, verdicts = [], []
    for (machine, direction, dtype), slow, fast, group in _attention_pairs(med):
        exp = aggregate.scaling_exponents(group, metrics=("extra_peak_bytes",), by=("impl",)).set_index("impl")
        if slow not in exp.index or fast not in exp.index:
            continue
        up, every, lengths = exp["exponent_upper"], exp["exponent"], group["seq_len"]
        judged = lengths.nunique() >= MIN_SWEEP
        if judged:
            verdicts.append(up[slow] >= 1.5 > up[fast])
        parts.append(f"{machine} {direction} {dtype} ({int(lengths.min())}–{int(lengths.max())}"
                     f"{'' if judged else ', too short to judge'}): {slow} n^{up[slow]:.2f}, {fast} n^{up[fast]:.2f} "
                     f"(all lengths: n^{every[slow]:.2f}, n^{every[fast]:.2f})")
    if not verdicts:
        detail = "\n".join(parts) or "no extra-memory fits for a materialized/flash pair"
        return tutorial, detail, UNMEASURED, basis
    return tutorial, "\n".join(parts), HOLDS if all(verdicts) else FAILS, basis


def rank_diminishing_returns(med, cases):
    tutorial = "LoRA rank: r 4→8 often meaningful, r 32→64 rarely helps"
    basis = "convergence cases: final-loss drop from r=4 to 8 larger than from r=32 to 64"
    rows = _rows(med, "finetune", method="lora")
    if "group" in rows.columns:
        rows = rows[rows["group"] == views.FINETUNE_COST_GROUP]
    if not _has(rows, "final_loss", "rank"):
        return tutorial, "no convergence rank sweep", UNMEASURED, basis
    parts, verdicts = [], []
    for machine, group in rows.groupby("machine_slug", sort=False):
        loss = group.groupby("rank")["final_loss"].median()
        if not {4, 8, 32, 64} <= set(loss.index):
            continue
        small, large = loss[4] - loss[8], loss[32] - loss[64]
        verdicts.append(small > large)
        parts.append(f"{machine}: loss drop r4→8 {small:.3f}, r32→64 {large:.3f}")
    if not verdicts:
        return tutorial, "rank sweep lacks r = 4, 8, 32 and 64", UNMEASURED, basis
    return tutorial, "\n".join(parts), HOLDS if all(verdicts) else FAILS, basis


def nf4_quality(med, cases):
    tutorial = "NF4 quality loss is small"
    basis = "nf4 against the reference on the same inputs: top-1 agreement ≥ 0.90 and mean KL ≤ 0.1 nats"
    rows = _rows(med, "precision", precision="nf4")
    if not _has(rows, "kl_vs_ref", "top1_agreement"):
        return tutorial, "no nf4 quality numbers", UNMEASURED, basis
    kl, top1 = float(rows["kl_vs_ref"].max()), float(rows["top1_agreement"].min())
    synthetic = "synthetic_weights" not in rows.columns or rows["synthetic_weights"].fillna(True).astype(bool).any()
    measured = (f"worst over {len(rows)} cases: KL {number(kl)} nats, top-1 agreement {percent(top1)}; median: "
                f"KL {number(rows['kl_vs_ref'].median())} nats, top-1 {percent(rows['top1_agreement'].median())}")
    if synthetic:
        measured += " (random weights: says little about a trained checkpoint)"
    return tutorial, measured, HOLDS if top1 >= 0.90 and kl <= 0.1 else FAILS, basis


def lora_cheaper_per_step(med, cases):
    tutorial = "LoRA is cheaper per step than full fine-tuning"
    basis = "step_s of each LoRA case / method full on the same model, batch, length and options: below 1"
    rows = views.suite_rows(med, "finetune")
    if not _has(rows, "step_s", "method") or not {"full", "lora"} <= set(rows["method"]):
        return tutorial, "needs both full and lora cases", UNMEASURED, basis
    paired = aggregate.ratio_to_baseline(rows, "finetune", "full", "step_s")
    paired = paired[(paired["method"] == "lora") & paired["step_s_vs_baseline"].notna()]
    if paired.empty:
        return tutorial, "no LoRA case has a matching full case", UNMEASURED, basis
    by_model = paired.groupby(["machine_slug", "model"], sort=False)["step_s_vs_baseline"].median()
    parts = [f"{m[1]} on {m[0]}: LoRA step {ratio(v)} of full" for m, v in by_model.items()]
    slower = [m[1] for m, v in by_model.items() if v >= 1]
    if slower:
        parts.append(f"LoRA is NOT faster per step here on {', '.join(slower)}")
    return tutorial, "\n".join(parts), FAILS if slower else HOLDS, basis


def qlora_7b_fits(med, cases):
    tutorial = "QLoRA fine-tunes a 7B model in about 8 GB"
    basis = "a GPU run's qlora case on a ≥6B-parameter model: peak ≤ 10 GB (8 GB + 25%); OOM fails it"
    big = views.suite_rows(cases, "finetune")
    if big.empty or "method" not in big.columns:
        return tutorial, "needs a GPU run with a 7B QLoRA case", UNMEASURED, basis
    big = big[(big["method"] == "qlora") & (big["device"] == "cuda")]
    size = big["total_params"] if "total_params" in big.columns else pd.Series(np.nan, index=big.index)
    big = big[(size >= 6e9) | big["model"].astype(str).str.contains("7b", case=False)]
    if big.empty:
        return tutorial, "needs a GPU run with a 7B QLoRA case", UNMEASURED, basis
    ok = big[big["outcome"] == "ok"]
    if ok.empty:
        outcomes = ", ".join(sorted(set(big["outcome"])))
        return tutorial, f"7B QLoRA did not run ({outcomes})", FAILS if "oom" in outcomes else UNMEASURED, basis
    best = ok.loc[ok["peak_bytes"].idxmin()]
    measured = f"{best['model']} on {best['machine_slug']}: peak {decimal_gb(best['peak_bytes'])} ({best['case_id']})"
    return tutorial, measured, HOLDS if best["peak_bytes"] <= 10e9 else FAILS, basis


CLAIMS = [
    ("LoRA parameter count", lora_parameter_count),
    ("Full fine-tuning memory", full_finetune_bytes),
    ("Weight memory per precision", weight_memory),
    ("Flash speedup grows with length", flash_speedup_grows),
    ("Attention memory O(n²) vs O(n)", attention_memory_order),
    ("LoRA rank diminishing returns", rank_diminishing_returns),
    ("NF4 quality loss small", nf4_quality),
    ("LoRA cheaper per step", lora_cheaper_per_step),
    ("QLoRA 7B in ~8 GB", qlora_7b_fits),
]


def check(med: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """-> one row per claim: number, claim, tutorial, measured, verdict, basis."""
    rows = []
    for n, (name, fn) in enumerate(CLAIMS, 1):
        try:
            tutorial, measured, verdict, basis = fn(med, cases)
        except (KeyError, ValueError, TypeError) as exc:
            # shown in the table, not hidden: a run shape this check does not understand yet
            tutorial, measured, verdict, basis = "", f"could not be checked: {type(exc).__name__}: {exc}", UNMEASURED, ""
        rows.append({"number": n, "claim": name, "tutorial": tutorial, "measured": measured,
                     "verdict": verdict, "basis": basis})
    return pd.DataFrame(rows, columns=COLUMNS)
