"""Stage 3 of the report: the cases table -> numbers a reader compares.

Every function takes a DataFrame (the tidy cases table or a slice of it) and returns a new one; none plots
or formats. Medians across repeated runs, ratios to a baseline impl/precision/method, log-log scaling
exponents, fractions of the measured compute ceiling, bytes per parameter, machine ratios, outcome counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench_lib.harness.workload import OUTCOMES

# the parameter naming the thing compared in each suite, and the default baseline for ratios
VARIANT = {"attention": "impl", "precision": "precision", "finetune": "method", "calibration": "kind"}
DEFAULT_BASELINE = {"attention": "eager", "precision": "fp32", "finetune": "full"}
# parameters that describe the variant rather than the workload: not matched when pairing with a baseline
VARIANT_PARAMS = {"attention": ["impl"], "precision": ["precision"], "finetune": ["method", "rank", "targets"]}
MACHINE_KEYS = ["machine", "suite", "case_id"]
# NVML energy readings; a value <= 0 or infinite is no measurement (see measured_energy)
ENERGY_METRICS = ["energy_j", "energy_per_call_j", "avg_power_w"]


def ok(cases: pd.DataFrame) -> pd.DataFrame:
    return cases[cases["outcome"] == "ok"]


def param_columns(cases: pd.DataFrame, suite: str) -> list[str]:
    """Parameter columns used by ``suite`` (between ``case_id`` and ``outcome``, not all empty there)."""
    cols = list(cases.columns)
    params = cols[cols.index("case_id") + 1: cols.index("outcome")]
    rows = cases[cases["suite"] == suite]
    return [p for p in params if rows[p].notna().any()]


def measured_energy(cases: pd.DataFrame) -> pd.DataFrame:
    """``ENERGY_METRICS`` that are no measurement become NaN: 0 J, 0 W, negative or infinite values.

    Runs recorded before the energy window read the counter around a few milliseconds of timed rounds,
    i.e. 0 J or one counter step (0 W or kilowatts); since then such a reading is null with a reason. A GPU
    doing work draws power, so 0 W is never a measured value.
    """
    out = cases.copy()
    for col in (c for c in ENERGY_METRICS if c in out.columns):
        values = pd.to_numeric(out[col], errors="coerce").astype(float)
        out[col] = values.where(np.isfinite(values) & (values > 0))
    return out


def medians(cases: pd.DataFrame) -> pd.DataFrame:
    """ok cases -> one row per (machine, suite, case_id): numeric columns' median over runs, others first.

    Adds ``n_runs``. One run per machine (the usual case) leaves the values unchanged. Energy readings
    that are no measurement are left out first (:func:`measured_energy`).
    """
    rows = measured_energy(ok(cases))
    numeric = [c for c in rows.select_dtypes("number").columns if c != "n_samples"]
    agg = {c: ("median" if c in numeric else "first") for c in rows.columns if c not in MACHINE_KEYS}
    out = rows.groupby(MACHINE_KEYS, sort=False, dropna=False).agg(agg).reset_index()
    out["n_runs"] = rows.groupby(MACHINE_KEYS, sort=False, dropna=False).size().to_numpy()
    return out[list(cases.columns) + ["n_runs"]]


def _match_key(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A hashable key per row from ``columns``; missing values match each other."""
    values = zip(*(df[c].tolist() for c in columns), strict=True) if columns else ([] for _ in range(len(df)))
    return pd.Series(["|".join(map(str, v)) for v in values], index=df.index)


def ratio_to_baseline(df: pd.DataFrame, suite: str, baseline: str, metric: str) -> pd.DataFrame:
    """Rows of ``suite`` plus ``<metric>_vs_baseline``: the row's metric over the baseline's for the same
    machine and workload (every parameter except the variant ones), and ``baseline`` naming it.

    Rows with no baseline partner get NaN. Example: attention time_s of sdpa_flash / eager at the same
    seq_len, batch, heads, dtype, direction and causal flag on the same machine.
    """
    rows = df[df["suite"] == suite].copy()
    match = ["machine"] + [p for p in param_columns(rows, suite) if p not in VARIANT_PARAMS.get(suite, [])]
    key = _match_key(rows, match)
    base = rows[rows[VARIANT[suite]] == baseline]
    base_value = pd.Series(base[metric].to_numpy(), index=key[base.index]).groupby(level=0).median()
    rows[f"{metric}_vs_baseline"] = rows[metric].to_numpy() / key.map(base_value).to_numpy(dtype=float)
    rows["baseline"] = baseline
    return rows


