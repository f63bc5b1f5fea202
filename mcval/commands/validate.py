"""``mcval validate PATH...``: measure (or reuse), judge, store and report each submission.

The pipeline is ``mcval.validate``; this command chooses the devices, prints the terminal
report, writes the comment Markdown and the Actions annotations, and picks the exit code:
2 when any file is invalid input, else 1 when any submission fails or errors, else 3 when
any could not be measured (stably, or at all: the runner's fault, re-run), else 0 — the
same locally and in the bot.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mcval.ci.actions import annotation, running_in_actions, write_step_summary
from mcval.errors import ExitCode
from mcval.figures import format_delta
from mcval.render.comment import SubmissionReport
from mcval.verdict import VERDICT_EXIT_CODES

if TYPE_CHECKING:
    from rich.console import Console

    from mcval.measure.devices import DeviceChoice


def exit_code(reports: Sequence[SubmissionReport]) -> ExitCode:
    """The most serious outcome wins: invalid input, then a failing submission (something a
    team must fix), then a submission the runner could not measure, then a pass."""
    if any(r.status == "input" for r in reports):
        return ExitCode.INPUT
    codes = {VERDICT_EXIT_CODES[r.record.verdict] for r in reports if r.record is not None}
    if any(r.status == "unusable" for r in reports):
        codes.add(ExitCode.UNMEASURED)
    for code in (ExitCode.FAIL, ExitCode.UNMEASURED):
        if code in codes:
            return code
    return ExitCode.OK


def annotations_for(reports: Sequence[SubmissionReport]) -> list[str]:
    """Workflow commands pointing at the YAML line of every failing value or bad input, and
    a warning on every figure (or submission) the runner could not measure."""
    lines = []
    for report in reports:
        for error in report.input_errors:
            lines.append(annotation("error", error.message, report.path, error.line, error.col))
        if report.problem is not None:
            lines.append(annotation("warning", report.problem, report.path))
        if report.record is None:
            continue
        for m in report.record.report.metrics:
            if m.status == "fail":
                message = f"{m.label}: reported {m.reported}, measured {m.measured}"
                delta = format_delta(m.delta)
                message += f" ({delta}; {m.note})" if m.note else f" ({delta})"
                lines.append(annotation("error", message, report.path, m.line))
            elif m.status == "unstable":
                message = f"{m.label}: measured {m.measured}, {m.note}"
                lines.append(annotation("warning", message, report.path, m.line))
        for finding in report.record.report.findings:
            level = "error" if finding.severity == "fail" else "warning"
            lines.append(annotation(level, finding.message, report.path, finding.line))
    return lines


def validate(
    paths: Sequence[Path],
    *,
    device: DeviceChoice = "all",
    results: Path | None = None,
    markdown: Path | None = None,
    force: bool = False,
    skip_quality: bool = False,
    repo: Path | None = None,
    console: Console | None = None,
) -> ExitCode:
    """Validate the files (directories are searched) and report on ``console`` (stdout by
    default), in ``markdown`` and the job summary. ``results`` defaults to the policy's
    results directory, ``repo`` to the repository around the current directory."""
    from rich.console import Console

    from mcval.measure.devices import require_devices
    from mcval.policy import load_policy
    from mcval.render.comment import render_comment
    from mcval.render.terminal import render_terminal
    from mcval.submission.check import find_repo_root
    from mcval.validate import Validator, validate_paths

    repo_root = repo.resolve() if repo is not None else find_repo_root(Path.cwd())
    policy = load_policy(repo_root)
    validator = Validator(
        repo_root,
        policy,
        results if results is not None else repo_root / policy.results_dir,
        require_devices(device),
        force=force,
        skip_quality=skip_quality,
    )
    reports = validate_paths(list(paths), validator)
    render_terminal(reports, console or Console())
    text = render_comment(reports)
    if markdown is not None:
        markdown.write_text(text, encoding="utf-8")
    write_step_summary(text)
    if running_in_actions():
        for line in annotations_for(reports):
            print(line)
    sys.stdout.flush()
    return exit_code(reports)
