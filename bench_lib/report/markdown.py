"""``report.md``: the same document as the HTML page, as GitHub-flavoured Markdown for job summaries and PR
comments. Figures are linked (``figures/NAME.png``), not embedded. Every text is escaped so that a value from a
file cannot break a table (``|``), inject HTML (``<``), or form a link, an image or a code span
(``[x](javascript:...)``, ``![](https://...)``, backticks): those characters are backslash-escaped and shown
as written."""

from __future__ import annotations

from pathlib import Path

from bench_lib.report.document import Document, Paragraph, Table
from bench_lib.report.render import Rendered

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\n": "; ", "\r": " ",
            "\\": "\\\\", "`": "\\`", "[": "\\[", "]": "\\]"}


def escape(text: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in str(text))


def _table(t: Table) -> str:
    header = "| " + " | ".join(escape(c) for c in t.frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in t.frame.columns) + "|"
    rows = ["| " + " | ".join(escape(v) for v in row) + " |" for row in t.frame.itertuples(index=False)]
    return "\n".join([f"**{escape(t.caption)}**", "", header, rule, *rows])


def _block(block) -> str:
    if isinstance(block, Paragraph):
        text = escape(block.text)
        return {"warning": f"> **Warning:** {text}", "muted": f"_{text}_"}.get(block.kind, text)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Rendered):
        return f"![{escape(block.title)}]({block.path})\n\n*{escape(block.title)}.* {escape(block.caption)}"
    raise TypeError(f"unknown report block {type(block).__name__}")


def render(doc: Document) -> str:
    parts = [f"# {escape(doc.title)}", "", escape(doc.subtitle)]
    for section in doc.sections:
        parts += ["", f"## {escape(section.title)}"]
        for block in section.blocks:
            parts += ["", _block(block)]
    return "\n".join(parts) + "\n"


def write(doc: Document, outdir: Path) -> Path:
    path = outdir / "report.md"
    path.write_text(render(doc), encoding="utf-8")
    return path
