"""GPU runs against the hardware catalog: fractions of datasheet peak, of memory bandwidth, dollars per million
tokens and tokens per joule (aggregate stage: DataFrame in, DataFrame out).

Formulas live in :mod:`bench_lib.harness.hardware` (pure functions, each citing its convention); this module only
finds each machine's catalog entry from its environment record and applies them row by row. CPU runs and
GPUs not in the catalog get no rows: nothing is guessed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench_lib.harness import hardware

MACHINE_COLUMNS = ["machine", "gpu_name", "gpu_catalog_id", "gpu_catalog_name", "gpu_memory_bytes",
                   "memory_bandwidth_bytes_per_s", "tdp_w", "price_per_hour_usd", "price_date", "price_source",
                   "catalog_unverified"]
ROW_METRICS = ["frac_of_catalog_peak", "decode_frac_of_bandwidth", "usd_per_million_decode_tokens",
               "usd_per_million_train_tokens", "tokens_per_joule"]


def machines(runs: pd.DataFrame, cases: pd.DataFrame, prices_path: str | None = None) -> pd.DataFrame:
    """One row per GPU machine found in the catalog: ``MACHINE_COLUMNS`` (price with its date and source).

    ``runs`` from :func:`load.load` (their environment records), ``cases`` the tidy table (run -> machine).
    """
    label = cases.drop_duplicates("run").set_index("run")["machine"]
    specs = hardware.catalog(prices_path)
    rows = {}
    for run, env in zip(runs["run"], runs["environment"], strict=True):
        gpu = (env or {}).get("gpu")
        name = gpu.get("name") if isinstance(gpu, dict) else None
        spec = hardware.lookup(name, specs) if name else None
        if spec is None or run not in label.index or label[run] in rows:
            continue
        tf32 = bool(((env or {}).get("torch") or {}).get("tf32_matmul"))
        described = hardware.describe(spec)
        described["catalog_unverified"] = ", ".join(described["catalog_unverified"]) or None
        rows[label[run]] = {"machine": label[run], "gpu_name": name, **described, "_spec": spec, "_tf32": tf32}
    return pd.DataFrame(list(rows.values()), columns=MACHINE_COLUMNS + ["_spec", "_tf32"])


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(np.nan, index=df.index)


def per_case(med: pd.DataFrame, gpus: pd.DataFrame) -> pd.DataFrame:
    """ok rows (medians) of catalog GPU machines with ``ROW_METRICS`` added where their inputs exist:

    frac_of_catalog_peak: tflops over the dense peak of the row's dtype (fp32 counts as tf32 when the run
    allowed TF32 matmuls); decode_frac_of_bandwidth: the precision suite's decode_weight_bytes_per_s over
    the datasheet bandwidth; usd_per_million_*: the hourly price over decode / training tokens per second;
    tokens_per_joule: tokens per second (timed rounds) over the average power NVML measured in the case's
    energy window (the same call repeated); NaN where no power was measured, never inf.
    """
    rows = med[med["machine"].isin(gpus["machine"])].copy()
    if rows.empty:
        return rows.assign(**{m: pd.Series(dtype=float) for m in ROW_METRICS})
    by_machine = gpus.set_index("machine")
    spec, tf32 = rows["machine"].map(by_machine["_spec"]), rows["machine"].map(by_machine["_tf32"])
    price = rows["machine"].map(by_machine["price_per_hour_usd"])
    dtype = _col(rows, "dtype").astype(object)
    for fallback in ("matmul_dtype", "compute_dtype"):  # fine-tune and precision name the dtype as a metric
        dtype = dtype.fillna(_col(rows, fallback).astype(object))
    tflops, decode_bw = _col(rows, "tflops"), _col(rows, "decode_weight_bytes_per_s")
    decode_tps, train_tps = _col(rows, "decode_tokens_per_s"), _col(rows, "tokens_per_s")
    power = _col(rows, "avg_power_w")
    rate = _col(rows, "generate_tokens_per_s").fillna(train_tps)
    frac, bw, usd_decode, usd_train = [], [], [], []
    for i in range(len(rows)):
        s, d = spec.iloc[i], dtype.iloc[i]
        peak_dtype = hardware.matmul_dtype(d, tf32.iloc[i]) if isinstance(d, str) else None
        frac.append(hardware.frac_of_peak(tflops.iloc[i], s, peak_dtype) if peak_dtype and pd.notna(tflops.iloc[i]) else None)
        bw.append(hardware.frac_of_bandwidth(decode_bw.iloc[i], s) if pd.notna(decode_bw.iloc[i]) else None)
        p = price.iloc[i] if pd.notna(price.iloc[i]) else None
        usd_decode.append(hardware.usd_per_million_tokens(p, decode_tps.iloc[i]) if pd.notna(decode_tps.iloc[i]) else None)
        usd_train.append(hardware.usd_per_million_tokens(p, train_tps.iloc[i]) if pd.notna(train_tps.iloc[i]) else None)
    rows["frac_of_catalog_peak"] = pd.to_numeric(pd.Series(frac, index=rows.index), errors="coerce")
    rows["decode_frac_of_bandwidth"] = pd.to_numeric(pd.Series(bw, index=rows.index), errors="coerce")
    rows["usd_per_million_decode_tokens"] = pd.to_numeric(pd.Series(usd_decode, index=rows.index), errors="coerce")
    rows["usd_per_million_train_tokens"] = pd.to_numeric(pd.Series(usd_train, index=rows.index), errors="coerce")
    # tokens/s over joules/s; a power that is no measurement (missing, 0 W, inf) gives no value, never inf
    power = pd.to_numeric(power, errors="coerce").astype(float)
    power = power.where(np.isfinite(power) & (power > 0))
    rows["tokens_per_joule"] = pd.to_numeric(rate, errors="coerce").astype(float) / power
    return rows
