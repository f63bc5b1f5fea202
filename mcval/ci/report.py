"""``mcval ci report``: the measuring jobs' artifacts, re-validated, become the comment.

Everything a measuring job uploads is untrusted (it ran a stranger's model): each cell's
``exit_code`` and ``results/<team>/<name>.json`` are parsed strictly, must name the cell's
own submission and must agree with each other. The comment is rendered here from the
re-validated records, so no Markdown written on the GPU runner reaches the pull request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from mcval.ci.actions import Connect, log_safe, write_outputs
from mcval.ci.branches import branch_note, served, title_warnings, unserved_description
from mcval.ci.plan import MatrixEntry, slug_of
from mcval.ci.rules import SHA_PATTERN, submission_path_pattern
from mcval.ci.status import CELL_STATES, commit_status
from mcval.ci.untrusted import MAX_MARKDOWN_BYTES, load_untrusted_json, read_text
from mcval.errors import ExitCode, InputError
from mcval.policy import Policy, load_policy
from mcval.render.comment import MARKER, RunSummary, SubmissionReport, render_comment
from mcval.render.markdown import escape_inline
from mcval.results import ResultRecord, record_path
from mcval.verdict import VERDICT_EXIT_CODES

if TYPE_CHECKING:
    from mcval.github import StatusState


def _job_log(folder: Path) -> str:
    """The job's log, if it left a readable one (shown under a section without a record)."""
    try:
        return read_text(folder / "log.txt", MAX_MARKDOWN_BYTES, "log.txt")
    except InputError:
        return ""


def evaluate_cell(artifacts: Path, entry: MatrixEntry) -> SubmissionReport:
    """One cell's artifact, re-validated: its record, or the reason there is none."""
    folder = artifacts / slug_of(entry.id)

    def unusable(problem: str) -> SubmissionReport:
        return SubmissionReport(entry.id, entry.path, problem=problem, log=_job_log(folder))

    if folder.is_symlink() or not folder.is_dir():
        return unusable("the job's results artifact is missing (the job failed or was cancelled)")
    try:
        code_text = read_text(folder / "exit_code", 16, "exit_code").strip()
    except InputError as exc:
        return unusable(exc.message)
    if not re.fullmatch(r"\d{1,3}", code_text):
        return unusable(f"exit_code is not a number: {code_text[:16]!r}")
    code = int(code_text)
    record_file = record_path(folder / "results", entry.id)
    if record_file.is_symlink() or not record_file.is_file():
        if code == ExitCode.INPUT:  # `mcval validate` rejected the file: the student's to fix
            return SubmissionReport(entry.id, entry.path, log=_job_log(folder))
        if code == ExitCode.UNMEASURED:  # e.g. the hub was unreachable: the log says why
            return unusable(
                f"the runner could not measure it (mcval validate exited with {code}); this "
                "is not a problem of the submission: re-run"
            )
        return unusable(f"no result file (mcval validate exited with {code})")
    try:
        record = ResultRecord.model_validate(load_untrusted_json(record_file.read_bytes()))
    except (ValueError, ValidationError) as exc:
        return unusable(f"the result file is not valid: {str(exc).splitlines()[0]}")
    if record.id != entry.id:
        return unusable(f"the result file is for {record.id!r}, not for this submission")
    if code != VERDICT_EXIT_CODES[record.verdict]:
        return unusable(f"exit code {code} and verdict {record.verdict!r} disagree")
    return SubmissionReport(entry.id, entry.path, record=record)


