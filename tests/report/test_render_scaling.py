"""The scaling figure: a legend naming every line, the ideal 1.0 line on the weak-scaling efficiency panel,
y-labels on every panel (the memory ones included, also when they have no values), and both memory views with
each case's world-size-1 point."""

import pandas as pd
from matplotlib.figure import Figure

from bench_lib.report import render, render_scaling


def _rows(with_memory: bool = True) -> pd.DataFrame:
    rows = [dict(strategy=s, method=m, model="tiny", machine="cpu", world_size=2, step_s=st, ws1_step_s=1.0,
                 scaling_efficiency=e, **({"cpu_peak_malloc_bytes": pb, "ws1_cpu_peak_malloc_bytes": 9e8,
                                           "cpu_peak_rss_bytes": pb + 5e8, "ws1_cpu_peak_rss_bytes": 1.4e9}
                                          if with_memory else {}))
            for s, m, st, e, pb in [("ddp", "full", 1.3, 0.77, 9e8), ("fsdp", "full", 1.6, 0.62, 6e8)]]
    return pd.DataFrame(rows)


def _capture(monkeypatch) -> list[Figure]:
    figs = []
    real = render.save

    def save(fig, *args, **kwargs):
        figs.append(fig)
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(render, "save", save)
    return figs


def test_legend_ideal_line_and_labels(tmp_path, monkeypatch):
    figs = _capture(monkeypatch)
    render_scaling.figure(_rows(), tmp_path)
    step, eff, live, mem = figs[0].axes[:4]
    legend = mem.get_legend()
    assert legend is not None
    texts = [t.get_text() for t in legend.get_texts()]
    assert {"ddp full tiny", "fsdp full tiny", "ideal (1.0)"} <= set(texts)
    assert any(list(line.get_ydata()) == [1.0, 1.0] for line in eff.get_lines())  # axhline at 1.0
    assert "weak-scaling" in eff.get_ylabel() and "per-rank batch" in eff.get_ylabel()
    assert "live peak" in live.get_ylabel() and "process peak" in mem.get_ylabel()
    assert step.get_ylabel()
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in live.get_lines()}
    assert lines["fsdp full tiny"] == ([1, 2], [9e8, 6e8])  # FSDP's live per-rank peak falls from its ws1 run
    assert lines["ddp full tiny"] == ([1, 2], [9e8, 9e8])
    rss = {line.get_label(): list(line.get_ydata()) for line in mem.get_lines()}
    assert rss["fsdp full tiny"] == [1.4e9, 1.1e9]
    fsdp = next(line for line in eff.get_lines() if line.get_label() == "fsdp full tiny")
    assert list(fsdp.get_ydata()) == [1.0, 0.62]  # reference at ws1, the case's efficiency at ws2, not inverted


def test_memory_panel_keeps_its_label_without_values(tmp_path, monkeypatch):
    figs = _capture(monkeypatch)
    render_scaling.figure(_rows(with_memory=False), tmp_path)
    assert "live peak" in figs[0].axes[2].get_ylabel() and "process peak" in figs[0].axes[3].get_ylabel()
