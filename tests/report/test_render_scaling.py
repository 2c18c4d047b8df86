"""The scaling figure: a legend naming every line, the ideal 1.0 line on the weak-scaling efficiency panel, and
y-labels on every panel (the memory one included, also when it has no values)."""

import pandas as pd
from matplotlib.figure import Figure

from bench_lib.report import render, render_scaling


def _rows(with_memory: bool = True) -> pd.DataFrame:
    rows = [dict(strategy=s, method=m, model="tiny", machine="cpu", world_size=2, step_s=st, ws1_step_s=1.0,
                 scaling_efficiency=e, **({"peak_bytes": pb} if with_memory else {}))
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
    step, eff, mem = figs[0].axes[:3]
    legend = mem.get_legend()
    assert legend is not None
    texts = [t.get_text() for t in legend.get_texts()]
    assert {"ddp full tiny", "fsdp full tiny", "ideal (1.0)"} <= set(texts)
    assert any(list(line.get_ydata()) == [1.0, 1.0] for line in eff.get_lines())  # axhline at 1.0
    assert "weak-scaling" in eff.get_ylabel() and "per-rank batch" in eff.get_ylabel()
    assert "memory" in mem.get_ylabel()
    assert step.get_ylabel()
    fsdp = next(line for line in eff.get_lines() if line.get_label() == "fsdp full tiny")
    assert list(fsdp.get_ydata()) == [1.0, 0.62]  # reference at ws1, the case's efficiency at ws2, not inverted


def test_memory_panel_keeps_its_label_without_values(tmp_path, monkeypatch):
    figs = _capture(monkeypatch)
    render_scaling.figure(_rows(with_memory=False), tmp_path)
    assert "memory" in figs[0].axes[2].get_ylabel()
