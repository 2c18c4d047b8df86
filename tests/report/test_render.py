import pytest
from matplotlib.figure import Figure

from bench_lib.report import render


def _axes():
    return Figure().subplots()


def test_bytes_axis_is_log2_with_binary_units_when_sizes_span_decades():
    ax = _axes()
    values = [2**20, 2**24, 2**30]
    ax.plot([1, 2, 3], values)
    render.bytes_axis(ax, "y", values, "peak memory")
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "peak memory (bytes)"
    assert ax.yaxis.get_major_formatter()(2**30, 0) == "1 GiB"


def test_bytes_axis_stays_linear_for_a_narrow_range_and_for_stacks():
    ax = _axes()
    render.bytes_axis(ax, "y", [3 * 2**20, 5 * 2**20], "memory")
    assert ax.get_yscale() == "linear"
    ax2 = _axes()
    render.bytes_axis(ax2, "y", [1, 2**30], "memory", log=False)
    assert ax2.get_yscale() == "linear"


def test_spans_decades():
    assert render.spans_decades([1, 11]) and not render.spans_decades([1, 9.9])
    assert not render.spans_decades([0, 5]) and not render.spans_decades([float("nan"), 3])


def test_every_figure_is_titled_and_every_axes_labelled(report, figures_seen):
    assert set(figures_seen) == {f.stem for f in report.figures}
    for name, fig in figures_seen.items():
        assert fig["title"], name
        for ax in fig["axes"]:
            assert ax["xlabel"] and ax["ylabel"], (name, ax)


@pytest.mark.parametrize("name, unit", [("attention_memory", "iB"), ("attention_time", "s"),
                                        ("finetune_cost", "s"), ("precision_weight_memory", "iB")])
def test_units_and_log_scales_where_sizes_span_decades(report, figures_seen, name, unit):
    fig = figures_seen[name]
    first = fig["axes"][0]
    assert any(unit in t for t in first["yticklabels"] if t), first["yticklabels"]
    if name in ("attention_memory", "attention_time"):  # 256..4096 tokens, memory over 2+ decades
        assert first["xscale"] == "log" and first["yscale"] == "log"
