"""Per-section slices of the aggregated tables: the exact rows and derived columns each figure draws.

Aggregation stays in :mod:`bench_lib.report.aggregate`; this module picks and labels (which attention
shape is the headline, what a fine-tune variant is called, which precisions are on the quality/memory
Pareto front) so that rendering does no arithmetic and no selection of its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench_lib.report import aggregate

ATTN_SHAPE = ["heads", "kv_heads", "head_dim", "causal"]
FINETUNE_COST_GROUP = "convergence"  # rows of this group are the convergence study, not the cost grid
MERGE_GROUP = "merge"  # decode with a LoRA adapter unmerged and merged: neither cost grid nor convergence
DISTRIBUTED_GROUP = "distributed"  # DDP/FSDP over several ranks: the scaling section, not the cost grid


def suite_rows(df: pd.DataFrame, suite: str) -> pd.DataFrame:
    return df[df["suite"] == suite] if "suite" in df.columns else df.iloc[0:0]


def headline_shape(rows: pd.DataFrame) -> dict:
    """The most frequent (heads, kv_heads, head_dim, causal) among attention rows: the figures' shape."""
    cols = [c for c in ATTN_SHAPE if c in rows.columns]
    if rows.empty or not cols:
        return {}
    counts = rows[cols].astype(str).value_counts(sort=True)
    first = dict(zip(cols, counts.index[0], strict=True))
    return {c: rows.loc[rows[cols].astype(str).eq(pd.Series(first)).all(axis=1), c].iloc[0] for c in cols}


def _on_shape(rows: pd.DataFrame, shape: dict) -> pd.DataFrame:
    mask = pd.Series(True, index=rows.index)
    for col, value in shape.items():
        mask &= rows[col].astype(str) == str(value)
    return rows[mask]


def attention(med: pd.DataFrame, cases: pd.DataFrame) -> dict:
    """-> {"rows", "points", "oom", "exponents", "shape"}.

    rows: every ok attention row with ``frac_of_measured_peak`` (for tables);
    points: rows of the headline shape in sweeps of two or more lengths, with ``extra_peak_bytes_per_seq``
    (extra peak / batch), ``panel`` (machine and dtype) and ``legend`` (impl with its fitted memory
    exponent over the longer half of the sweep, e.g. ``eager (n^2.00)``); one-length variations stay in ``rows`` only;
    oom: out-of-memory cases of the headline shape (seq_len and impl, to mark where they happened);
    exponents: :func:`aggregate.scaling_exponents` of every group (all shapes).
    """
    rows = suite_rows(aggregate.fraction_of_measured_peak(med), "attention")
    shape = headline_shape(rows)
    exponents = aggregate.scaling_exponents(rows)
    points = _on_shape(rows, shape).copy()
    oom = _on_shape(suite_rows(cases, "attention"), shape)
    oom = oom[oom["outcome"] == "oom"].copy()
    out = {"rows": rows, "points": points.iloc[0:0], "oom": oom, "exponents": exponents, "shape": shape}
    if points.empty:
        return out
    points["extra_peak_bytes_per_seq"] = points["extra_peak_bytes"] / points["batch"]
    points["panel"] = points["machine"] + " · " + points["dtype"].astype(str)
    lengths = points.groupby(["panel", "direction"])["seq_len"].transform("nunique")
    points = points[lengths >= 2]
    mem = exponents[exponents["metric"] == "extra_peak_bytes"]
    key = ["machine", "impl", "direction", "dtype"]
    points = points.merge(mem[key + ["exponent_upper"]].drop_duplicates(key), on=key, how="left")
    points["legend"] = [f"{i} (n^{e:.2f})" if np.isfinite(e) else f"{i} (no fit)"
                        for i, e in zip(points["impl"], points["exponent_upper"].astype(float), strict=True)]
    oom["panel"] = oom["machine"] + " · " + oom["dtype"].astype(str)
    out["points"], out["oom"] = points, oom
    return out


def model_size(rows: pd.DataFrame) -> pd.Series:
    """A per-row number that orders models by size: ``total_params``, else ``linear_params`` (precision
    suite), else the model's largest ``weight_bytes``. Torch-free on purpose: reports render anywhere."""
    size = pd.Series(np.nan, index=rows.index)
    for col in ("total_params", "linear_params"):
        if col in rows.columns:
            size = size.fillna(rows.groupby("model")[col].transform("max"))
    if "weight_bytes" in rows.columns:
        size = size.fillna(rows.groupby("model")["weight_bytes"].transform("max"))
    return size


