"""Scaling figure for distributed fine-tune cases: step time, weak-scaling efficiency and the largest rank's
peak memory in two views against world size, one line per (strategy, method, model, machine), so runs from
several machines share the axes. FSDP's per-rank memory should fall with world size, DDP's stay flat.

The two memory views: live bytes (CPU: malloc's in-use bytes over every thread, ``cpu_peak_malloc_bytes``;
CUDA: the allocator's ``torch_peak_allocated_bytes``), which is what sharding shards, and the process's
footprint (CPU: RSS; CUDA: NVML's device memory used), which adds what the allocator keeps (a fragmented
heap, the caching allocator's reserve) and every library's baseline. World size 1 is each case's own
world-size-1 run (``ws1_<view>``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.ticker import MultipleLocator

from bench_lib.report import render


def _view(rows: pd.DataFrame, names: tuple[str, ...]) -> tuple[pd.Series, pd.Series]:
    """Per row, the first of ``names`` present (the largest rank's), and the same view of its world-size-1 run."""
    value = pd.Series(float("nan"), index=rows.index)
    ws1 = pd.Series(float("nan"), index=rows.index)
    for name in reversed(names):  # the first name wins where several are present
        if name in rows.columns:
            present = rows[name].notna()
            value = value.where(~present, rows[name])
            if f"ws1_{name}" in rows.columns:
                ws1 = ws1.where(~present, rows[f"ws1_{name}"])
    return value, ws1


LIVE = ("cpu_peak_malloc_bytes", "torch_peak_allocated_bytes")
PROCESS = ("cpu_peak_rss_bytes", "nvml_peak_used_bytes")


def figure(rows: pd.DataFrame, outdir: Path) -> render.Rendered:
    fig, axes = render.new_figure(1, 4, width=19, row_height=4.4)
    live, live1 = _view(rows, LIVE)
    proc, proc1 = _view(rows, PROCESS)
    rows = rows.copy().assign(live_peak=live, ws1_live_peak=live1, process_peak=proc, ws1_process_peak=proc1)
    panels = ((axes[0], "step_s", render.seconds_axis, "median step time (slowest rank)"),
              (axes[1], "scaling_efficiency", render.plain_axis, "weak-scaling efficiency\n(same per-rank batch)"),
              (axes[2], "live_peak", render.bytes_axis, "live peak per rank\n(CPU malloc / CUDA allocated)"),
              (axes[3], "process_peak", render.bytes_axis, "process peak per rank\n(CPU RSS / CUDA NVML)"))
    several = rows["machine"].nunique() > 1
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
            if f"ws1_{y}" in line.columns and pd.notna(line[f"ws1_{y}"].iloc[0]):  # the case's own ws=1 run
                xs, ys = [1, *xs], [float(line[f"ws1_{y}"].iloc[0]), *ys]
            ax.plot(xs, ys, marker="o", linestyle="--" if strategy == "ddp" else "-", label=name)
        span = pd.concat([data[y], data[f"ws1_{y}"]]).dropna() if f"ws1_{y}" in data.columns else data[y]
        axis_fn(ax, "y", span, label)
        if y.endswith("_peak") and ax.get_yscale() == "linear":  # ranks' peaks sit close together: ticks over their span
            lo, hi = float(span.min()), float(span.max())
            ax.yaxis.set_major_locator(MultipleLocator(render._nice_step(max(hi - lo, hi / 100) / 4 / 2**20) * 2**20))
        ax.set_xlabel("world size (ranks)")
        ax.set_xticks(sorted({1, *data["world_size"].astype(int)}))
    handles, labels = {}, {}
    for ax in axes:  # one legend for all panels (the lines share names and colours), right of the last panel
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
            labels.setdefault(lab, lab)
    if handles:
        axes[3].legend(list(handles.values()), list(labels.values()), loc="upper left", bbox_to_anchor=(1.01, 1),
                       fontsize=7, frameon=False)
    return render.save(fig, outdir, "finetune_scaling", "Distributed fine-tuning: scaling with world size",
                       "DDP and FSDP2 over torchrun ranks (gloo on CPU, nccl on CUDA), same per-rank batch at every "
                       "world size (weak scaling). Efficiency = world-size-1 step time / world-size-N step time, "
                       "both measured in the same case. Memory, the largest rank's: live bytes (CPU: malloc in use, "
                       "every thread; CUDA: allocated), what sharding shards; and the process's footprint (CPU: RSS, "
                       "with the heap glibc keeps and each process's Python and torch baseline; CUDA: NVML).")
