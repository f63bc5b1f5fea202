"""``mcval.ci.actions``: the one place that reads and writes the GitHub Actions environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from ci_helpers import read_outputs

from mcval.ci.actions import (
    annotation,
    github_client,
    log_safe,
    running_in_actions,
    write_outputs,
    write_step_summary,
)
from mcval.github import GithubError
from mcval.policy import Policy

PACKAGE = Path(__file__).resolve().parents[1] / "mcval"


def test_only_the_ci_package_and_the_client_mention_github_variables() -> None:
    """Only ``mcval/ci/`` and ``mcval/github.py`` know they run on GitHub: everything else
    gets what it needs from ``mcval.ci.actions`` (docs/ARCHITECTURE rule)."""
    allowed = {PACKAGE / "github.py"}
    offenders = [
        path.relative_to(PACKAGE.parent).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in allowed
        and (PACKAGE / "ci") not in path.parents
        and "GITHUB_" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_outputs_are_heredocs_a_value_cannot_break(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))
    write_outputs({"state": "error", "description": "two\nlines\nEOF"})
    write_outputs({"state": "success"})
    assert read_outputs(tmp_path / "output") == {
        "state": "success",
        "description": "two\nlines\nEOF",
    }


def test_nothing_is_written_outside_actions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    write_outputs({"state": "success"})
    write_step_summary("# report\n")
    assert not running_in_actions()
    assert list(tmp_path.iterdir()) == []


def test_step_summary_entries_are_separated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    write_step_summary("# one\n\n\n")
    write_step_summary("# two")
    assert (tmp_path / "summary.md").read_text() == "# one\n\n# two\n\n"


def test_annotation_escapes_message_and_properties() -> None:
    assert annotation("error", "50% done\nnext") == "::error::50%25 done%0Anext"
    assert (
        annotation("warning", "bad", "sub/a,b:c.yaml", 3, 7, "Size")
        == "::warning file=sub/a%2Cb%3Ac.yaml,line=3,col=7,title=Size::bad"
    )


def test_untrusted_text_stays_on_its_log_line() -> None:
    """A file name with a newline could start a workflow command on the next line."""
    name = "submissions/t/x\n::error::forged\r\u2028"
    assert log_safe(name) == "submissions/t/x\\n::error::forged\\r\\u2028"
    assert log_safe("submissions/команда/модель.yaml") == "submissions/команда/модель.yaml"


def test_client_needs_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    with pytest.raises(GithubError, match="GITHUB_REPOSITORY is not set"):
        github_client(Policy())