def combine(
    reports: list[SubmissionReport],
    head_sha: str | None,
    removed: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> tuple[str, StatusState, str]:
    """The comment for the whole PR, the overall state and a ≤140-char description.

    One ``RunSummary`` feeds the comment's summary line and the commit status, so both
    count every cell. Sections are rendered by ``mcval.render.comment`` from the
    re-validated records, the same renderer ``mcval validate --markdown`` uses locally.
    Deleted submissions (``removed``, ids) are listed: ``ci changed`` allowed them only
    for their own team or a maintainer, and nothing is measured for them. ``notes``
    (Markdown paragraphs: the branch, title warnings) come first, under the heading.
    """
    summary = RunSummary.of(reports)
    markdown = render_comment(reports, summary=summary, commit=head_sha if reports else None)
    head = f"{MARKER}\n## mcval: results check\n\n"
    if notes and markdown.startswith(head):
        markdown = head + "".join(f"{note}\n\n" for note in notes) + markdown[len(head) :]
    state, description = commit_status(summary)
    if removed:
        ids = ", ".join(f"`{i}`" for i in removed)
        markdown = markdown.rstrip("\n") + (
            f"\n\n**Removed submissions** (not measured; allowed because the author is in "
            f"their team or a maintainer): {ids}\n"
        )
        gone = f"removes {len(removed)} submission(s)"
        description = gone if not summary.total else f"{description}; {gone}"
    return markdown, state, description


def removed_ids(text: str | None, policy: Policy) -> list[str]:
    """The plan's deleted submission paths (JSON list), re-checked, as ids."""
    if not text:
        return []
    try:
        paths = TypeAdapter(list[str]).validate_json(text)
    except ValidationError:
        raise InputError("--removed must be the plan's JSON list of paths") from None
    pattern = submission_path_pattern(policy)
    ids = []
    for path in paths:
        match = pattern.fullmatch(path)
        if not match:
            raise InputError(f"--removed names a path that is not a submission: {path[:80]!r}")
        ids.append(f"{match['team']}/{match['name']}")
    return ids


def matrix_entries(text: str, policy: Policy) -> list[MatrixEntry]:
    """The plan's matrix, re-checked: ids and paths must agree and be safe."""
    try:
        data = json.loads(text)
        items = data["include"] if isinstance(data, dict) else None
        entries = TypeAdapter(list[MatrixEntry]).validate_python(items)
    except (ValueError, KeyError, TypeError, ValidationError):
        raise InputError('--matrix must be the plan\'s matrix: {"include": [...]}') from None
    pattern = submission_path_pattern(policy)
    for entry in entries:
        match = pattern.fullmatch(entry.path)
        if not match or f"{match['team']}/{match['name']}" != entry.id:
            raise InputError(f"--matrix entry {entry.id!r} has a bad path {entry.path!r}")
    return entries


def pull_notes(
    connect: Connect, policy: Policy, number: int, entries: Sequence[MatrixEntry]
) -> list[str]:
    """What the comment says before the verdicts, read from the API (never from an
    artifact): the branch whose table a merge updates, and warnings about the title."""
    pr = connect(policy).pull_request(number)
    if not served(pr.base_ref, policy):  # retargeted since the plan: say so, measure nothing new
        return [f"⚠️ **Base branch:** {escape_inline(unserved_description(pr.base_ref, policy))}."]
    teams = [entry.id.split("/", 1)[0] for entry in entries]
    warnings = title_warnings(pr.title, teams, pr.base_ref, policy)
    return [branch_note(pr.base_ref, policy)] + [f"⚠️ **Title:** {w}" for w in warnings]


def run_report(
    repo: Path,
    *,
    artifacts: Path,
    matrix: str,
    output: Path,
    head_sha: str | None = None,
    removed: str | None = None,
    pr: int | None = None,
    connect: Connect | None = None,
) -> ExitCode:
    """Re-validate the measuring jobs' artifacts and build the comment and the status.

    ``artifacts`` holds one folder per matrix cell (``results-<sha1(id)[:12]>/`` with
    ``exit_code``, ``results/<team>/<name>.json``, ``log.txt``); ``matrix`` is the plan's
    matrix. A missing or malformed cell is an *error* for that submission, never trusted.
    With ``pr`` (and ``connect``) the comment names the PR's base branch and warns about
    its title. Writes ``output`` and the step outputs ``state`` and ``description``.
    """
    policy = load_policy(repo)
    entries = matrix_entries(matrix, policy)
    notes = pull_notes(connect, policy, pr, entries) if pr and connect else []
    reports = [evaluate_cell(artifacts, entry) for entry in entries]
    sha = head_sha if head_sha and re.fullmatch(SHA_PATTERN, head_sha) else None
    markdown, state, description = combine(reports, sha, removed_ids(removed, policy), notes)
    output.write_text(markdown, encoding="utf-8")
    write_outputs({"state": state, "description": description})
    for report in reports:
        problem = f": {log_safe(report.problem)}" if report.problem else ""
        print(f"{CELL_STATES[report.status]:8} {report.id}{problem}")
    print(f"overall: {state} — {description}")
    return ExitCode.OK
