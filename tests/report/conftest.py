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


@pytest.fixture(scope="session")
def report(report_inputs, tmp_path_factory):
    """(written, stderr-free result) of the whole pipeline on :func:`report_inputs`."""
    from bench_lib.report import cli

    out = tmp_path_factory.mktemp("report")
    return cli.render([report_inputs], out)
