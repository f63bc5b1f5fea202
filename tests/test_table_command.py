"""``mcval table`` end to end: submissions/ + results/ → README table and plot; --check."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fixtures.records import make_record, whisper_family

from mcval.commands import table as table_command
from mcval.policy import DEFAULT_HEADING, Policy
from mcval.render.readme import current_block, split_lines
from mcval.render.table import render_rows
from mcval.results import ResultRecord, save_record

FIXTURE = Path(__file__).parent / "fixtures" / "course-2025" / "README-36b8cd1.md"


def fake_plot(records: list[ResultRecord], policy: Policy) -> bytes:
    """Stands in for the slow SVG renderer (tested on its own): bytes that follow the data."""
    return ("\n".join(sorted(r.id for r in records)) + "\n").encode()


def make_repo(root: Path) -> list[ResultRecord]:
    """A repository with the whisper family, one failing and one orphaned result."""
    shown = whisper_family()
    failing = make_record(
        "ml_masters/whisper-small-int4", "openai/whisper-small", "INT4", verdict="fail"
    )
    orphan = make_record("gone/deleted", "org/deleted", "Deleted")
    for record in [*shown, failing]:
        team, name = record.id.split("/")
        (root / "submissions" / team).mkdir(parents=True, exist_ok=True)
        (root / "submissions" / team / f"{name}.yaml").write_text("schema: 1\n", encoding="utf-8")
    for record in [*shown, failing, orphan]:
        save_record(root / "results", record)
    shutil.copy(FIXTURE, root / "README.md")
    (root / ".git").mkdir()
    return shown


def args(root: Path, **extra: object) -> dict[str, Any]:
    """``table_command.table``'s options, as ``mcval table --repo ROOT`` plus ``extra``."""
    values: dict[str, Any] = {"readme": None, "results": None, "check": False, "repo": root}
    values.update(extra)
    return values


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[ResultRecord]]:
    monkeypatch.setattr(table_command, "render_plot", fake_plot)
    return tmp_path, make_repo(tmp_path)


def test_table_regenerated_from_passing_results_of_existing_submissions(
    repo: tuple[Path, list[ResultRecord]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, shown = repo
    original = FIXTURE.read_bytes()
    assert table_command.table(**args(root)) == 0
    assert capsys.readouterr().out == (
        f"{root / 'README.md'}: table regenerated (3 rows)\n"
        f"{root / 'results.svg'}: plot regenerated\n"
    )
    new = (root / "README.md").read_bytes()
    block = current_block(new.decode(), DEFAULT_HEADING)
    assert block[: len(block) - 2] == render_rows(shown, Policy())
    assert "[results.svg](results.svg)" in block[-1]
    old_lines, new_lines = split_lines(original.decode()), split_lines(new.decode())
    assert new_lines[:6] == old_lines[:6]
    assert new_lines[6 + len(block) :] == old_lines[12:]
    assert (root / "results.svg").read_bytes() == fake_plot(shown, Policy())
    # Twice changes nothing.
    assert table_command.table(**args(root)) == 0
    assert capsys.readouterr().out == f"{root / 'README.md'}: unchanged (3 rows)\n"
    assert (root / "README.md").read_bytes() == new


def test_check_mode_reports_stale_table_with_a_diff(
    repo: tuple[Path, list[ResultRecord]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _shown = repo
    assert table_command.table(**args(root, check=True)) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{root / 'README.md'}: the table is out of date; run `mcval table`\n")
    assert "-| dslim/bert-large-NER | Оригинал | 1.33Gb   | 769.1ms |" in out
    assert "+| openai/whisper-small | ml_masters | Whisper | 922.15 |" in out
    assert out.endswith(f"{root / 'results.svg'}: the plot is out of date; run `mcval table`\n")
    assert (root / "README.md").read_bytes() == FIXTURE.read_bytes()
    assert not (root / "results.svg").exists()

    table_command.table(**args(root))
    capsys.readouterr()
    assert table_command.table(**args(root, check=True)) == 0
    assert capsys.readouterr().out.endswith("are up to date (3 rows)\n")

    text = (root / "README.md").read_text(encoding="utf-8")
    (root / "README.md").write_text(text.replace("| 922.15 |", "| 900.00 |"), encoding="utf-8")
    assert table_command.table(**args(root, check=True)) == 1
    out = capsys.readouterr().out
    diff = [
        line for line in out.splitlines() if line[:1] in "+-" and line[:3] not in {"+++", "---"}
    ]
    assert len(diff) == 2
    assert diff[0].startswith("-| openai/whisper-small | ml_masters | Whisper | 900.00 |")
    assert diff[1].startswith("+| openai/whisper-small | ml_masters | Whisper | 922.15 |")


def test_a_deleted_submission_leaves_the_table(repo: tuple[Path, list[ResultRecord]]) -> None:
    root, shown = repo
    (root / "submissions" / "ml_masters" / "whisper-small-fp16.yaml").unlink()
    table_command.table(**args(root))
    block = current_block((root / "README.md").read_text(encoding="utf-8"), DEFAULT_HEADING)
    rows = [r for r in shown if r.id != "ml_masters/whisper-small-fp16"]
    assert block[: len(block) - 2] == render_rows(rows, Policy())


def test_readme_elsewhere_links_the_plot_relatively(repo: tuple[Path, list[ResultRecord]]) -> None:
    root, _shown = repo
    (root / "docs").mkdir()
    readme = root / "docs" / "TABLE.md"
    readme.write_bytes(b"# Results\r\n\r\nNo table yet.")
    table_command.table(**args(root, readme=readme, results=root / "results"))
    text = readme.read_bytes().decode()
    assert text.startswith(
        "# Results\r\n\r\nNo table yet.\r\n\r\n### " + DEFAULT_HEADING + "\r\n\r\n"
    )
    assert "[results.svg](../results.svg)" in text
    assert table_command.plot_link(readme, root / "results.svg") == "../results.svg"


@pytest.mark.slow
def test_real_plot_is_written_once_and_then_stable(tmp_path: Path) -> None:
    make_repo(tmp_path)
    assert table_command.table(**args(tmp_path)) == 0
    svg = (tmp_path / "results.svg").read_bytes()
    assert svg.startswith(b"<?xml")
    assert table_command.table(**args(tmp_path, check=True)) == 0
    assert (tmp_path / "results.svg").read_bytes() == svg


def test_regenerate_writes_unless_asked_not_to(repo: tuple[Path, list[ResultRecord]]) -> None:
    root, _shown = repo
    dry = table_command.regenerate(root, Policy(), write=False)
    assert (dry.readme_changed, dry.plot_changed, dry.rows) == (True, True, 3)
    assert (root / "README.md").read_bytes() == FIXTURE.read_bytes()
    assert not (root / "results.svg").exists()
    done = table_command.regenerate(root, Policy())
    assert (root / "README.md").read_text(encoding="utf-8") == done.new_readme
    assert table_command.write_update(table_command.compute_update(root, Policy())) == []
