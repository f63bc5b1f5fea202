"""The migration walkthrough of docs/maintainers.md, step by step, on a real 2025 README.

import-table → fix the TODOs → check → table (rows reported, not verified) → a result
stored as the runner stores it → table (that row verified, the rest still shown). The
heading and every line outside the table stay byte for byte. If this test changes, change
the walkthrough in docs/maintainers.md with it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.records import make_record

from mcval.cli import main
from mcval.commands import table as table_command
from mcval.policy import DEFAULT_HEADING, Policy
from mcval.render.readme import GENERATED_MARKER, current_block, split_lines
from mcval.results import ResultRecord, save_record

FIXTURE = Path(__file__).parent / "fixtures" / "course-2025" / "README-da335a2.md"
TABLE_LINES = (6, 13)
"""The fixture's hand table: lines [6, 13) (0-based), right under the heading on line 5."""
MODEL_SHA = "4f5c6b3a2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b"
DATA_SHA = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
TEAM = "ml_masters"
IMPORTED = [
    "bert-large-ner-clustering-128-clusters.yaml",
    "bert-large-ner-original.yaml",
    "bert-large-ner-pruning.yaml",
    "bert-large-ner-quantized-float16.yaml",
    "bert-large-ner-quantized-int8.yaml",
]


def fake_plot(records: list[ResultRecord], policy: Policy) -> bytes:
    """Stands in for the slow SVG renderer (tested in test_table_plot.py)."""
    return ("\n".join(sorted(r.id for r in records)) + "\n").encode()


def fix_todos(path: Path) -> None:
    """What the maintainer does by hand: pin the checkpoint, name the evaluation data,
    say on which hardware the numbers were measured; the TODO comments go."""
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["model"]["revision"] = MODEL_SHA
    data["evaluation"]["dataset"] = {
        "path": "eriktks/conll2003",
        "split": "test",
        "revision": DATA_SHA,
        "samples": 200,
    }
    data["reported"].setdefault("hardware", {"gpu": "Tesla T4"})
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def outside_table(text: str, block_lines: int) -> tuple[list[str], list[str]]:
    """The lines before and after the table block, with their own line endings."""
    lines = split_lines(text)
    return lines[: TABLE_LINES[0]], lines[TABLE_LINES[0] + block_lines :]


def test_migration_walkthrough_on_a_real_readme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(table_command, "render_plot", fake_plot)
    repo = tmp_path / "course"
    (repo / ".git").mkdir(parents=True)
    shutil.copy(FIXTURE, repo / "README.md")
    original = FIXTURE.read_bytes().decode("utf-8")
    original_lines = split_lines(original)
    assert original_lines[5] == f"### {DEFAULT_HEADING}\n"
    readme = str(repo / "README.md")

    # 1. Import the hand table: one file per row, TODOs where the README says nothing.
    assert main(["import-table", readme, "--default-team", TEAM, "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{readme}: 1 table(s), 5 submission file(s)\n")
    files = sorted((repo / "submissions" / TEAM).glob("*.yaml"))
    assert [f.name for f in files] == IMPORTED
    assert all("# TODO(mcval import): model.revision" in f.read_text() for f in files)

    # 2. Fix the TODOs; `mcval check` then passes without a warning.
    for path in files:
        fix_todos(path)
    assert main(["check", str(repo / "submissions"), "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert out.endswith("5 of 5 submission file(s) valid\n")
    assert "warning" not in out and "TODO" not in "".join(f.read_text() for f in files)

    # 3. The first `mcval table`: no verified result yet, the five rows stay visible as
    #    reported, not verified; the hand table (5 rows) is replaced by 5 rows, no --force.
    assert main(["table", "--repo", str(repo)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(
        f"{readme}: table regenerated (0 rows, 5 reported but not verified)\n"
    )
    assert captured.err == ""
    text = (repo / "README.md").read_bytes().decode("utf-8")
    block = current_block(text, DEFAULT_HEADING)
    before, after = outside_table(text, len(block))
    assert before == original_lines[: TABLE_LINES[0]]  # the heading and all above it
    assert after == original_lines[TABLE_LINES[1] :]  # every line after the table
    assert (
        text.encode()
        == ("".join(before) + "".join(f"{line}\n" for line in block) + "".join(after)).encode()
    )
    label = block.index(next(line for line in block if line.startswith("**Заявлено")))
    assert block[:3] == [block[0], block[1], ""]  # the verified table: a header, no row
    assert block[3].startswith("Проверенных результатов пока нет.")
    assert block[label].startswith("**Заявлено командами, ещё не проверено** (5 стр.)")
    assert block[label].endswith(GENERATED_MARKER)
    pending = block[label + 4 :]
    assert [row.split(" | ")[2] for row in pending] == [
        "Оригинал",  # the baseline first, then the methods that compress it
        "Clustering (128 clusters)",
        "Pruning",
        "Quantized Float16",
        "Quantized INT8",
    ]
    assert pending[0] == (
        "| dslim/bert-large-NER | ml_masters | Оригинал | 1361.92 | 769.10 | 31.90 "
        "| 2764.80 | 1433.60 | 82.80% Entity F1 | ещё не измерено |"
    )

    # 4. The runner measures the baseline (stored as `mcval validate` stores it): that row
    #    moves to the verified table, the other four are still shown as not verified.
    save_record(
        repo / "results",
        make_record(
            f"{TEAM}/bert-large-ner-original",
            "dslim/bert-large-NER",
            "Оригинал",
            task="token-classification",
            weights_mb=1278.28,
            latency_cpu_ms=702.4,
            quality={"entity_f1": 0.8291},
        ),
    )
    assert main(["table", "--repo", str(repo)]) == 0
    assert capsys.readouterr().out.startswith(
        f"{readme}: table regenerated (1 rows, 4 reported but not verified)\n"
    )
    text = (repo / "README.md").read_bytes().decode("utf-8")
    block = current_block(text, DEFAULT_HEADING)
    before, after = outside_table(text, len(block))
    assert (before, after) == (
        original_lines[: TABLE_LINES[0]],
        original_lines[TABLE_LINES[1] :],
    )
    assert block[2].startswith("| dslim/bert-large-NER | ml_masters | Оригинал | 1278.28 |")
    assert "(4 стр.)" in next(line for line in block if line.startswith("**Заявлено"))
    assert all("Оригинал" not in line for line in block[block.index(block[2]) + 1 :])

    # 5. Running it again changes nothing.
    assert main(["table", "--repo", str(repo)]) == 0
    assert "unchanged (1 rows, 4 reported but not verified)" in capsys.readouterr().out
    assert (repo / "README.md").read_bytes().decode("utf-8") == text


def test_the_documented_walkthrough_is_this_one() -> None:
    """docs/maintainers.md shows this test's fixture, commands and outputs."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "maintainers.md").read_text(
        encoding="utf-8"
    )
    section = docs.split("## 6. Migrating last year's hand-written table", 1)[1]
    for text in (
        "tests/fixtures/course-2025/README-da335a2.md",
        "tests/test_migration_walkthrough.py",
        f"mcval import-table README.md --default-team {TEAM}",
        "README.md: 1 table(s), 5 submission file(s)",
        *(f"submissions/{TEAM}/{name}" for name in IMPORTED),
        "5 of 5 submission file(s) valid",
        "README.md: table regenerated (0 rows, 5 reported but not verified)",
        "**Заявлено командами, ещё не проверено**",
        'heading = "Итоговая таблица"',
    ):
        assert text in section, text
