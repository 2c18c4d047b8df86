"""Fine-tune figures: step time and peak memory per method and size, the stacked memory breakdown, the LoRA
rank sweep, and the loss curves (pre-training and fine-tuning).

Inputs come from :mod:`bench_lib.report.views`: cost rows with ``variant`` labels, the breakdown with
precomputed bar bottoms, the rank sweep in long form and labelled series.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from bench_lib.report import render


def _cost(cost: pd.DataFrame, outdir: Path) -> render.Rendered:
    machines = list(dict.fromkeys(cost["machine"]))
    fig, axes = render.new_figure(len(machines), 2, width=13, row_height=4.4)
    variants = list(dict.fromkeys(cost.sort_values("variant_order")["variant"]))
    colors = render.palette(variants)
    for i, machine in enumerate(machines):
        rows = cost[cost["machine"] == machine]
        for ax, y, axis_fn, label in ((axes[2 * i], "step_s", render.seconds_axis, "median step time"),
                                      (axes[2 * i + 1], "peak_bytes", render.bytes_axis, "peak memory")):
            data = rows.dropna(subset=[y]) if y in rows.columns else rows.iloc[0:0]
            if data.empty:
                render.empty_note(ax, f"no {y} values")
                continue
            sns.barplot(data=data, x="model", y=y, hue="variant", palette=colors, errorbar=None, ax=ax,
                        order=list(dict.fromkeys(data["model"])), hue_order=[v for v in variants if v in set(data["variant"])])
            axis_fn(ax, "y", data[y], label)
            ax.set_xlabel("model preset (ordered by size)")
            ax.set_title(machine, fontsize=9)
            if ax is axes[2 * i + 1]:
                render.legend_outside(ax)
            else:
                ax.get_legend().remove()
    return render.save(fig, outdir, "finetune_cost", "Fine-tuning step time and peak memory per method",
                       "One optimizer step (forward, loss, backward, step, zero grad), same loop for every method. "
                       "Peak memory is each case's primary view: on CUDA PyTorch's allocated bytes, on CPU the "
                       "process RSS, which includes the Python and torch baseline; the breakdown below separates "
                       "weights, gradients, optimizer state and activations.")


def _breakdown(parts: pd.DataFrame, outdir: Path) -> render.Rendered:
    panels = list(dict.fromkeys(zip(parts["machine"], parts["model"], strict=True)))
    fig, axes = render.new_figure(len(panels), 1, width=11, row_height=3.8)
    colors = dict(zip(dict.fromkeys(parts["component"]), sns.color_palette("Set2", 4), strict=False))
    for ax, (machine, model) in zip(axes, panels, strict=True):
        data = parts[(parts["machine"] == machine) & (parts["model"] == model)]
        variants = list(dict.fromkeys(data["variant"]))
        position = {v: i for i, v in enumerate(variants)}
        for component, rows in data.groupby("component", sort=False):
            ax.bar(rows["variant"].map(position), rows["bytes"], bottom=rows["bottom"], label=component,
                   color=colors[component], width=0.7)
        ax.set_xticks(range(len(variants)), variants, rotation=20, ha="right", fontsize=8)
        ax.set_xlabel("method (rank, LoRA targets, options)")
        render.bytes_axis(ax, "y", data["top"], "memory", log=False)
        ax.set_title(f"{model} · {machine}", fontsize=9)
        ax.legend(fontsize=7)
    return render.save(fig, outdir, "finetune_memory_breakdown", "Fine-tuning memory breakdown",
                       "Weights, gradients and optimizer state from the tensors themselves; activations are the peak "
                       "minus those static parts. FP32 AdamW full fine-tuning is 16 bytes per parameter before activations.")


def _rank_sweep(sweep: pd.DataFrame, outdir: Path) -> render.Rendered:
    metrics = [("trainable_params", render.plain_axis, "trainable parameters"),
               ("step_s", render.seconds_axis, "median step time"),
               ("final_loss", render.plain_axis, "final training loss (nats/token)"),
               ("accuracy", render.plain_axis, "held-out accuracy (fraction)")]
    fig, axes = render.new_figure(2, 2, row_height=3.9)
    several = sweep["machine"].nunique() > 1
    for ax, (metric, axis_fn, label) in zip(axes, metrics, strict=True):
        data = sweep[sweep["metric"] == metric]
        if data.empty:
            render.empty_note(ax, f"{metric}: not measured in these runs")
            ax.set_title(label, fontsize=9)
            continue
        sns.lineplot(data=data, x="rank", y="value", hue="line", style="machine_slug" if several else None,
                     marker="o", errorbar=None, ax=ax)
        render.power_of_two_axis(ax, data["rank"], "LoRA rank r")
        axis_fn(ax, "y", data["value"], label)
        ax.set_title(label, fontsize=9)
        render.legend_outside(ax)
    return render.save(fig, outdir, "finetune_rank_sweep", "LoRA rank sweep",
                       "Higher rank: more trainable parameters and capacity, more memory. Trainable parameters and "
                       "step time from the cost grid; final loss and accuracy from the convergence cases.")


def _loss_curves(curves: pd.DataFrame, outdir: Path) -> render.Rendered:
    fig, axes = render.new_figure(1, 2, row_height=4.4)
    several = curves["machine"].nunique() > 1
    for ax, name, title in ((axes[0], "pretrain_loss", "pre-training"), (axes[1], "loss_curve", "fine-tuning")):
        data = curves[curves["series"] == name]
        if data.empty:
            render.empty_note(ax, f"{title}: not measured in these runs")
            continue
        variants = list(dict.fromkeys(data["variant"]))
        sns.lineplot(data=data, x="step", y="value", hue="variant", hue_order=variants,
                     palette=sns.color_palette("viridis", len(variants)), style="machine_slug" if several else None,
                     errorbar=None, ax=ax, lw=1.2)
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("training loss (nats/token)")
        ax.set_title(title, fontsize=9)
        render.legend_outside(ax)
    return render.save(fig, outdir, "finetune_loss_curves", "Loss curves",
                       "Measured per-step training loss: the small model's brief pre-training on a generated corpus, "
                       "then fine-tuning on the capital-city instruction set (full and LoRA per rank).")


def figures(cost: pd.DataFrame, parts: pd.DataFrame, sweep: pd.DataFrame, curves: pd.DataFrame,
            outdir: Path) -> list[render.Rendered]:
    out = []
    with render.style():
        if not cost.empty:
            out.append(_cost(cost, outdir))
        if not parts.empty:
            out.append(_breakdown(parts, outdir))
        if not sweep.empty:
            out.append(_rank_sweep(sweep, outdir))
        if not curves.empty:
            out.append(_loss_curves(curves, outdir))
    return out
