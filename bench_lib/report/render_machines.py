"""Machine comparison figure: the same cases on two or more machines, side by side and as ratios.

Input is :func:`bench_lib.report.aggregate.machine_comparison` (long rows with the reference machine's
value beside each other machine's value and their ratio).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from bench_lib.report import render


def figures(comparison: pd.DataFrame, outdir: Path) -> list[render.Rendered]:
    others = comparison[comparison["machine"] != comparison["reference"]]
    if others.empty:
        return []
    reference = str(comparison["reference"].iloc[0])
    metric = str(comparison["metric"].iloc[0])
    with render.style():
        fig, (left, right) = render.new_figure(1, 2, width=12, row_height=5.0)
        sns.scatterplot(data=others, x="reference_value", y="value", hue="suite", style="machine_slug", s=40, ax=left)
        both = pd.concat([others["reference_value"], others["value"]])
        left.plot([both.min(), both.max()], [both.min(), both.max()], color="0.5", ls="--", lw=1, label="same time")
        render.seconds_axis(left, "x", both, f"{metric} on {reference}")
        render.seconds_axis(left, "y", both, f"{metric} on the other machine")
        left.set_title("each point one case; below the dashed line: faster than the reference", fontsize=9)
        left.legend(fontsize=7)
        render.legend_outside(left)
        sns.stripplot(data=others, x="suite", y="ratio_to_reference", hue="machine_slug", dodge=True, size=4, ax=right)
        right.axhline(1.0, color="0.5", ls="--", lw=1)
        render.plain_axis(right, "y", others["ratio_to_reference"], f"{metric} ratio to reference (×)")
        right.set_xlabel("suite")
        right.set_title(f"ratio to {reference}; below 1: faster", fontsize=9)
        render.legend_outside(right)
        saved = render.save(fig, outdir, "machines", "Same cases on different machines",
                            f"Median {metric} of every case measured on both machines; the reference is {reference}.")
    return [saved]