def by_model_size(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by machine, then model size, smallest first (stable within a model)."""
    return rows.assign(_size=model_size(rows)).sort_values(["machine", "_size"], kind="stable").drop(columns="_size")


def pareto_front(rows: pd.DataFrame, cost: str, loss: str) -> pd.Series:
    """True where no other row of the same machine and model has cost <= and loss <= with one strictly less."""
    front = pd.Series(False, index=rows.index)
    for _, group in rows.groupby(["machine", "model"], sort=False):
        c, q = group[cost].to_numpy(float), group[loss].to_numpy(float)
        for i, idx in enumerate(group.index):
            if not (np.isfinite(c[i]) and np.isfinite(q[i])):
                continue
            dominated = (c <= c[i]) & (q <= q[i]) & ((c < c[i]) | (q < q[i]))
            front[idx] = not dominated.any()
    return front


def precision(med: pd.DataFrame) -> pd.DataFrame:
    """ok precision rows ordered by model size, with ``pareto`` (bits per param vs KL) and ``weights`` (random
    weights, trained weights: effbench's own, or real weights: a ``--model`` checkpoint)."""
    rows = suite_rows(med, "precision").copy()
    if rows.empty:
        return rows
    rows = by_model_size(rows)
    if {"bits_per_param", "kl_vs_ref"} <= set(rows.columns):
        rows["pareto"] = pareto_front(rows, "bits_per_param", "kl_vs_ref")
    synthetic = rows["synthetic_weights"] if "synthetic_weights" in rows.columns else pd.Series(True, index=rows.index)
    trained = rows["trained_weights"] if "trained_weights" in rows.columns else pd.Series(False, index=rows.index)
    rows["weights"] = np.where(synthetic.fillna(True).astype(bool), "random weights",
                               np.where(trained.fillna(False).astype(bool), "trained weights", "real weights"))
    return rows


ATTENTION_PARAMS = ("attention", "attn_impl")  # the fine-tune suite's name for the attention implementation
DEFAULT_ATTENTION = "sdpa"


def variant_label(row) -> str:
    """``lora r8 attn +ckpt +eager``: method, rank and targets for adapters, then non-default options."""
    parts = [str(row.get("method"))]
    if pd.notna(row.get("rank")):
        parts.append(f"r{int(row['rank'])}")
        if isinstance(row.get("targets"), str):
            parts.append(row["targets"])
    if row.get("checkpointing") is True:
        parts.append("+ckpt")
    impl = next((row[k] for k in ATTENTION_PARAMS if isinstance(row.get(k), str)), DEFAULT_ATTENTION)
    if impl != DEFAULT_ATTENTION:
        parts.append(f"+{impl}")
    return " ".join(parts)


METHOD_ORDER = ["full", "full_amp", "lora", "qlora"]


def variant_key(row) -> tuple:
    """Sort key: method (full, full_amp, lora, qlora), rank, targets, then plain before +ckpt / +eager."""
    method = str(row.get("method"))
    rank = row.get("rank") if pd.notna(row.get("rank")) else -1
    options = variant_label(row).count("+")
    position = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return (options, position, method, float(rank), str(row.get("targets") or ""))


def finetune(med: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> (cost rows with ``variant`` and ``variant_order``, ``static_bytes_per_param`` ..., convergence
    rows), smallest model first, variants in :func:`variant_key` order within a model."""
    rows = aggregate.bytes_per_param(suite_rows(med, "finetune"))
    if rows.empty:
        return rows, rows
    records = rows.to_dict("records")
    rows["variant"] = [variant_label(r) for r in records]
    keys = [variant_key(r) for r in records]
    rank_of = {k: i for i, k in enumerate(sorted(set(keys)))}
    rows["variant_order"] = [rank_of[k] for k in keys]
    rows = rows.sort_values("variant_order", kind="stable")
    group = rows["group"] if "group" in rows.columns else pd.Series(None, index=rows.index)
    conv = rows[group == FINETUNE_COST_GROUP]
    cost = rows[~group.isin([FINETUNE_COST_GROUP, MERGE_GROUP, DISTRIBUTED_GROUP])]
    return by_model_size(cost), conv


def merge_rows(med: pd.DataFrame) -> pd.DataFrame:
    """ok merge cases with ``decode_vs_base`` (decode time over the base variant's on the same machine and base
    precision), ordered base, unmerged, merged."""
    rows = suite_rows(med, "finetune")
    if rows.empty or "group" not in rows.columns:
        return rows.iloc[0:0]
    rows = rows[rows["group"] == MERGE_GROUP].copy()
    if rows.empty or "decode_s" not in rows.columns:
        return rows.iloc[0:0]
    plain = rows[rows["variant"] == "base"].set_index(["machine", "base"])["decode_s"]
    key = pd.MultiIndex.from_frame(rows[["machine", "base"]])
    rows["decode_vs_base"] = rows["decode_s"].to_numpy() / plain.reindex(key).to_numpy()
    order = {"base": 0, "unmerged": 1, "merged": 2}
    return rows.sort_values(["machine", "base", "variant"], key=lambda c: c.map(order) if c.name == "variant" else c)


def quality_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Precision rows whose quality can decide a claim: trained weights or a checkpoint, not random weights."""
    if rows.empty or "weights" not in rows.columns:
        return rows.iloc[0:0]
    return rows[rows["weights"] != "random weights"]


def rank_sweep(cost: pd.DataFrame, conv: pd.DataFrame) -> pd.DataFrame:
    """LoRA rows across ranks, long form (rank, metric, value, series label), from both groups.

    Cost grid gives trainable params and step time (per model and targets, no checkpointing);
    convergence gives final loss and held-out accuracy.
    """
    out = []
    for source, metrics in ((cost, ["trainable_params", "step_s"]), (conv, ["final_loss", "accuracy"])):
        if source.empty:
            continue
        lora = source[(source["method"] == "lora") & source["rank"].notna()]
        if "checkpointing" in lora.columns:
            lora = lora[lora["checkpointing"] != True]  # noqa: E712 (object column: True, False or None)
        for impl in ATTENTION_PARAMS:  # the sweep runs on the default attention; eager variants are elsewhere
            if impl in lora.columns:
                lora = lora[lora[impl].fillna(DEFAULT_ATTENTION) == DEFAULT_ATTENTION]
        for metric in metrics:
            if metric not in lora.columns:
                continue
            part = lora.reindex(columns=["machine", "machine_slug", "model", "targets", "rank", metric]).dropna(subset=[metric])
            part = part.rename(columns={metric: "value"}).assign(metric=metric)
            model = part["model"].fillna("convergence" if source is conv else "").astype(str)
            part["line"] = (model + " " + part["targets"].fillna("").astype(str)).str.strip()
            # a sweep needs two ranks on a line; one-rank lines (smoke runs) stay in the tables
            ranks = part.groupby(["machine", "line"])["rank"].transform("nunique")
            out.append(part[ranks >= 2])
    cols = ["machine", "machine_slug", "model", "targets", "rank", "value", "metric", "line"]
    out = [part for part in out if not part.empty]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def loss_curves(series: pd.DataFrame, conv: pd.DataFrame) -> pd.DataFrame:
    """Series rows labelled for plotting: ``loss_curve`` by the case's variant (``full``, ``lora r8 attn``),
    ``pretrain_loss`` once per run (every convergence case may carry the same shared pre-training curve)."""
    rows = series[series["series"].isin(["pretrain_loss", "loss_curve"])]
    if rows.empty or conv.empty:
        return rows.assign(variant=pd.Series(dtype=str))
    labels = conv.drop_duplicates("case_id").set_index("case_id")["variant"]
    rows = rows[rows["case_id"].isin(labels.index)]
    pre = rows[rows["series"] == "pretrain_loss"]
    first = pre.drop_duplicates("run")[["run", "case_id"]]
    pre = pre.merge(first, on=["run", "case_id"]).assign(variant="pre-training")
    fine = rows[rows["series"] == "loss_curve"]
    return pd.concat([pre, fine.assign(variant=fine["case_id"].map(labels))], ignore_index=True)


BREAKDOWN = [("weight_bytes", "weights"), ("grad_bytes", "gradients"), ("optimizer_state_bytes", "optimizer state"),
             ("activation_bytes", "activations")]


def memory_breakdown(cost: pd.DataFrame) -> pd.DataFrame:
    """Stacked-bar rows: machine, model, variant, component, bytes, bottom (sum of the components below), top."""
    cols = ["machine", "model", "variant", "component", "bytes", "bottom", "top"]
    parts = [(c, label) for c, label in BREAKDOWN if c in cost.columns]
    if cost.empty or not parts:
        return pd.DataFrame(columns=cols)
    out = []
    for row in cost.to_dict("records"):
        bottom = 0.0
        for col, label in parts:
            value = row[col] if pd.notna(row[col]) else 0.0
            out.append({"machine": row["machine"], "model": row["model"], "variant": row["variant"],
                        "component": label, "bytes": float(value), "bottom": bottom, "top": bottom + float(value)})
            bottom += float(value)
    return pd.DataFrame(out, columns=cols)


def with_interval(rows: pd.DataFrame, metric: str, show) -> pd.Series:
    """``value [low, high]`` text of ``metric`` and its recorded 95% interval (``metric_ci_low/high``), with
    ``(n items)`` when ``metric_items`` is recorded; the value alone where no interval was recorded."""
    out = []
    for row in rows.to_dict("records"):
        value, lo, hi = row.get(metric), row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
        if value is None or pd.isna(value):
            out.append(None)
            continue
        text = show(value) + (f" [{show(lo)}, {show(hi)}]" if pd.notna(lo) and pd.notna(hi) else "")
        items = row.get(f"{metric}_items")
        out.append(text + (f" ({int(items)} items)" if items is not None and pd.notna(items) else ""))
    return pd.Series(out, index=rows.index, dtype=object)


def compiled_vs_eager(med: pd.DataFrame, suite: str, time_col: str) -> pd.DataFrame:
    """Each ``<id>-compiled`` case of ``suite`` beside the eager case ``<id>`` on the same machine: eager and
    compiled medians of ``time_col``, ``speedup`` = eager / compiled (above 1: compiling is faster; both
    from the same run, so the ratio of medians is fair), compile_s, graph_breaks, recompiles, and the
    peak memory of each. Empty when no pair is in the runs."""
    cols = ["machine", "eager_id", "eager_s", "compiled_s", "speedup", "compile_s", "graph_breaks", "recompiles",
            "eager_peak_bytes", "compiled_peak_bytes"]
    rows = suite_rows(med, suite).copy()
    if rows.empty or time_col not in rows.columns:
        return pd.DataFrame(columns=cols)
    ids = rows["case_id"].astype(str)
    comp = rows[ids.str.endswith("-compiled")].assign(eager_id=lambda d: d["case_id"].str[: -len("-compiled")])
    eager = rows[~ids.str.endswith("-compiled")]
    peak = "peak_bytes" if "peak_bytes" in rows.columns else None
    keep = ["machine", "case_id", time_col] + ([peak] if peak else [])
    pairs = comp.merge(eager[keep], left_on=["machine", "eager_id"], right_on=["machine", "case_id"],
                       suffixes=("_c", "_e"))
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame({"machine": pairs["machine"], "eager_id": pairs["eager_id"],
                        "eager_s": pairs[f"{time_col}_e"], "compiled_s": pairs[f"{time_col}_c"]})
    out["speedup"] = out["eager_s"] / out["compiled_s"]
    for c in ("compile_s", "graph_breaks", "recompiles"):
        out[c] = pairs[c] if c in pairs.columns else np.nan
    out["eager_peak_bytes"] = pairs[f"{peak}_e"] if peak else np.nan
    out["compiled_peak_bytes"] = pairs[f"{peak}_c"] if peak else np.nan
    return out[cols].reset_index(drop=True)


SAME_BITS = {"int8": "8-bit integer", "ao_int8wo": "8-bit integer", "ao_int8dq": "8-bit integer",
             "nf4": "4-bit", "fp4": "4-bit", "ao_int4wo": "4-bit",
             "bf16": "8-bit float (16-bit native beside it)", "fp16": "8-bit float (16-bit native beside it)",
             "ao_fp8wo": "8-bit float (16-bit native beside it)", "ao_fp8dq": "8-bit float (16-bit native beside it)"}
_BITS_ORDER = list(dict.fromkeys(SAME_BITS.values()))


def ao_vs_bnb(rows: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """torchao precisions beside the bitsandbytes/native ones of the same nominal bits, per machine, model and
    weights, for every (machine, model) that has a torchao case. ``rows``: :func:`precision` (ok cases, with
    their metrics and ``weights``); ``cases``: every outcome, so a case that did not run shows
    ``status`` = "<outcome>: <reason>" instead of a blank. Adds ``bits_group`` and ``library``."""
    prec = suite_rows(cases, "precision")
    if prec.empty or "precision" not in prec.columns:
        return prec.iloc[0:0]
    with_ao = prec[prec["precision"].astype(str).str.startswith("ao_")][["machine", "model"]].drop_duplicates()
    if with_ao.empty:
        return prec.iloc[0:0]
    ok_rows = rows.assign(status="ok") if not rows.empty else rows
    failed = prec[prec["outcome"] != "ok"].drop_duplicates(["machine", "case_id"], keep="last")
    failed = failed[~failed.set_index(["machine", "case_id"]).index.isin(
        ok_rows.set_index(["machine", "case_id"]).index if not ok_rows.empty else [])]
    failed = failed.assign(status=failed["outcome"].astype(str) + ": " + failed["reason"].fillna("no reason").astype(str))
    out = pd.concat([ok_rows, failed], ignore_index=True)
    out = out[out["precision"].isin(list(SAME_BITS))]
    out = out.merge(with_ao, on=["machine", "model"])
    if out.empty:
        return out
    out["bits_group"] = pd.Categorical(out["precision"].map(SAME_BITS), _BITS_ORDER, ordered=True)
    out["library"] = np.where(out["precision"].str.startswith("ao_"), "torchao",
                              np.where(out["precision"].isin(["int8", "nf4", "fp4"]), "bitsandbytes", "native"))
    sort = [c for c in ("machine", "model", "weights", "bits_group", "library", "precision") if c in out.columns]
    return out.sort_values(sort, kind="stable").reset_index(drop=True)
