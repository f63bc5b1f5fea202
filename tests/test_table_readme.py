"""Locating the results table with mistune and replacing exactly its lines (real READMEs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from mcval.policy import DEFAULT_HEADING
from mcval.render.readme import (
    GENERATED_MARKER,
    TableNotFound,
    current_block,
    locate_table,
    parse_markdown,
    replace_table,
    split_lines,
)

FIXTURES = Path(__file__).parent / "fixtures" / "course-2025"
ALL = sorted(p.name for p in FIXTURES.glob("README-*.md"))
# The fixtures whose results table sits under the seed's heading: (first, end) lines, 0-based.
WITH_HEADING = {
    "README-061a1c2.md": (66, 69),
    "README-0c38655.md": (5, 13),
    "README-36b8cd1.md": (6, 12),
    "README-4c9136f.md": (66, 69),
    "README-6216869.md": (66, 69),
    "README-884610d.md": (43, 50),
    "README-a6aeb88.md": (66, 69),
    "README-da335a2.md": (6, 13),
    "README-de78f8e.md": (41, 47),
    "README-f1d99ee.md": (10, 18),
    "README-f9e184c.md": (66, 72),
}
WITHOUT_HEADING = sorted(set(ALL) - set(WITH_HEADING))
BLOCK = [
    "| Модель | Метод |",
    "| :--- | :---: |",
    "| openai/whisper-small | Whisper |",
    "",
    f"Footnote. {GENERATED_MARKER}",
]


def read(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


def test_all_fixtures_are_classified() -> None:
    assert len(ALL) == 15
    assert WITHOUT_HEADING == [
        "README-5e47171.md",
        "README-69c0733.md",
        "README-99d2e56.md",
        "README-defcc81.md",
    ]


@pytest.mark.parametrize("name", ALL)
def test_tables_match_what_gfm_renders(name: str) -> None:
    """The table lines mistune finds are the ones markdown-it (GFM tables) finds."""
    text = read(name)
    ours = [(t.start, t.end) for t in parse_markdown(text).tables()]
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    theirs = [tuple(t.map) for t in tokens if t.type == "table_open" and t.map]
    assert ours == theirs


@pytest.mark.parametrize("name", sorted(WITH_HEADING))
def test_table_found_and_rewritten_rest_byte_identical(name: str) -> None:
    original = read(name)
    lines = split_lines(original)
    start, end = WITH_HEADING[name]
    where = locate_table(parse_markdown(original), DEFAULT_HEADING)
    assert (where.start, where.end, where.heading_found, where.table_found) == (
        start,
        end,
        True,
        True,
    )
    new = replace_table(original, DEFAULT_HEADING, BLOCK)
    new_lines = split_lines(new)
    assert new_lines[:start] == lines[:start]
    tail = lines[end:]
    assert new_lines[len(new_lines) - len(tail) :] == tail
    middle = new_lines[start : len(new_lines) - len(tail)]
    expected = [line + "\n" for line in BLOCK]
    if tail and tail[0].strip():
        expected.append("\n")
    assert middle == expected
    assert new.encode("utf-8").startswith("".join(lines[:start]).encode("utf-8"))
    assert new.encode("utf-8").endswith("".join(tail).encode("utf-8"))
    assert replace_table(new, DEFAULT_HEADING, BLOCK) == new


def test_exact_rewrite_of_the_seed_layout() -> None:
    original = read("README-4c9136f.md")
    new = replace_table(original, DEFAULT_HEADING, BLOCK)
    lines = split_lines(original)
    assert lines[65] == "### Таблица сравнения методов компрессии моделей\n"
    assert lines[68].startswith("| dslim/bert-large-NER | Оригинал | 1.33Gb")
    assert new == "".join(lines[:66]) + "".join(f"{b}\n" for b in BLOCK) + "".join(lines[69:])


def test_a_new_block_replaces_the_previous_block_and_its_footnote() -> None:
    original = read("README-36b8cd1.md")
    first = replace_table(original, DEFAULT_HEADING, BLOCK)
    longer = [*BLOCK[:3], "| Qwen/Qwen2.5-1.5B | FP16 |", "", f"Other footnote. {GENERATED_MARKER}"]
    second = replace_table(first, DEFAULT_HEADING, longer)
    assert second.count(GENERATED_MARKER) == 1
    assert "Footnote." not in second
    assert second == replace_table(original, DEFAULT_HEADING, longer)
    assert current_block(second, DEFAULT_HEADING) == longer


def test_crlf_line_endings_are_kept() -> None:
    original = read("README-da335a2.md").replace("\n", "\r\n")
    new = replace_table(original, DEFAULT_HEADING, BLOCK)
    assert "\n" not in new.replace("\r\n", "")
    lines, new_lines = split_lines(original), split_lines(new)
    assert new_lines[:6] == lines[:6]
    assert new_lines[6 : 6 + len(BLOCK)] == [line + "\r\n" for line in BLOCK]
    assert new_lines[6 + len(BLOCK) :] == lines[13:]
    assert replace_table(new, DEFAULT_HEADING, BLOCK) == new


def test_table_at_the_end_without_final_newline() -> None:
    original = read("README-f1d99ee.md")
    assert original.endswith("|\n")
    original = original[:-1]
    new = replace_table(original, DEFAULT_HEADING, BLOCK)
    assert new == "".join(split_lines(original)[:10]) + "\n".join(BLOCK)
    assert replace_table(new, DEFAULT_HEADING, BLOCK) == new


@pytest.mark.parametrize("name", WITHOUT_HEADING)
def test_readme_without_the_heading_is_refused_with_the_headings_found(name: str) -> None:
    """Issue 16 item 8: no second table appended silently; the error lists what is there."""
    original = read(name)
    with pytest.raises(TableNotFound) as caught:
        replace_table(original, DEFAULT_HEADING, BLOCK)
    message = caught.value.message
    assert message.startswith(f"no heading '{DEFAULT_HEADING}' above a table")
    assert "set `heading` under [table] in mcval.toml" in message
    assert f"add the line '### {DEFAULT_HEADING}'" in message
    first_heading = next(line for line in original.splitlines() if line.startswith("#"))
    assert f"'{first_heading.strip()}'" in message
    assert "\n" not in message


def test_the_error_names_bold_labels_and_a_bold_label_can_be_the_heading() -> None:
    """Issue 16 item 8: README-99d2e56 labels its table ``**Итоговая таблица:**``."""
    original = read("README-99d2e56.md")
    with pytest.raises(TableNotFound) as caught:
        replace_table(original, DEFAULT_HEADING, BLOCK)
    assert "'**Итоговая таблица:**'" in caught.value.message
    assert "'# model-compression-2025'" in caught.value.message
    where = locate_table(parse_markdown(original), "Итоговая таблица")
    assert (where.start, where.end, where.table_found) == (9, 16, True)
    new = replace_table(original, "Итоговая таблица", BLOCK)
    lines = split_lines(original)
    assert new == "".join(lines[:9]) + "".join(f"{b}\n" for b in BLOCK) + "".join(lines[16:])
    assert replace_table(new, "Итоговая таблица", BLOCK) == new


def test_an_empty_readme_gets_the_section_and_text_without_it_is_refused() -> None:
    assert replace_table("", DEFAULT_HEADING, BLOCK) == (
        f"### {DEFAULT_HEADING}\n\n" + "\n".join(BLOCK) + "\n"
    )
    assert replace_table("\n\n", DEFAULT_HEADING, BLOCK).endswith("\n".join(BLOCK) + "\n")
    with pytest.raises(TableNotFound, match=r"found: '# Course'\); set"):
        replace_table("# Course\n\nText", DEFAULT_HEADING, BLOCK)


def test_heading_without_table_gets_it_at_the_end_of_its_section() -> None:
    text = (
        "# Course\n\n## Таблица сравнения методов компрессии моделей:\n\n"
        "Rows are generated.\n\n### Sub-section text stays\n\nMore.\n\n## Next\n\n| a |\n| - |\n"
    )
    new = replace_table(text, DEFAULT_HEADING, BLOCK)
    assert new == (
        "# Course\n\n## Таблица сравнения методов компрессии моделей:\n\n"
        "Rows are generated.\n\n### Sub-section text stays\n\nMore.\n\n"
        + "".join(f"{b}\n" for b in BLOCK)
        + "\n## Next\n\n| a |\n| - |\n"
    )
    assert replace_table(new, DEFAULT_HEADING, BLOCK) == new


def test_headings_and_tables_in_code_or_other_sections_are_not_ours() -> None:
    text = (
        "```\n### Таблица сравнения методов компрессии моделей\n| a |\n|---|\n```\n\n"
        "Таблица сравнения методов компрессии моделей\n"
        "============================================\n\n"
        "text\n\n# Other\n\n| x | y |\n|---|---|\n| 1 | 2 |\n"
    )
    where = locate_table(parse_markdown(text), DEFAULT_HEADING)
    assert (where.heading_found, where.table_found) == (True, False)
    assert (where.start, where.end) == (10, 10)  # after "text", before "# Other"


def test_heading_match_ignores_case_spacing_and_colon() -> None:
    text = "#  таблица   сравнения методов компрессии моделей :\n| a |\n| - |\n| 1 |\n"
    where = locate_table(parse_markdown(text), DEFAULT_HEADING)
    assert (where.start, where.end, where.table_found) == (1, 4, True)
