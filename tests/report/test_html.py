import re

import pandas as pd

from bench_lib.report import html
from bench_lib.report.document import Document, Paragraph, Section, Table
from tests.report.conftest import HOSTILE


def _doc():
    frame = pd.DataFrame({"machine": [HOSTILE], "verdict": ["holds"], "note": ['a "q" & <b>b</b>\n<i>two</i>']})
    return Document("t <i>", HOSTILE, [Section("s1", "Sec <x>", [Paragraph(HOSTILE, "warning"), Table("cap <c>", frame)])])


def test_every_value_is_escaped(tmp_path):
    text = html.write(_doc(), tmp_path).read_text()
    assert "<script>" not in text and "<b>b</b>" not in text and "<i>" not in text and "<x>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "a &quot;q&quot; &amp; &lt;b&gt;b&lt;/b&gt;<br>&lt;i&gt;two&lt;/i&gt;" in text  # parts on lines, still text
    assert '<td class="v-holds">holds</td>' in text


def test_page_is_self_contained(report):
    text = report.index.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//)""", text)
    assert "<script" not in text.lower()
    images = re.findall(r'<img alt="[^"]*" src="([^"]{0,30})', text)
    assert len(images) == len(report.figures) >= 10
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "Content-Security-Policy" in text
