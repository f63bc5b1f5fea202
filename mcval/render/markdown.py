"""Escaping text that comes from a submission before it goes into GitHub Markdown.

A team name, method name, model id or hardware note is untrusted text. Put into the
README table or the PR comment verbatim, a ``|`` would split a table cell, a newline
would end the table, ``<script>`` or ``<!--`` would inject HTML or hide the rest of the
document (or fake the bot's marker comment), ``[x](https://…)`` would make a link that
says something else than where it goes, ``![](…)`` a tracking image, and
``@everyone`` / ``@org/team`` would ping people from the bot's account.

The rules, applied by :func:`escape_inline` (and :func:`escape_cell`, its table form):

- line breaks of every kind (``\\r\\n``, ``\\r``, ``\\n``, U+0085, U+2028, U+2029, VT, FF)
  and tabs become one space: the text stays on one line, inside its block;
- other control characters and the Unicode bidi controls (a "Trojan source" name can
  display in a different order than it reads) are dropped;
- ``&``, ``<`` and ``>`` become the entities ``&amp;``, ``&lt;``, ``&gt;``: no tag, no
  comment, no autolink, and no entity a student wrote (``&#64;``) is decoded;
- Markdown punctuation is backslash-escaped so it renders as itself: ``\\``, `````,
  ``*``, ``[``, ``]``, ``|``, ``~`` always, ``_`` unless it sits between two letters or
  digits (``ml_masters`` cannot start emphasis, so it stays readable in the raw README),
  ``!`` before ``[``, and a leading block marker (``#``, ``+``, ``-``, ``=``, ``1.``);
- ``@`` before a name and ``#`` before a number get a zero-width space (written as the
  entity ``&#8203;``, visible in the source) so GitHub neither mentions anyone nor links
  an issue; the rendered text still reads ``@everyone``.

Text in a code span needs other rules (backslashes and entities are literal there):
use :func:`code_span`.
"""

from __future__ import annotations

import re

ZERO_WIDTH_SPACE = "&#8203;"

_LINE_BREAKS = re.compile(r"\r\n|[\r\n\t\v\f\x85\u2028\u2029]")
_DROPPED = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ATTENTION = re.compile(
    r"[\\`*\[\]|~&<>_!@#\x00-\x1f\x7f\x85\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
"""Any character :func:`escape_inline` changes; text without one is returned as is (fast)."""
_MENTION_NEXT = re.compile(r"[A-Za-z0-9_-]")
_MENTION_OR_ISSUE = re.compile(r"@(?=[A-Za-z0-9_-])|#(?=\d)")
_LEADING_ORDERED = re.compile(r"^(\d{1,9})([.)])")
_LEADING_MARKERS = ("#", "+", "-", "=")
_ALWAYS = {
    "\\": "\\\\",
    "`": "\\`",
    "*": "\\*",
    "[": "\\[",
    "]": "\\]",
    "|": "\\|",
    "~": "\\~",
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
}


def one_line(text: str) -> str:
    """The text on one line: every line break or tab becomes a space, controls are dropped."""
    return _DROPPED.sub("", _LINE_BREAKS.sub(" ", text))


def escape_inline(text: str) -> str:
    """Untrusted text made safe (and literal) anywhere inline: paragraph, heading, list, cell."""
    escaped = _escape_chars(text) if _ATTENTION.search(text) else text
    if escaped.startswith(_LEADING_MARKERS):
        escaped = "\\" + escaped
    return _LEADING_ORDERED.sub(r"\1\\\2", escaped)


def _escape_chars(text: str) -> str:
    text = one_line(text)
    out: list[str] = []
    last = len(text) - 1
    for i, char in enumerate(text):
        if char in _ALWAYS:
            out.append(_ALWAYS[char])
        elif char == "_":
            inside_word = 0 < i < last and text[i - 1].isalnum() and text[i + 1].isalnum()
            out.append("_" if inside_word else "\\_")
        elif char == "!" and i < last and text[i + 1] == "[":
            out.append("\\!")
        elif char == "@" and i < last and _MENTION_NEXT.match(text[i + 1]):
            out.append("@" + ZERO_WIDTH_SPACE)
        elif char == "#" and i < last and text[i + 1].isdigit():
            out.append("#" + ZERO_WIDTH_SPACE)
        else:
            out.append(char)
    return "".join(out)


def escape_cell(text: str) -> str:
    """Untrusted text for one GFM table cell: :func:`escape_inline`, trimmed.

    GFM splits cells on unescaped ``|`` before any inline parsing, so the pipe escape
    that :func:`escape_inline` always applies is what keeps the row's column count.
    """
    return escape_inline(text).strip()


def code_span(text: str, *, in_table: bool = False) -> str:
    """Untrusted text shown verbatim in a code span (a path, a command).

    Inside backticks nothing is unescaped, so the text is kept as is, only put on one line
    and fenced with one backtick more than its longest backtick run. In a table cell a
    ``|`` still splits the cell (GFM), so it is escaped there; GitHub shows it as ``|``.
    """
    text = one_line(text)
    runs = [len(m) for m in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.strip()):
        text = f" {text} "
    if in_table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"


def escape_html_text(text: str) -> str:
    """Untrusted text inside raw HTML (a ``<summary>``), where Markdown is not parsed, so
    backslash escapes would show: entities for ``&<>"'``, one line, and the same
    zero-width space after ``@`` / ``#`` as :func:`escape_inline` (GitHub still links
    mentions and issue numbers there)."""
    import html

    escaped = html.escape(one_line(text), quote=True)  # makes no '@', nor '#' + digit
    return _MENTION_OR_ISSUE.sub(lambda m: m.group(0) + ZERO_WIDTH_SPACE, escaped)
