"""Shared fixtures for the report tests: the frozen run files and one report rendered from them.

Rendering figures costs seconds on a 2-core machine, so the end-to-end report is built once per session
and every test that needs a finished report (HTML, Markdown, machines, Chromium) reads that one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "report"
HOSTILE = "<script>alert('x')</script>"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def load_doc(name: str) -> dict:
    return json.loads((DATA / name).read_text())


@pytest.fixture(scope="session")
def report_inputs(tmp_path_factory) -> Path:
    """Two CPU machines (one named like a script tag), a truncated file and an interrupted journal."""
    folder = tmp_path_factory.mktemp("runs")
    for name in ("cpu-a.json", "truncated.json", "interrupted.jsonl"):
        shutil.copy(DATA / name, folder / name)
    hostile = load_doc("cpu-b.json")
    hostile["machine_info"]["effbench"]["machine_slug"] = HOSTILE
    hostile["machine_info"]["effbench"]["cpu"]["model"] = 'Xeon "quoted" & <b>bold</b>'
    (folder / "cpu-b.json").write_text(json.dumps(hostile))
    return folder


def _inspect(fig) -> dict:
    """Title, and per axes with something drawn: labels and scales (what a reader needs to read it)."""
    axes = [ax for ax in fig.axes if ax.has_data()]
    return {"title": fig._suptitle.get_text() if fig._suptitle else "",
            "axes": [{"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                      "xscale": ax.get_xscale(), "yscale": ax.get_yscale(),
                      "yticklabels": [t.get_text() for t in ax.get_yticklabels()]} for ax in axes]}


@pytest.fixture(scope="session")
def figures_seen() -> dict[str, dict]:
    """Filled by :func:`report`: figure name -> title, axes labels and scales, as saved."""
    return {}


@pytest.fixture(scope="session")
def report(report_inputs, tmp_path_factory, figures_seen):
    """The whole pipeline on :func:`report_inputs` (a ``cli.Written``); each saved figure is also inspected
    into :func:`figures_seen`."""
    from bench_lib.report import cli, render

    original = render.save

    def save(fig, outdir, name, title, caption):
        out = original(fig, outdir, name, title, caption)
        fig.canvas.draw()  # tick labels exist only after a draw
        figures_seen[name] = _inspect(fig)
        return out

    out = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "save", save)
        return cli.render([report_inputs], out)
