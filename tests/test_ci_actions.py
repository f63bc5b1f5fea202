"""``mcval.ci.actions``: the one place that reads and writes the GitHub Actions environment."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from ci_helpers import read_outputs

from mcval.ci.actions import (
    LogGuard,
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
    zw = "\u200b"
    assert log_safe(name) == f"submissions/t/x%0A:{zw}:error:{zw}:forged%0D\\u2028"
    assert log_safe("submissions/команда/модель.yaml") == "submissions/команда/модель.yaml"


def test_client_needs_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    with pytest.raises(GithubError, match="GITHUB_REPOSITORY is not set"):
        github_client(Policy())


# -- issue 15.4: workflow-command injection into trusted logs ------------------------------------

ZW = "\u200b"


def test_untrusted_text_never_carries_a_workflow_command() -> None:
    """`::cmd::` is honoured at a line's start, the legacy `##[cmd]` anywhere in it."""
    assert log_safe("##[set-output name=x;]y") == f"#{ZW}#[set-output name=x;]y"
    assert log_safe("::add-mask::secret") == f":{ZW}:add-mask:{ZW}:secret"
    assert log_safe("100%0A") == "100%250A"  # % is escaped, so no line break can be encoded
    assert annotation("error", "metric '##[group]x'") == f"::error::metric '#{ZW}#[group]x'"
    assert annotation("error", "m", "a##[b].yaml") == f"::error file=a#{ZW}#[b].yaml::m"


def test_log_guard_keeps_own_annotations_and_breaks_every_other_command() -> None:
    out = io.StringIO()
    guard = LogGuard(out)
    guard.write("::error file=s.yaml,line=3,col=5::bad value\n")  # mcval's own annotation
    guard.write("quality metric '##[endgroup]' is not computed\n")
    guard.write("  ::stop-commands::abc\n::add-")  # a wrapped line, a command split over writes
    guard.write("mask::token\n::set-output name=a::b")
    guard.flush()
    assert out.getvalue().splitlines() == [
        "::error file=s.yaml,line=3,col=5::bad value",
        f"quality metric '#{ZW}#[endgroup]' is not computed",
        f"  :{ZW}:stop-commands::abc",
        f":{ZW}:add-mask::token",
        f":{ZW}:set-output name=a::b",
    ]


def test_check_in_actions_prints_no_command_from_a_submission(tmp_path: Path) -> None:
    """`mcval check` as the check workflow runs it (GITHUB_ACTIONS=true, narrow terminal so
    rich wraps): a metric name carrying commands reaches the log inert, the annotation
    stays."""
    import subprocess
    import sys

    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    sub = root / "submissions/alpha/s.yaml"
    sub.parent.mkdir(parents=True)
    hostile = "##[add-mask]x ::stop-commands::t ::set-output name=a::b"
    sub.write_text(
        "schema: 1\nteam: alpha\nmodel: {id: org/m, revision: "
        + "ab" * 20
        + ", task: text-classification}\nmethod: {name: fp32}\n"
        + "evaluation: {dataset: {path: nyu-mll/glue, name: sst2}}\n"
        + f"reported: {{quality: {{'{hostile}': 0.5}}}}\n"
    )
    env = {
        **os.environ,
        "GITHUB_ACTIONS": "true",
        "COLUMNS": "30",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "mcval.cli", "check", "submissions", "--repo", str(root)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    assert not [line for line in lines if "##[" in line]
    commands = [line.lstrip() for line in lines if line.lstrip().startswith("::")]
    assert commands and all(
        c.startswith("::error file=submissions/alpha/s.yaml,") for c in commands
    )
    assert any(f"#{ZW}#[add-mask]x" in line for line in lines)


@pytest.mark.parametrize(
    ("name", "printed"), [("measure.yml", 'cat "$out/log.txt"'), ("publish.yml", 'cat "$log"')]
)
def test_measure_prints_the_log_with_commands_stopped(name: str, printed: str) -> None:
    import yaml

    root = Path(__file__).resolve().parents[1]
    workflow = yaml.safe_load((root / ".github/workflows" / name).read_text())
    run = next(
        s["run"] for s in workflow["jobs"]["measure"]["steps"] if printed in s.get("run", "")
    )
    lines = [line.strip() for line in run.splitlines()]
    cat = lines.index(printed)
    assert lines[cat - 1] == 'echo "::stop-commands::$token"'
    assert lines[cat + 1] == 'echo "::$token::"'
    assert "secrets.token_hex(16)" in lines[cat - 2]
