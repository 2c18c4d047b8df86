"""Attention figures: time, TFLOP/s and extra peak memory per sequence against sequence length, per impl.

Input is :func:`bench_lib.report.views.attention`'s output (points of the headline shape, OOM cases,
fitted exponents). One row of panels per machine and dtype, one column per direction (fwd, fwd_bwd).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from bench_lib.report import render
from bench_lib.report.fmt import number


def _shape_text(shape: dict) -> str:
    return ", ".join(f"{k}={number(v)}" for k, v in shape.items())


def _grid(points: pd.DataFrame):
    panels = list(dict.fromkeys(points["panel"]))
    directions = [d for d in ("fwd", "fwd_bwd") if d in set(points["direction"])] or sorted(set(points["direction"]))
    fig, axes = render.new_figure(len(panels), len(directions))
    for i, panel in enumerate(panels):
        for j, direction in enumerate(directions):
            yield fig, axes[i * len(directions) + j], panel, direction


def _draw(points, oom, outdir: Path, name, title, caption, y, hue, axis_fn, label) -> render.Rendered:
    colors = render.palette(sorted(set(points["impl"])))
    figure = None
    for fig, ax, panel, direction in _grid(points):
        figure = fig
        data = points[(points["panel"] == panel) & (points["direction"] == direction)].dropna(subset=[y])
        if data.empty:
            render.empty_note(ax, f"no {y} values")
            continue
        hue_colors = {h: colors[i] for h, i in zip(data[hue], data["impl"], strict=True)}
        sns.lineplot(data=data, x="seq_len", y=y, hue=hue, palette=hue_colors, marker="o", ax=ax,
                     errorbar=None, hue_order=sorted(hue_colors))
        here = oom[(oom["panel"] == panel) & (oom["direction"] == direction)]
        render.mark_oom(ax, here["seq_len"], here["impl"])
        render.power_of_two_axis(ax, data["seq_len"], "sequence length (tokens)")
        axis_fn(ax, "y", data[y], label)
        ax.set_title(f"{panel} · {direction}", fontsize=9)
        ax.legend(fontsize=7, title=None)
    return render.save(figure, outdir, name, title, caption)


def figures(points: pd.DataFrame, oom: pd.DataFrame, shape: dict, outdir: Path) -> list[render.Rendered]:
    if points.empty:
        return []
    shape_text = _shape_text(shape)
    with render.style():
        out = [
            _draw(points, oom, outdir, "attention_time", "Attention time vs sequence length",
                  f"Median time per call for each impl ({shape_text}; batch as in each case, see cases.csv). "
                  "A red X marks a length where the impl ran out of memory.",
                  "time_s", "impl", render.seconds_axis, "median time per call"),
            _draw(points, oom, outdir, "attention_tflops", "Attention throughput vs sequence length",
                  f"TFLOP/s from the flash-attention FLOP convention (fwd 4·b·h·s²·d, halved when causal, "
                  f"backward 2.5× forward), {shape_text}.",
                  "tflops", "impl", render.plain_axis, "throughput (TFLOP/s)"),
            _draw(points, oom, outdir, "attention_memory", "Attention extra peak memory per sequence",
                  "Peak memory the call added beyond what was allocated before it, divided by batch; the legend "
                  "gives each impl's log-log exponent fitted over the longer half of the sweep, where the leading "
                  "term dominates (2: O(n²) materialized scores, 1: O(n)); fits over all lengths are in the table.",
                  "extra_peak_bytes_per_seq", "legend", render.bytes_axis, "extra peak per sequence"),
        ]
    return out
