"""Escaping submission text for Markdown: exact output, and what GitHub's rules render."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from mcval.render.markdown import code_span, escape_cell, escape_inline
from mcval.render.readme import parse_markdown

ZWSP = "\u200b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("INT8 | fp16", "INT8 \\| fp16"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("@everyone look", "@&#8203;everyone look"),
        ("ping @org/team", "ping @&#8203;org/team"),
        ("two\nlines\r\nand\rmore", "two lines and more"),
        ("x `code` y", "x \\`code\\` y"),
        ("[click](https://evil.example)", "\\[click\\](https://evil.example)"),
        ("![pixel](https://t.example/p.png)", "\\!\\[pixel\\](https://t.example/p.png)"),
        ("<!-- mcval:report -->", "&lt;!-- mcval:report --&gt;"),
        ("ml_masters", "ml_masters"),
        ("_em_ and *strong*", "\\_em\\_ and \\*strong\\*"),
        ("~~gone~~", "\\~\\~gone\\~\\~"),
        ("back\\slash", "back\\\\slash"),
        ("fixes #12", "fixes #&#8203;12"),
        ("&#64;everyone &amp;", "&amp;#&#8203;64;everyone &amp;amp;"),
        ("# heading", "\\# heading"),
        ("- item", "\\- item"),
        ("1. item", "1\\. item"),
        ("bidi\u202eevil\u202c", "bidievil"),
        ("tab\there", "tab here"),
        ("a@b.example", "a@&#8203;b.example"),
        ("", ""),
    ],
)
def test_escape_inline_exact(text: str, expected: str) -> None:
    assert escape_inline(text) == expected


def test_escape_cell_trims_and_keeps_one_line() -> None:
    assert escape_cell("  INT8 |\n<b>dyn</b>  ") == "INT8 \\| &lt;b&gt;dyn&lt;/b&gt;"


class _Cells(HTMLParser):
    """Text of every <td>, and every tag seen (to prove no HTML was injected)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[str] = []
        self.tags: set[str] = set()
        self._in_td = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "td":
            self._in_td = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_td = False

    def handle_data(self, data: str) -> None:
        if self._in_td:
            self.cells[-1] += data

    def handle_comment(self, data: str) -> None:
        self.tags.add("<!--")


NASTY = [
    "INT8 | fp16",
    "<script>alert(1)</script>",
    "@everyone",
    "two\nlines",
    "x `code` y",
    "[a](https://evil.example) ![p](https://t.example/p.png)",
    "<!-- mcval:report -->",
    "a\\|b",
    "*em* _u_ ml_masters",
    "# 1. - +",
    "&#64;x &amp; <https://auto.example>",
    "<img src=x onerror=alert(1)>",
]


def test_escaped_cells_render_as_the_literal_text_under_gfm_rules() -> None:
    """markdown-it (CommonMark + GFM tables) shows exactly the text, and no tag or link."""
    header = "| " + " | ".join(f"c{i}" for i in range(len(NASTY))) + " |\n"
    delimiter = "|" + " --- |" * len(NASTY) + "\n"
    row = "| " + " | ".join(escape_cell(text) for text in NASTY) + " |\n"
    rendered = MarkdownIt("commonmark").enable("table").render(header + delimiter + row)
    parser = _Cells()
    parser.feed(rendered)
    shown = [cell.replace(ZWSP, "") for cell in parser.cells]
    assert shown == [" ".join(text.split("\n")) for text in NASTY]
    assert parser.tags == {"table", "thead", "tbody", "tr", "th", "td"}


def test_escaped_cells_keep_the_column_count_in_mistune() -> None:
    row = "| " + " | ".join(escape_cell(text) for text in NASTY) + " |\n"
    doc = "|" + " h |" * len(NASTY) + "\n|" + " - |" * len(NASTY) + "\n" + row
    (table,) = parse_markdown(doc).tables()
    assert len(table.rows[0]) == len(NASTY)
    assert table.rows[0][0] == "INT8 | fp16"


def test_code_span_shows_text_verbatim() -> None:
    assert code_span("submissions/a_b/x.yaml") == "`submissions/a_b/x.yaml`"
    assert code_span("a`b") == "``a`b``"
    assert code_span("`x`") == "`` `x` ``"
    assert code_span("a|b", in_table=True) == "`a\\|b`"
    md = MarkdownIt("commonmark").enable("table")
    rendered = md.render("| h |\n| - |\n| " + code_span("p|<i>`q", in_table=True) + " |\n")
    assert "<td><code>p|&lt;i&gt;`q</code></td>" in rendered
