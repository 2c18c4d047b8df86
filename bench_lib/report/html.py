"""One self-contained ``index.html``: inline CSS, figures embedded as base64 PNG, no script, no network.

Every string that came from a run file (machine names, case ids, reasons, environment values) reaches the
page only through :func:`html.escape`, so a machine called ``<script>`` renders as text.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from bench_lib.report.document import Document, Paragraph, Table
from bench_lib.report.render import Rendered

CSS = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg-alt: #f6f8fa; --warn: #9a6700; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1240px; padding: 0 20px 60px; }
header { border-bottom: 1px solid var(--line); margin-bottom: 8px; }
h1 { margin: 24px 0 4px; font-size: 26px; }
h2 { margin-top: 40px; padding-top: 8px; border-top: 1px solid var(--line); font-size: 21px; }
nav { font-size: 14px; margin: 8px 0 16px; display: flex; flex-wrap: wrap; gap: 4px 16px; }
nav a { color: #0969da; text-decoration: none; white-space: nowrap; }
p.subtitle { color: var(--muted); margin-top: 0; }
p.warning { background: #fff8c5; border-left: 4px solid var(--warn); padding: 6px 10px; }
p.muted { color: var(--muted); font-style: italic; }
figure { margin: 20px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.table-wrap { overflow-x: auto; margin: 12px 0 20px; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 8px 10px; }
th, td { padding: 5px 10px; border-top: 1px solid var(--line); vertical-align: top; text-align: left; }
th { background: var(--bg-alt); position: sticky; top: 0; white-space: nowrap; }
td { white-space: nowrap; }
td.wrap { white-space: normal; min-width: 22ch; max-width: 60ch; overflow-wrap: anywhere; }
tbody tr:nth-child(even) { background: #fbfcfd; }
td.v-holds { color: #1a7f37; font-weight: 600; }
td.v-fails { color: #cf222e; font-weight: 600; }
td.v-unmeasured { color: var(--muted); }
"""

VERDICT_CLASS = {"holds": "v-holds", "does not hold here": "v-fails", "not measured in these runs": "v-unmeasured"}


def _image(outdir: Path, fig: Rendered) -> str:
    data = base64.b64encode((outdir / fig.path).read_bytes()).decode("ascii")
    title, caption = html.escape(fig.title), html.escape(fig.caption)
    return (f'<figure id="fig-{html.escape(fig.name)}"><img alt="{title}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{title}.</b> {caption}</figcaption></figure>")


def _table(t: Table) -> str:
    head = "".join(f'<th scope="col">{html.escape(str(c))}</th>' for c in t.frame.columns)
    body = []
    for row in t.frame.itertuples(index=False):
        cells = []
        for value in row:
            text = str(value)
            # short values stay on one line; long prose (claims, reasons, paths) wraps
            cls = VERDICT_CLASS.get(text) or ("wrap" if len(text) > 32 else None)
            shown = html.escape(text).replace("\n", "<br>")  # multi-part values (claims) one part per line
            cells.append(f'<td class="{cls}">{shown}</td>' if cls else f"<td>{shown}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table><caption>{html.escape(t.caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _block(block, outdir: Path) -> str:
    if isinstance(block, Paragraph):
        return f'<p class="{html.escape(block.kind)}">{html.escape(block.text)}</p>'
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Rendered):
        return _image(outdir, block)
    raise TypeError(f"unknown report block {type(block).__name__}")


def write(doc: Document, outdir: Path) -> Path:
    """Write ``outdir/index.html`` from ``doc``; figures are read from ``outdir`` and embedded."""
    nav = "".join(f'<a href="#{html.escape(s.id)}">{html.escape(s.title)}</a>' for s in doc.sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # no network: forbid every fetch except the embedded images and the inline style
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{html.escape(doc.title)}</h1><p class=\"subtitle\">{html.escape(doc.subtitle)}</p>",
        f"<nav>{nav}</nav></header>",
    ]
    for section in doc.sections:
        parts.append(f'<section id="{html.escape(section.id)}"><h2>{html.escape(section.title)}</h2>')
        parts += [_block(b, outdir) for b in section.blocks]
        parts.append("</section>")
    parts.append("</body></html>")
    path = outdir / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
