"""Precision figures: weight memory per precision per model size, decode tokens/s, and quality (KL, top-1)
against bits per parameter as a quality-vs-memory Pareto view.

Input is :func:`bench_lib.report.views.precision` (ok rows ordered by model size, with ``pareto`` and
``weights``). The quality figure draws trained-weight (or checkpoint) rows when the runs have them, and only
otherwise random-weight rows, labelled as such in the title and the caption.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from bench_lib.report import render, views
from bench_lib.report.fmt import number

BITS_ORDER = ["fp32", "bf16", "fp16", "int8", "nf4_dq", "nf4", "fp4"]


def _order(values) -> list[str]:
    present = list(dict.fromkeys(values))
    return [p for p in BITS_ORDER if p in present] + [p for p in present if p not in BITS_ORDER]


def _bars(rows, outdir: Path, name, title, caption, y, axis_fn, label, panel="machine") -> render.Rendered:
    panels = list(dict.fromkeys(rows[panel]))
    fig, axes = render.new_figure(1, len(panels), width=max(6.0, 5.5 * len(panels)), row_height=4.2)
    order = _order(rows["precision"])
    colors = render.palette(order)
    for ax, key in zip(axes, panels, strict=True):
        data = rows[rows[panel] == key].dropna(subset=[y])
        if data.empty:
            render.empty_note(ax, f"no {y} values")
            continue
        sns.barplot(data=data, x="model", y=y, hue="precision", hue_order=[p for p in order if p in set(data["precision"])],
                    palette=colors, ax=ax, errorbar=None, order=list(dict.fromkeys(data["model"])))
        axis_fn(ax, "y", data[y], label)
        ax.set_xlabel("model preset (ordered by size)")
        ax.set_title(str(key), fontsize=9)
        ax.legend(fontsize=7, title="precision", title_fontsize=7)
    return render.save(fig, outdir, name, title, caption)


def _quality(rows, outdir: Path, synthetic: bool) -> render.Rendered:
    tag = " (random weights)" if synthetic else ""
    fig, axes = render.new_figure(1, 2, row_height=4.4)
    order = _order(rows["precision"])
    colors = render.palette(order)
    reference = rows["reference_precision"] if "reference_precision" in rows.columns else pd.Series("fp32", index=rows.index)
    not_ref = rows[rows["precision"].astype(str) != reference.astype(str)]
    for ax, metric, label in ((axes[0], "kl_vs_ref", "mean token KL vs reference (nats)"),
                              (axes[1], "top1_agreement", "top-1 agreement with reference (fraction)")):
        data = (not_ref if metric == "kl_vs_ref" else rows).dropna(subset=[metric, "bits_per_param"])
        if data.empty:
            render.empty_note(ax, f"no {metric} values")
            continue
        sns.scatterplot(data=data, x="bits_per_param", y=metric, hue="precision", style="model", palette=colors,
                        hue_order=[p for p in order if p in set(data["precision"])], s=70, ax=ax)
        if metric == "kl_vs_ref" and "pareto" in data.columns:
            for _, front in data[data["pareto"] == True].groupby(["machine", "model"]):  # noqa: E712
                front = front.sort_values("bits_per_param")
                ax.plot(front["bits_per_param"], front[metric], color="0.5", lw=1, ls="--", zorder=0)
        render.plain_axis(ax, "y", data[metric], label)
        render.log2_axis(ax, "x", data["bits_per_param"], "bits per parameter (quantized layers, scales included)")
        render.legend_outside(ax)
    axes[0].set_title("lower-left is better; dashed: Pareto front per model", fontsize=9)
    axes[1].set_title("higher-left is better", fontsize=9)
    caption = ("Quality lost against the reference precision on the same inputs, against memory per weight. "
               "The reference itself (KL 0) is left out of the KL panel.")
    if synthetic:
        caption += (" These models have random weights: the numbers show how far each format moves the logits, "
                    "not how a trained model's answers change.")
    return render.save(fig, outdir, "precision_quality", f"Quality vs memory per precision{tag}", caption)


def figures(rows: pd.DataFrame, outdir: Path) -> list[render.Rendered]:
    if rows.empty:
        return []
    out = []
    judged = views.quality_rows(rows)  # trained weights or a checkpoint: the quality that decides claims
    synthetic = judged.empty
    quality_rows = rows if synthetic else judged
    with render.style():
        if "weight_bytes" in rows.columns:
            out.append(_bars(rows, outdir, "precision_weight_memory", "Weight memory per precision and model size",
                             "Bytes of the quantizable linear layers' weights as stored, quantization state "
                             "(scales, absmax) included; the whole-model footprint is in the table below.",
                             "weight_bytes", render.bytes_axis, "weight memory"))
        if "decode_tokens_per_s" in rows.columns:
            data = rows.assign(panel=rows["machine"] + " · batch " + rows["batch"].map(number))
            out.append(_bars(data, outdir, "precision_decode", "Decode throughput per precision",
                             "Generated tokens per second for a fixed number of new tokens (min = max).",
                             "decode_tokens_per_s", render.plain_axis, "decode throughput (tokens/s)", panel="panel"))
        if {"bits_per_param", "kl_vs_ref"} <= set(rows.columns) or {"bits_per_param", "top1_agreement"} <= set(rows.columns):
            out.append(_quality(quality_rows, outdir, synthetic))
    return out
