"""Finding the results table in README.md with mistune and replacing exactly its lines.

**How source positions are obtained.** mistune 3's AST carries no line numbers, but its
block parser is a loop that moves ``state.cursor`` (a character offset) from block to
block and appends one token per block. :class:`_PositionedBlockParser` subclasses it:
every top-level token gets ``_start`` (the cursor when it was appended, i.e. where its
source begins) and, for tokens made by a rule (headings, tables, blank lines…),
``_end`` (the offset that rule returned); a paragraph ends where the next token starts.
mistune parses a copy of the text with ``\\n`` line endings (it normalises ``\\r\\n`` and
``\\r`` itself), so offsets map to line indexes of that copy, and those index the
original lines, whose bytes (``\\r\\n``, no final newline…) are never touched.

**Which tables.** mistune's own table plugin rejects a whole table when one row has a
different number of cells, and a header row without a trailing ``|`` — GitHub (GFM) shows
both as tables (one real course README has such a header). :func:`_gfm_table` is a
mistune block plugin with GFM's rules instead: outer pipes optional, delimiter row of
``:?-+:?`` cells with as many cells as the header, body rows padded or cut to the header's
width, ending at a blank line or a line without a pipe. The tables it finds are the ones
markdown-it (GitHub's rules) finds on every real fixture; a test checks that.

**Which table is ours.** The first top-level table in the section of the configured
heading (until the next heading of the same or a higher level). Some READMEs label their
table with a paragraph of bold text instead (``**Итоговая таблица:**``): such a label
counts as the heading, its section ending at the next heading. Our paragraphs after the
table, recognised by :data:`GENERATED_MARKER`, belong to the replaced block, and so does
a table right after one of them (the reported-but-not-verified rows). With the heading but
no table, the table goes at the end of that section. Without the heading a README that has
any text is refused (:class:`TableNotFound` lists the headings it has): appending a second
table at the end and leaving the hand-written one in place would be silent damage. Only an
empty README gets the section created.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mistune
from mistune.block_parser import BlockParser
from mistune.core import BlockState

from mcval.errors import InputError

GENERATED_MARKER = "<!-- mcval:table -->"
"""Ends the footnote line mcval writes under the table: marks that paragraph as ours."""

SECTION_LEVEL = 3
"""Level of the heading mcval creates (the course README's sections are ``###``)."""

_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_EOL = re.compile(r"\r\n|\r|\n")
_DELIMITER_CELL = re.compile(r"^:?-+:?$")
_TABLE_PATTERN = r"^ {0,3}\|[^\n]*(?:\n|$)"
_NP_TABLE_PATTERN = r"^ {0,3}[^\s|][^\n]*\|[^\n]*(?:\n|$)"


def split_lines(text: str) -> list[str]:
    """Lines with their own line endings kept (``\\r\\n``, ``\\r``, ``\\n`` or none)."""
    return _LINES.findall(text)


def _content(line: str) -> str:
    return _EOL.sub("", line)


def _split_cells(text: str) -> list[str]:
    """Split a row on pipes not escaped by a backslash (GFM), outer pipes removed."""
    text = text.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|") and not _escaped(text, len(text) - 1):
        text = text[:-1]
    if "\\" not in text:  # fast path: no escapes, every pipe splits
        return [cell.strip() for cell in text.split("|")]
    cells, start = [], 0
    for pos, char in enumerate(text):
        if char == "|" and not _escaped(text, pos):
            cells.append(text[start:pos].strip())
            start = pos + 1
    cells.append(text[start:].strip())
    return cells


def _escaped(text: str, pos: int) -> bool:
    backslashes = 0
    pos -= 1
    while pos >= 0 and text[pos] == "\\":
        backslashes += 1
        pos -= 1
    return backslashes % 2 == 1


def _has_pipe(line: str) -> bool:
    if "\\" not in line:
        return "|" in line
    return any(c == "|" and not _escaped(line, i) for i, c in enumerate(line))


def _align(cell: str) -> str | None:
    if cell.startswith(":") and cell.endswith(":"):
        return "center"
    if cell.startswith(":"):
        return "left"
    if cell.endswith(":"):
        return "right"
    return None


def _parse_gfm_table(block: BlockParser, m: re.Match[str], state: BlockState) -> int | None:
    """A pipe table by GFM's rules.

    The token keeps the header cells and the body rows' source lines; body cells are split
    only when asked for (:meth:`ParsedMarkdown.tables`): locating a 10,000-row table must
    not build 90,000 cell tokens.
    """
    header_line = m.group(0)
    if not _has_pipe(header_line):
        return None
    pos = m.end()
    delimiter_line = state.get_line(pos)
    if not _has_pipe(delimiter_line) and not delimiter_line.strip().startswith(("-", ":")):
        return None
    header = _split_cells(header_line)
    delimiter = _split_cells(delimiter_line)
    if len(header) != len(delimiter) or not all(_DELIMITER_CELL.match(c) for c in delimiter):
        return None
    pos += len(delimiter_line)
    rows = []
    while pos < state.cursor_max:
        line = state.get_line(pos)
        if not line.strip() or not _has_pipe(line):
            break
        rows.append(line)
        pos += len(line)
    state.append_token(
        {
            "type": "table",
            "header": header,
            "aligns": [_align(c) for c in delimiter],
            "row_lines": rows,
        }
    )
    return pos


def table_cells(line: str, width: int) -> list[str]:
    """The source text of a body row's cells, padded or cut to the header's width (GFM)."""
    return (_split_cells(line) + [""] * width)[:width]


def _gfm_table(md: mistune.Markdown) -> None:
    """mistune plugin: GFM pipe tables (see the module docstring for why not mistune's)."""
    md.block.register("table", _TABLE_PATTERN, _parse_gfm_table, before="paragraph")
    md.block.register("nptable", _NP_TABLE_PATTERN, _parse_gfm_table, before="paragraph")


class _PositionedState(BlockState):
    """Block state that stamps each new token with the cursor: where its source starts."""

    def append_token(self, token: dict[str, Any]) -> None:
        token.setdefault("_start", self.cursor)
        super().append_token(token)

    def add_paragraph(self, text: str) -> None:
        last = self.last_token()
        if not (last and last["type"] == "paragraph"):
            self.tokens.append({"type": "paragraph", "text": text, "_start": self.cursor})
        else:
            super().add_paragraph(text)


class _PositionedBlockParser(BlockParser):
    """Block parser that records where each top-level block made by a rule ends."""

    state_cls = _PositionedState

    def parse_method(self, m: re.Match[str], state: BlockState) -> int | None:
        if state.parent is not None:
            return super().parse_method(m, state)
        cursor = state.cursor
        known = {id(token) for token in state.tokens}
        last = state.tokens[-1] if state.tokens else None
        last_type = last["type"] if last else None
        end = super().parse_method(m, state)
        for token in state.tokens:
            if id(token) not in known:
                token.setdefault("_start", cursor)  # lists and quotes are inserted, not appended
                if end is not None:
                    token.setdefault("_end", end)
        if end is not None and last is not None and last["type"] != last_type:
            last["_end"] = end  # a setext underline turned the paragraph into a heading
        return end


def _markdown() -> mistune.Markdown:
    return mistune.Markdown(renderer=None, block=_PositionedBlockParser(), plugins=[_gfm_table])


def plain_text(children: Sequence[dict[str, Any]] | None) -> str:
    """The visible text of inline tokens (emphasis, code and links reduced to their text)."""
    parts: list[str] = []
    for child in children or ():
        kind = child.get("type")
        if kind in {"softbreak", "linebreak"}:
            parts.append(" ")
        elif "children" in child:
            parts.append(plain_text(child["children"]))
        elif "raw" in child:
            parts.append(child["raw"])
    return "".join(parts)


class TableNotFound(InputError):
    """The configured heading is not in a README that has text: say which headings are."""


def _normalise_heading(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    return " ".join(text.split()).rstrip(":").strip().casefold()


@dataclass
class Block:
    """One top-level Markdown block with its source lines ``[start, end)`` (0-based)."""

    token: dict[str, Any]
    start: int
    end: int

    @property
    def type(self) -> str:
        return str(self.token["type"])


@dataclass
class SourceTable:
    """A table as written: header and body cell texts and where its lines are."""

    start: int
    end: int
    header: list[str]
    rows: list[list[str]]
    raw_rows: list[list[str]]
    heading: str | None = None

    def row_line(self, index: int) -> int:
        """0-based line of body row ``index`` (rows are consecutive lines under the header)."""
        return self.start + 2 + index


@dataclass
class ParsedMarkdown:
    """A document split into lines and top-level blocks with line ranges."""

    lines: list[str]
    markdown: mistune.Markdown
    env: Any
    blocks: list[Block] = field(default_factory=list)

    def text(self, source: str) -> str:
        """Visible text of inline Markdown source (a heading, a cell)."""
        return plain_text(self.markdown.inline(source.strip(" \r\n\t\f"), self.env))

    def tables(self) -> list[SourceTable]:
        """Every top-level table, with the text of the nearest heading above it."""
        found, heading = [], None
        for block in self.blocks:
            if block.type == "heading":
                heading = self.text(block.token["text"])
            elif block.type == "table":
                width = len(block.token["header"])
                raw_rows = [table_cells(line, width) for line in block.token["row_lines"]]
                found.append(
                    SourceTable(
                        start=block.start,
                        end=block.end,
                        header=[self.text(c) for c in block.token["header"]],
                        rows=[[self.text(c) for c in row] for row in raw_rows],
                        raw_rows=raw_rows,
                        heading=heading,
                    )
                )
        return found


def parse_markdown(text: str) -> ParsedMarkdown:
    """Parse with mistune and give every top-level block its source line range."""
    lines = split_lines(text)
    normalised = "".join(_content(line) + "\n" for line in lines)
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(_content(line)) + 1
    # Block structure only: inline parsing (of every cell of a 10,000-row table) is done
    # lazily, for the few texts that are read (headings; cells when importing).
    md = _markdown()
    state = md.block.state_cls()
    state.process(normalised)
    md.block.parse(state)
    tokens = state.tokens

    def line_of(pos: int) -> int:
        import bisect

        return bisect.bisect_right(starts, pos) - 1 if pos < offset else len(lines)

    parsed = ParsedMarkdown(lines=lines, markdown=md, env=state.env)
    top = [t for t in tokens if "_start" in t]
    for i, token in enumerate(top):
        end = token.get("_end")
        if end is None:
            end = top[i + 1]["_start"] if i + 1 < len(top) else offset
        start_line = line_of(token["_start"])
        end_line = line_of(end) if end < offset else len(lines)
        parsed.blocks.append(Block(token, start_line, max(end_line, start_line + 1)))
    return parsed


@dataclass(frozen=True)
class TableLocation:
    """Where the generated block goes: lines ``[start, end)`` are replaced by it."""

    start: int
    end: int
    heading_found: bool
    table_found: bool


def bold_label(parsed: ParsedMarkdown, block: Block) -> str | None:
    """The text of a paragraph that is nothing but bold text (``**Итоговая таблица:**``),
    the label some READMEs put above their table instead of a heading."""
    if block.type != "paragraph":
        return None
    children = [
        child
        for child in parsed.markdown.inline(block.token["text"].strip(), parsed.env)
        if child["type"] not in {"softbreak", "linebreak"}
        and not (child["type"] == "text" and not child.get("raw", "").strip())
    ]
    if len(children) == 1 and children[0]["type"] == "strong":
        return plain_text(children[0]["children"])
    return None


def section_labels(parsed: ParsedMarkdown) -> list[str]:
    """What a ``[table] heading`` can name: each heading's text and each bold label, as
    written (``### Расписание``, ``**Итоговая таблица:**``), in document order."""
    labels = []
    for block in parsed.blocks:
        if block.type == "heading":
            level = block.token["attrs"]["level"]
            labels.append(f"{'#' * level} {parsed.text(block.token['text'])}")
        else:
            label = bold_label(parsed, block)
            if label is not None:
                labels.append(f"**{label}**")
    return labels


def _find_label(parsed: ParsedMarkdown, wanted: str) -> tuple[int, int] | None:
    """``(block index, level)`` of the heading named ``wanted``, else of a bold label with
    that text (level 7: its section ends at any heading)."""
    blocks = parsed.blocks
    for i, b in enumerate(blocks):
        if b.type == "heading" and _normalise_heading(parsed.text(b.token["text"])) == wanted:
            return i, int(b.token["attrs"]["level"])
    for i, b in enumerate(blocks):
        label = bold_label(parsed, b) if b.type == "paragraph" else None
        if label is not None and _normalise_heading(label) == wanted:
            return i, 7
    return None


def _not_found(parsed: ParsedMarkdown, heading: str) -> TableNotFound:
    labels = section_labels(parsed)
    found = "; ".join(f"'{label}'" for label in labels[:12]) or "none"
    if len(labels) > 12:
        found += f" and {len(labels) - 12} more"
    return TableNotFound(
        f"no heading '{heading}' above a table (headings and bold labels found: {found}); "
        "set `heading` under [table] in mcval.toml to the text of the one above the results "
        f"table (without '#' or '**'), or add the line '### {heading}' where the table belongs"
    )


def locate_table(parsed: ParsedMarkdown, heading: str) -> TableLocation:
    """The lines of the table (and our footnote) under ``heading``; see the module docstring.

    Raises :class:`TableNotFound` when the heading is missing from a README with text.
    """
    blocks = parsed.blocks
    found = _find_label(parsed, _normalise_heading(heading))
    if found is None:
        if any(line.strip() for line in parsed.lines):
            raise _not_found(parsed, heading)
        return TableLocation(len(parsed.lines), len(parsed.lines), False, False)
    index, level = found
    section_end = len(blocks)
    for j in range(index + 1, len(blocks)):
        if blocks[j].type == "heading" and blocks[j].token["attrs"]["level"] <= level:
            section_end = j
            break
    for j in range(index + 1, section_end):
        if blocks[j].type != "table":
            continue
        return TableLocation(blocks[j].start, _our_end(parsed, j, section_end), True, True)
    # The heading without a table: insert at the end of its section, before blank lines.
    at = section_end
    while at - 1 > index and blocks[at - 1].type == "blank_line":
        at -= 1
    line = blocks[at - 1].end if at - 1 >= 0 else 0
    return TableLocation(line, line, True, False)


def _our_end(parsed: ParsedMarkdown, table: int, section_end: int) -> int:
    """Where the block that starts with table ``table`` ends: after each paragraph of ours
    (:data:`GENERATED_MARKER`) that follows, and a table right after such a paragraph."""
    blocks = parsed.blocks
    end = blocks[table].end
    k, after_ours = table + 1, False
    while k < section_end:
        while k < section_end and blocks[k].type == "blank_line":
            k += 1
        if k >= section_end:
            break
        block = blocks[k]
        if block.type == "paragraph":
            source = "".join(parsed.lines[block.start : block.end])
            if GENERATED_MARKER not in source:
                break
            after_ours = True
        elif block.type == "table" and after_ours:
            after_ours = False
        else:
            break
        end = block.end
        k += 1
    return end


def _eol_of(lines: Sequence[str], near: int) -> str:
    """The line ending to write: the one of the nearest line that has one, else ``\\n``."""
    order = list(range(near, len(lines))) + list(range(near - 1, -1, -1))
    for i in order:
        match = _EOL.search(lines[i]) if 0 <= i < len(lines) else None
        if match:
            return match.group(0)
    return "\n"


def _blank(line: str) -> bool:
    return not line.strip()


def replace_table(text: str, heading: str, block: Sequence[str]) -> str:
    """``text`` with the table under ``heading`` replaced by ``block`` (lines, no endings).

    Only the located lines change; blank separator lines are added where Markdown needs
    them (a paragraph right after a table would be read as a row). Idempotent: the output
    of a second call with the same block is the same text.
    """
    parsed = parse_markdown(text)
    where = locate_table(parsed, heading)
    lines = list(parsed.lines)
    start, end = where.start, where.end
    eol = _eol_of(lines, start)
    new = list(block)
    if not where.table_found and start == len(lines) and lines and not _EOL.search(lines[-1]):
        lines[-1] += eol  # appending after a last line that has no line ending
    if not where.heading_found:
        new = [f"{'#' * SECTION_LEVEL} {heading}", "", *new]
    if not where.table_found and start > 0 and not _blank(lines[start - 1]):
        new = ["", *new]
    if end < len(lines) and not _blank(lines[end]):
        new.append("")
    rendered = [line + eol for line in new]
    if where.table_found and end == len(lines) and not _EOL.search(lines[end - 1]):
        rendered[-1] = new[-1]  # the file ended without a newline: keep it that way
    return "".join(lines[:start] + rendered + lines[end:])


def current_block(text: str, heading: str) -> list[str]:
    """The lines (without endings) that :func:`replace_table` would replace (for diffs)."""
    parsed = parse_markdown(text)
    where = locate_table(parsed, heading)
    return [_content(line) for line in parsed.lines[where.start : where.end]]
