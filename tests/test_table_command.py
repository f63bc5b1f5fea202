"""``mcval table`` end to end: submissions/ + results/ → README table and plot; --check."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fixtures.records import make_record, whisper_family

from mcval.cli import main
from mcval.commands import table as table_command
from mcval.errors import ExitCode
from mcval.policy import DEFAULT_HEADING, Policy
from mcval.render.readme import GENERATED_MARKER, current_block, split_lines
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
    """``table_command.table``'s options, as ``mcval table --repo ROOT --force`` plus
    ``extra`` (these tests replace the fixture's hand table by other rows on purpose)."""
    values: dict[str, Any] = {
        "readme": None,
        "results": None,
        "check": False,
        "repo": root,
        "force": True,
    }
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
    head = f"# Results\r\n\r\n## {DEFAULT_HEADING}\r\n\r\nNo table yet."
    readme.write_bytes(head.encode())
    table_command.table(**args(root, readme=readme, results=root / "results"))
    text = readme.read_bytes().decode()
    assert text.startswith(head + "\r\n\r\n| Модель |")
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
    done = table_command.regenerate(root, Policy(), force=True)
    assert (root / "README.md").read_text(encoding="utf-8") == done.new_readme
    assert table_command.write_update(table_command.compute_update(root, Policy())) == []


def test_a_readme_without_the_heading_is_refused_and_left_as_it_was(
    repo: tuple[Path, list[ResultRecord]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16 item 8: a README whose table sits under a bold label, not the heading,
    gets no second table appended: exit 2, the headings it has, how to point at one."""
    root, _shown = repo
    bold = FIXTURE.parent / "README-99d2e56.md"
    shutil.copy(bold, root / "README.md")
    assert main(["table", "--repo", str(root)]) == ExitCode.INPUT
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {root / 'README.md'}: no heading '{DEFAULT_HEADING}' above a table "
        "(headings and bold labels found: '# model-compression-2025'; '**Итоговая таблица:**';"
    )
    assert err.count("\n") == 1
    assert (root / "README.md").read_bytes() == bold.read_bytes()
    assert not (root / "results.svg").exists()
    # Pointed at the bold label, the table under it is the one replaced.
    (root / "mcval.toml").write_text('[table]\nheading = "Итоговая таблица"\n', encoding="utf-8")
    assert main(["table", "--repo", str(root), "--force"]) == ExitCode.OK
    new = (root / "README.md").read_text(encoding="utf-8")
    assert new.count("| Модель |") == 1  # the hand table replaced, not a second one added
    assert new.startswith(bold.read_text(encoding="utf-8").split("| Модель", 1)[0])


VALID = """\
schema: 1
team: {team}
model: {{id: org/tiny-bert, revision: 0123456789abcdef0123456789abcdef01234567,
        task: text-classification}}
method: {{name: "{method}"}}
evaluation:
  dataset: {{path: nyu-mll/glue, name: sst2, split: validation, samples: 64}}
reported:
  weights_mb: {weights}
  latency_cpu_ms: 3.1
  quality: {{accuracy: 0.5}}
  hardware: {{cpu: Intel i7-12700H}}
"""


def write_valid(root: Path, sub_id: str, method: str, weights: float) -> Path:
    team, name = sub_id.split("/")
    path = root / "submissions" / team / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(VALID.format(team=team, method=method, weights=weights), encoding="utf-8")
    return path


def test_unverified_submissions_stay_visible_as_reported_not_verified(
    repo: tuple[Path, list[ResultRecord]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16 item 7: a submission without a passing result keeps its row, in a table of
    its own that says the numbers are the team's and not verified; verified rows stay apart."""
    root, shown = repo
    write_valid(root, "zeta/bert-fp32", "FP32 | <b>", 16.73)
    write_valid(root, "alpha/bert-int8", "INT8", 4.5)
    assert table_command.table(**args(root, force=False)) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(
        f"{root / 'README.md'}: table regenerated (3 rows, 2 reported but not verified)\n"
    )
    # The failing result's file is not a valid submission: named, not shown.
    assert captured.err.startswith("warning: submissions/ml_masters/whisper-small-int4.yaml:1:1: ")
    assert "not shown in the table" in captured.err
    block = current_block((root / "README.md").read_text(encoding="utf-8"), DEFAULT_HEADING)
    assert block[: len(shown) + 2] == render_rows(shown, Policy())
    pending = block[block.index("") + 3 :]
    assert pending[0].startswith("**Заявлено командами, ещё не проверено** (2 стр.)")
    assert pending[0].endswith(GENERATED_MARKER)
    assert pending[2] == (
        "| Модель | Команда | Метод | Размер весов | Время инференса (CPU, ms) "
        "| Время инференса (GPU, ms) | Использование RAM (MB) | Использование VRAM (MB) "
        "| Качество (PPL, BLEU, Accuracy) | Статус |"
    )
    assert pending[4:] == [
        "| org/tiny-bert | alpha | INT8 | 4.50 | 3.10 | — | — | — | 50.00% Accuracy "
        "| ещё не измерено |",
        "| org/tiny-bert | zeta | FP32 \\| &lt;b&gt; | 16.73 | 3.10 | — | — | — "
        "| 50.00% Accuracy | ещё не измерено |",
    ]
    # Stable: a second run changes nothing; the pending rows are replaced, not repeated.
    assert table_command.table(**args(root, force=False)) == 0
    assert "unchanged (3 rows, 2 reported but not verified)" in capsys.readouterr().out
    text = (root / "README.md").read_text(encoding="utf-8")
    assert text.count("Заявлено командами") == 1
    # Once both are verified, the second table and its label are gone, nothing left behind.
    for sub_id in ("zeta/bert-fp32", "alpha/bert-int8"):
        save_record(root / "results", make_record(sub_id, "org/tiny-bert", "x", weights_mb=1.0))
    assert table_command.table(**args(root, force=False)) == 0
    assert "table regenerated (5 rows)" in capsys.readouterr().out
    text = (root / "README.md").read_text(encoding="utf-8")
    assert "Заявлено командами" not in text and text.count(GENERATED_MARKER) == 1
    assert current_block(text, DEFAULT_HEADING)[-1].endswith(GENERATED_MARKER)


def test_a_hand_table_is_not_replaced_by_fewer_rows_unless_forced(
    repo: tuple[Path, list[ResultRecord]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16 item 7: the hand table has 4 rows, the regenerated one 3: exit 2, nothing
    written, both counts and the way out said; --force replaces it."""
    root, _shown = repo
    assert main(["table", "--repo", str(root)]) == ExitCode.INPUT
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {root / 'README.md'}: the hand-written table under the [table] heading has "
        "4 rows and the regenerated one would have 3 (3 verified, 0 reported but not "
        "verified): 1 would be lost;"
    )
    assert err.rstrip().endswith("or rerun with --force to replace the table anyway")
    assert (root / "README.md").read_bytes() == FIXTURE.read_bytes()
    assert not (root / "results.svg").exists()
    assert main(["table", "--repo", str(root), "--force"]) == ExitCode.OK
    assert "the table goes from 4 to 3 rows (1 fewer)" in capsys.readouterr().err
    assert (root / "README.md").read_bytes() != FIXTURE.read_bytes()


def test_our_own_table_losing_a_row_goes_ahead_with_a_warning(
    repo: tuple[Path, list[ResultRecord]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A submission deleted in a reviewed PR: the merge workflow's `mcval table` must not
    stop, but says that the table shrank."""
    root, _shown = repo
    assert main(["table", "--repo", str(root), "--force"]) == ExitCode.OK
    capsys.readouterr()
    (root / "submissions" / "ml_masters" / "whisper-small-fp16.yaml").unlink()
    assert main(["table", "--repo", str(root)]) == ExitCode.OK
    captured = capsys.readouterr()
    assert f"warning: {root / 'README.md'}: the table goes from 3 to 2 rows (1 fewer)" in (
        captured.err
    )
    assert "table regenerated (2 rows)" in captured.out
