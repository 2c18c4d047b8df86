import pandas as pd

from bench_lib.report import markdown
from bench_lib.report.document import Document, Paragraph, Section, Table


def test_cells_cannot_break_the_table_or_inject_markup():
    frame = pd.DataFrame({"a|b": ["x | y", "<script>"], "c": ["line\nbreak", "ok"]})
    text = markdown.render(Document("T", "sub", [Section("s", "S", [Paragraph("p", "warning"), Table("cap", frame)])]))
    lines = text.splitlines()
    assert "| a\\|b | c |" in lines and "| x \\| y | line; break |" in lines and "| &lt;script&gt; | ok |" in lines
    assert "> **Warning:** p" in lines


def test_report_md_links_figures(report):
    text = report.markdown.read_text()
    for fig in report.figures:
        assert f"](figures/{fig.name})" in text
    assert "## The tutorial's claims, checked" in text
