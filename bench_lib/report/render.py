"""Figure mechanics shared by the section figures: style, axes in the units of their data, OOM marks, saving.

Values stay in SI units (bytes, seconds) on the axes; formatters choose binary units (KiB/MiB/GiB) and
time units for the tick labels only. No pyplot: figures are ``matplotlib.figure.Figure`` objects, so
rendering never touches global state or needs a display. Nothing here computes a result.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MultipleLocator, NullFormatter

from bench_lib.report.fmt import binary_bytes, number, seconds

OOM_COLOR = "#c0392b"


@dataclass(frozen=True)
class Rendered:
    """A saved figure: ``path`` relative to the report folder (``figures/NAME.png``)."""

    name: str
    title: str
    caption: str
    path: str


@contextmanager
def style() -> Iterator[None]:
    """Seaborn's whitegrid look, local to the block (rcParams restored afterwards)."""
    with mpl.rc_context({**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.9)}):
        yield


def new_figure(rows: int, cols: int, width: float = 11.0, row_height: float = 3.6) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, max(row_height * rows, 3.0)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save(fig: Figure, outdir: Path, name: str, title: str, caption: str) -> Rendered:
    """Title the figure, write ``outdir/figures/NAME.png`` at 110 dpi."""
    fig.suptitle(title, fontweight="bold")
    folder = outdir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=110)
    return Rendered(name, title, caption, f"figures/{name}.png")


def spans_decades(values) -> bool:
    """True when the positive values cover more than a factor of 10 (then a log axis reads better)."""
    positive = [float(v) for v in values if v is not None and math.isfinite(float(v)) and float(v) > 0]
    return len(positive) > 1 and max(positive) > 10 * min(positive)


def _axis(ax, which: str):
    return ax.yaxis if which == "y" else ax.xaxis


def bytes_axis(ax, which: str, values, label: str, log: bool | None = None) -> None:
    """Byte values: log base 2 when they span decades (or ``log``), linear otherwise; ticks in KiB/MiB/GiB.

    Stacked bars pass ``log=False``: on a log axis the lower segments would look larger than they are.
    """
    axis = _axis(ax, which)
    if spans_decades(values) if log is None else log:
        (ax.set_yscale if which == "y" else ax.set_xscale)("log", base=2)
        axis.set_major_locator(LogLocator(base=2, numticks=8))
        axis.set_minor_formatter(NullFormatter())
    else:
        # the largest magnitude sets the step: with the largest value alone, negative bytes (a corrupt file)
        # gave a 1-byte step over gigabytes, billions of ticks, and a report that never finished
        top = max([abs(float(v)) for v in values if v == v and math.isfinite(float(v))] or [1.0])
        unit = 1024 ** max(0, min(5, int(math.log(max(top, 1), 1024))))
        axis.set_major_locator(MultipleLocator(_nice_step(top / unit / 5) * unit))
    axis.set_major_formatter(FuncFormatter(lambda v, _: binary_bytes(v)))
    (ax.set_ylabel if which == "y" else ax.set_xlabel)(label + " (bytes)")


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``: readable tick spacing."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _log10(ax, which: str, values) -> None:
    """Log base 10; ticks at 1-2-5 per decade over a short range, 1-3 over a few decades, decades beyond."""
    positive = [float(v) for v in values if v == v and float(v) > 0]
    decades = math.log10(max(positive) / min(positive)) if positive else 0.0
    subs = (1.0, 2.0, 5.0) if decades <= 1.5 else (1.0, 3.0) if decades <= 3 else (1.0,)
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    _axis(ax, which).set_major_locator(LogLocator(base=10, subs=subs))
    _axis(ax, which).set_minor_formatter(NullFormatter())


def seconds_axis(ax, which: str, values, label: str) -> None:
    axis = _axis(ax, which)
    if spans_decades(values):
        _log10(ax, which, values)
    axis.set_major_formatter(FuncFormatter(lambda v, _: seconds(v)))
    (ax.set_ylabel if which == "y" else ax.set_xlabel)(label + " (s)")


def plain_axis(ax, which: str, values, label: str) -> None:
    """A count or rate: log base 10 when it spans decades; compact labels."""
    axis = _axis(ax, which)
    if spans_decades(values):
        _log10(ax, which, values)
    axis.set_major_formatter(FuncFormatter(lambda v, _: number(v)))
    (ax.set_ylabel if which == "y" else ax.set_xlabel)(label)


def power_of_two_axis(ax, values, label: str) -> None:
    """Sizes such as sequence length or rank: log base 2 x axis with a tick at every value measured."""
    ticks = sorted({float(v) for v in values if v == v and float(v) > 0})
    if len(ticks) > 1:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v):,}" if v >= 1 else f"{v:g}"))
    ax.set_xlabel(label)


def log2_axis(ax, which: str, values, label: str) -> None:
    """Log base 2 with ticks at powers of two (bits per parameter: 4, 8, 16, 32); the view is widened to the
    powers of two around the data so that the lowest and highest tick are always shown."""
    positive = [float(v) for v in values if v == v and float(v) > 0]
    (ax.set_yscale if which == "y" else ax.set_xscale)("log", base=2)
    if positive:
        low, high = 2 ** math.floor(math.log2(min(positive))), 2 ** math.ceil(math.log2(max(positive)))
        (ax.set_ylim if which == "y" else ax.set_xlim)(low / 1.15, high * 1.15)
    _axis(ax, which).set_major_locator(LogLocator(base=2))
    _axis(ax, which).set_minor_formatter(NullFormatter())
    _axis(ax, which).set_major_formatter(FuncFormatter(lambda v, _: number(v)))
    (ax.set_ylabel if which == "y" else ax.set_xlabel)(label)


def mark_oom(ax, xs, labels) -> None:
    """An X at the top of the axes at each x where a case ran out of memory, labelled with its impl."""
    transform = ax.get_xaxis_transform()  # x in data units, y in axes fraction
    for x, text in zip(xs, labels, strict=True):
        ax.scatter([x], [0.95], marker="X", s=70, color=OOM_COLOR, transform=transform, zorder=5, clip_on=False)
        ax.annotate(f"OOM {text}", (x, 0.95), xycoords=transform, textcoords="offset points", xytext=(0, -12),
                    ha="center", va="top", fontsize=7, color=OOM_COLOR)


def legend_outside(ax) -> None:
    """Move a seaborn legend to the right of the axes, where it cannot cover data."""
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), fontsize=7, title=None, frameon=False)


def palette(keys) -> dict:
    """One stable colour per key (impl, precision, method), so a key keeps its colour across figures."""
    keys = list(dict.fromkeys(str(k) for k in keys))
    name = "tab10" if len(keys) <= 10 else "tab20" if len(keys) <= 20 else "husl"
    return dict(zip(keys, sns.color_palette(name, len(keys)), strict=True))


def empty_note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
