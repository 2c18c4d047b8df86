"""Scaling figure for distributed fine-tune cases: step time, weak-scaling efficiency and the largest rank's
peak memory against world size, one line per (strategy, method, model, machine), so runs from several
machines share the axes. FSDP's per-rank memory should fall with world size, DDP's stay flat."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.ticker import MultipleLocator

from bench_lib.report import render


def figure(rows: pd.DataFrame, outdir: Path) -> render.Rendered:
    fig, axes = render.new_figure(1, 3, width=15, row_height=4.4)
    panels = ((axes[0], "step_s", render.seconds_axis, "median step time (slowest rank)"),
              (axes[1], "scaling_efficiency", render.plain_axis, "weak-scaling efficiency (same per-rank batch)"),
              (axes[2], "peak_bytes", render.bytes_axis, "peak memory per rank (largest rank)"))
    several = rows["machine"].nunique() > 1
    if "peak_bytes" not in rows.columns and "cpu_peak_rss_bytes" in rows.columns:  # the largest rank's RSS view
        rows = rows.assign(peak_bytes=rows["cpu_peak_rss_bytes"])
    for ax, y, axis_fn, label in panels:
        data = rows.dropna(subset=[y]) if y in rows.columns else rows.iloc[0:0]
        if data.empty:
            render.empty_note(ax, f"no {y} values")
            ax.set_ylabel(label)  # the panel still says what it would show
            ax.set_xlabel("world size (ranks)")
            continue
        if y == "scaling_efficiency":  # the ideal: N ranks do N times the work in the same time
            ax.axhline(1.0, color="0.5", linestyle=":", linewidth=1, label="ideal (1.0)")
        for key, line in data.groupby(["strategy", "method", "model", "machine"], sort=True):
            strategy, method, model, machine = key
            line = line.sort_values("world_size")
            name = f"{strategy} {method} {model}" + (f" · {machine}" if several else "")
            xs, ys = list(line["world_size"]), list(line[y])
            if y == "scaling_efficiency":  # world size 1 is the reference of each case: 1.0 by definition
                xs, ys = [1, *xs], [1.0, *ys]
            if y == "step_s" and "ws1_step_s" in line.columns:  # each case's own world-size-1 run
                xs, ys = [1, *xs], [float(line["ws1_step_s"].iloc[0]), *ys]
            ax.plot(xs, ys, marker="o", linestyle="--" if strategy == "ddp" else "-", label=name)
        axis_fn(ax, "y", data[y], label)
        if y == "peak_bytes" and ax.get_yscale() == "linear":  # ranks' peaks sit close together: ticks over their span
            lo, hi = float(data[y].min()), float(data[y].max())
            ax.yaxis.set_major_locator(MultipleLocator(render._nice_step(max(hi - lo, hi / 100) / 4 / 2**20) * 2**20))
        ax.set_xlabel("world size (ranks)")
        ax.set_xticks(sorted({1, *data["world_size"].astype(int)}))
    handles, labels = {}, {}
    for ax in axes:  # one legend for all panels (the lines share names and colours), right of the last panel
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
            labels.setdefault(lab, lab)
    if handles:
        axes[2].legend(list(handles.values()), list(labels.values()), loc="upper left", bbox_to_anchor=(1.01, 1),
                       fontsize=7, frameon=False)
    return render.save(fig, outdir, "finetune_scaling", "Distributed fine-tuning: scaling with world size",
                       "DDP and FSDP2 over torchrun ranks (gloo on CPU, nccl on CUDA), same per-rank batch at every "
                       "world size (weak scaling). Efficiency = world-size-1 step time / world-size-N step time, "
                       "both measured in the same case. Memory: the largest rank's primary view (CPU: RSS, which "
                       "includes each process's Python and torch baseline).")
