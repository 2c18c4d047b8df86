"""The report as data: sections of paragraphs, tables of text and figures, rendered by ``html`` and ``markdown``.

Both writers walk the same :class:`Document`, so the HTML page and ``report.md`` never disagree. Table
cells are already formatted text (units applied); writers only lay them out and escape them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bench_lib.report import fmt
from bench_lib.report.render import Rendered


@dataclass(frozen=True)
class Paragraph:
    text: str
    kind: str = "text"  # "text", "warning" (skipped files, unmet expectations) or "muted" (not measured)


@dataclass(frozen=True)
class Table:
    caption: str
    frame: pd.DataFrame  # every cell a string


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Paragraph | Table | Rendered] = field(default_factory=list)

    def add(self, *blocks) -> Section:
        self.blocks.extend(b for b in blocks if b is not None)
        return self


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)


def table(caption: str, frame: pd.DataFrame, columns: dict[str, str], formats: dict | None = None) -> Table | None:
    """Pick ``columns`` (name -> header) that exist, format each cell by the unit in the column name (or
    ``formats[name]``), and return a :class:`Table`; ``None`` when nothing is left to show."""
    present = {c: h for c, h in columns.items() if c in frame.columns and frame[c].notna().any()}
    if frame.empty or not present:
        return None
    formats = formats or {}
    out = pd.DataFrame({
        header: [_cell(c, v, formats.get(c)) for v in frame[c]] for c, header in present.items()
    })
    return Table(caption, out)


def _cell(column: str, value, formatter) -> str:
    if formatter is not None:
        return "–" if value is None or (isinstance(value, float) and value != value) else formatter(value)
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return fmt.by_name(column, value)