def fit_exponent(x, y) -> tuple[float, float, int]:
    """Least-squares slope k of log y = k log x + c -> (k, r², points used); y <= 0 or NaN points dropped.

    A quantity growing as n^k has slope k on log-log axes. NaN when fewer than two distinct x remain.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = np.log(x[keep]), np.log(y[keep])
    if len(np.unique(x)) < 2:
        return float("nan"), float("nan"), int(keep.sum())
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1 - (residual**2).sum() / total if total > 0 else 1.0
    return float(slope), float(r2), int(keep.sum())


def scaling_exponents(df: pd.DataFrame, metrics=("time_s", "extra_peak_bytes"), x="seq_len",
                      by=("machine", "impl", "direction", "dtype", "heads", "kv_heads", "head_dim", "causal"),
                      per="batch") -> pd.DataFrame:
    """Fitted exponent of each metric per ``per`` unit (per sequence: the grid trades batch for seq_len)
    against ``x`` -> rows (by..., metric, exponent, r2, n_points, exponent_upper, n_upper, x_min, x_max).

    ``exponent`` fits every length; ``exponent_upper`` only the longer half (x >= the median length, at least
    two lengths). Memory and time are a*n^2 + b*n + c: small sizes are dominated by the lower terms and
    by the probe's granularity, so the longer half shows the leading order that a claim like O(n^2) is about.
    Materialized attention should show ~2 for extra memory per sequence, flash-style ~1 (Dao et al. 2022,
    FlashAttention, sec. 3.2: O(N^2) vs O(N) extra memory); time per sequence ~2 for both.
    """
    by = [b for b in by if b in df.columns]
    columns = by + ["metric", "exponent", "r2", "n_points", "exponent_upper", "n_upper", "x_min", "x_max"]
    out = []
    for keys, group in df.groupby(by, dropna=False, sort=False):
        denominator = group[per] if per in group.columns and group[per].notna().all() else 1
        upper = group[x] >= np.median(np.unique(group[x].dropna())) if group[x].notna().any() else group[x].notna()
        for metric in metrics:
            if metric not in group.columns:
                continue
            y = group[metric] / denominator
            slope, r2, n = fit_exponent(group[x], y)
            slope_upper, _, n_upper = fit_exponent(group[x][upper], y[upper])
            if np.isfinite(slope):
                out.append({**dict(zip(by, keys, strict=True)), "metric": metric, "exponent": slope, "r2": r2,
                            "n_points": n, "exponent_upper": slope_upper, "n_upper": n_upper,
                            "x_min": group[x].min(), "x_max": group[x].max()})
    return pd.DataFrame(out, columns=columns)


def calibration_ceilings(cases: pd.DataFrame) -> pd.DataFrame:
    """The run's own measured matmul ceiling per dtype -> rows (run, dtype, ceiling_tflops).

    From the calibration suite's ``matmul-<dtype>-n*`` cases (metric ``tflops``); best size per dtype.
    """
    cal = ok(cases)
    cal = cal[(cal["suite"] == "calibration") & cal["case_id"].str.match(r"matmul-[^-]+-n\d+")]
    if cal.empty or "tflops" not in cal.columns:
        return pd.DataFrame(columns=["run", "dtype", "ceiling_tflops"])
    dtype = cal["dtype"] if "dtype" in cal.columns else cal["case_id"].str.extract(r"matmul-([^-]+)-")[0]
    cal = cal.assign(dtype=dtype)
    return cal.groupby(["run", "dtype"], as_index=False)["tflops"].max().rename(columns={"tflops": "ceiling_tflops"})


def fraction_of_measured_peak(cases: pd.DataFrame) -> pd.DataFrame:
    """Adds ``frac_of_measured_peak`` = tflops / the same run's matmul ceiling for the row's dtype.

    ``cases`` must include the run's calibration rows. A value the suite recorded itself is kept; only
    missing ones are filled.
    """
    out = cases.copy()
    recorded = out["frac_of_measured_peak"] if "frac_of_measured_peak" in out.columns else pd.Series(np.nan, index=out.index)
    if "tflops" not in out.columns or "dtype" not in out.columns:
        out["frac_of_measured_peak"] = recorded
        return out
    merged = out[["run", "dtype"]].merge(calibration_ceilings(cases), on=["run", "dtype"], how="left")
    computed = out["tflops"].to_numpy(dtype=float) / merged["ceiling_tflops"].to_numpy(dtype=float)
    out["frac_of_measured_peak"] = recorded.astype(float).fillna(pd.Series(computed, index=out.index))
    return out


def bytes_per_param(df: pd.DataFrame) -> pd.DataFrame:
    """Adds ``static_bytes_per_param`` = (weights + gradients + optimizer state) / total params and
    ``peak_bytes_per_param`` = peak / total params (fine-tune rows; NaN elsewhere).

    FP32 AdamW is 4 + 4 + 8 = 16 bytes per parameter before activations (the tutorial's 112 GB for 7B).
    """
    out = df.copy()
    parts = [c for c in ("weight_bytes", "grad_bytes", "optimizer_state_bytes") if c in out.columns]
    total = out["total_params"] if "total_params" in out.columns else np.nan
    out["static_bytes_per_param"] = out[parts].sum(axis=1, min_count=len(parts) or 1) / total if parts else np.nan
    out["peak_bytes_per_param"] = out["peak_bytes"] / total if "peak_bytes" in out.columns else np.nan
    return out


def machine_comparison(med: pd.DataFrame, metric: str = "time_s") -> pd.DataFrame:
    """Cases measured on two or more machines -> long rows (suite, case_id, machine, machine_slug, metric,
    value, reference, reference_value, ratio_to_reference); the reference is the first machine in the table that
    shares cases with another. Empty with one machine."""
    columns = ["suite", "case_id", "machine", "machine_slug", "metric", "value", "reference", "reference_value",
               "ratio_to_reference"]
    machines = list(dict.fromkeys(med["machine"]))
    if len(machines) < 2 or metric not in med.columns:
        return pd.DataFrame(columns=columns)
    wide = med.pivot_table(index=["suite", "case_id"], columns="machine", values=metric, aggfunc="median")
    wide = wide.dropna(thresh=2)
    reference = next((m for m in machines if m in wide.columns and wide[m].notna().any()), None)
    if reference is None:
        return pd.DataFrame(columns=columns)
    wide = wide[wide[reference].notna()]
    long = wide.reset_index().melt(id_vars=["suite", "case_id"], var_name="machine", value_name="value")
    long = long.dropna(subset=["value"])
    long = long.merge(wide[reference].rename("reference_value").reset_index(), on=["suite", "case_id"])
    long["metric"], long["reference"] = metric, reference
    long["ratio_to_reference"] = long["value"] / long["reference_value"]
    long["machine_slug"] = long["machine"].map(dict(zip(med["machine"], med["machine_slug"], strict=True)))
    order = {m: i for i, m in enumerate(machines)}
    long = long.assign(_m=long["machine"].map(order)).sort_values(["suite", "case_id", "_m"])
    return long[columns].reset_index(drop=True)


def outcome_counts(cases: pd.DataFrame) -> pd.DataFrame:
    """Rows per suite, one column per outcome (all six, in contract order), plus ``total``."""
    counts = cases.pivot_table(index="suite", columns="outcome", values="case_id", aggfunc="count", fill_value=0)
    counts = counts.reindex(columns=list(OUTCOMES), fill_value=0).astype(int)
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


def outcome_reasons(cases: pd.DataFrame) -> pd.DataFrame:
    """Non-ok cases grouped by (suite, outcome, reason) -> n_cases and up to three example case ids."""
    bad = cases[cases["outcome"] != "ok"].assign(reason=lambda d: d["reason"].fillna("(no reason recorded)"))
    columns = ["suite", "outcome", "reason", "n_cases", "examples"]
    if bad.empty:
        return pd.DataFrame(columns=columns)
    grouped = bad.groupby(["suite", "outcome", "reason"], sort=False)["case_id"]
    out = grouped.agg(n_cases="count", examples=lambda ids: ", ".join(list(dict.fromkeys(ids))[:3])).reset_index()
    return out.sort_values(["suite", "outcome", "n_cases"], ascending=[True, True, False])[columns]
