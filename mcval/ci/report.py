"""``mcval ci report``: the measuring jobs' artifacts, re-validated, become the comment.

Everything a measuring job uploads is untrusted (it ran a stranger's model): each cell's
``exit_code`` and ``results/<team>/<name>.json`` are parsed strictly, must name the cell's
own submission and must agree with each other. The comment is rendered here from the
re-validated records, so no Markdown written on the GPU runner reaches the pull request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import TypeAdapter, ValidationError

from mcval.ci.actions import write_outputs
from mcval.ci.plan import MatrixEntry, slug_of
from mcval.ci.rules import SHA_PATTERN, submission_path_pattern
from mcval.ci.untrusted import MAX_MARKDOWN_BYTES, load_untrusted_json, read_text
from mcval.cli import EXIT_OK, VERDICT_EXIT_CODES
from mcval.errors import InputError
from mcval.policy import Policy, load_policy

if TYPE_CHECKING:
    from mcval.verdict import VerdictStatus


@dataclass
class CellOutcome:
    """One matrix cell after re-validation in the report job.

    ``record`` is the cell's ``ResultRecord``, parsed strictly from the artifact; the
    comment is rendered from it here, so no Markdown written on the GPU runner reaches the
    PR. A cell without a usable record gets a fixed section naming the problem.
    """

    entry: MatrixEntry
    state: Literal["success", "failure", "error"]
    record: Any = None
    section: str = ""
    problem: str | None = None


def _log_tail(folder: Path, lines: int = 20) -> str:
    """The end of the job's log as a fenced block (no fence of its own can close it)."""
    try:
        text = read_text(folder / "log.txt", MAX_MARKDOWN_BYTES, "log.txt")
    except InputError:
        return ""
    tail = "\n".join(text.replace("~~~", "~ ~ ~").splitlines()[-lines:])
    return f"\n\n~~~~text\n{tail}\n~~~~" if tail.strip() else ""


_CELL_STATES: dict[VerdictStatus, Literal["success", "failure", "error"]] = {
    "pass": "success",
    "fail": "failure",
    "error": "failure",  # the submission's own child crashed, hung or ran out of memory
    # The runner could not measure stably: its fault, so the commit status says "could not
    # be measured" (error), not a failure of the submission; its section still renders.
    "unmeasured": "error",
}


def evaluate_cell(artifacts: Path, entry: MatrixEntry) -> CellOutcome:
    """One cell's artifact, re-validated: its record, or the reason there is none."""
    from mcval.render.markdown import code_span
    from mcval.results import ResultRecord, record_path

    folder = artifacts / slug_of(entry.id)
    title = f"### {entry.id}\n\n{code_span(entry.path)}"

    def broken(problem: str) -> CellOutcome:
        section = (
            f"{title}: ⚠️ **could not be measured**: {problem}. Maintainers: see the "
            "workflow run's logs."
        )
        return CellOutcome(entry, "error", section=section + _log_tail(folder), problem=problem)

    if folder.is_symlink() or not folder.is_dir():
        return broken("the job's results artifact is missing (the job failed or was cancelled)")
    try:
        code_text = read_text(folder / "exit_code", 16, "exit_code").strip()
    except InputError as exc:
        return broken(exc.message)
    if not re.fullmatch(r"\d{1,3}", code_text):
        return broken(f"exit_code is not a number: {code_text[:16]!r}")
    code = int(code_text)
    record_file = record_path(folder / "results", entry.id)
    if record_file.is_symlink() or not record_file.is_file():
        if code == 2:
            section = (
                f"{title}: ⛔ **invalid**: `mcval validate` rejected the file; run it locally "
                "to see every problem with its line."
            )
            return CellOutcome(entry, "failure", section=section + _log_tail(folder))
        return broken(f"no result file (mcval validate exited with {code})")
    try:
        record = ResultRecord.model_validate(load_untrusted_json(record_file.read_bytes()))
    except (ValueError, ValidationError) as exc:
        return broken(f"the result file is not valid: {str(exc).splitlines()[0]}")
    if record.id != entry.id:
        return broken(f"the result file is for {record.id!r}, not for this submission")
    if code != VERDICT_EXIT_CODES[record.verdict]:
        return broken(f"exit code {code} and verdict {record.verdict!r} disagree")
    return CellOutcome(entry, _CELL_STATES[record.verdict], record=record)


def combine(outcomes: list[CellOutcome], head_sha: str | None) -> tuple[str, str, str]:
    """The comment for the whole PR, the overall state and a ≤140-char description.

    Sections are rendered by ``mcval.render.comment`` from the re-validated records, the
    same renderer ``mcval validate --markdown`` uses locally.
    """
    from mcval.render.comment import MARKER, SubmissionReport, render_comment

    if not outcomes:
        body = render_comment([])
        return body, "success", "no submission changed"
    reports = [
        SubmissionReport(id=o.entry.id, path=o.entry.path, record=o.record)
        for o in outcomes
        if o.record is not None
    ]
    body = render_comment(reports) if reports else f"{MARKER}\n## mcval: results check\n"
    extra = [o.section for o in outcomes if o.record is None]
    states = [o.state for o in outcomes]
    overall = "error" if "error" in states else "failure" if "failure" in states else "success"
    parts = [f"{states.count('success')} passed"]
    parts += [f"{states.count('failure')} failed"] if "failure" in states else []
    parts += [f"{states.count('error')} could not be measured"] if "error" in states else []
    description = f"{len(outcomes)} submission(s): {', '.join(parts)}"
    footer = f"<sub>mcval run for commit {head_sha[:7]}.</sub>" if head_sha else ""
    sections = [body.rstrip("\n"), *extra, footer]
    return "\n\n".join(s for s in sections if s) + "\n", overall, description


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


def run_report(
    repo: Path, *, artifacts: Path, matrix: str, output: Path, head_sha: str | None = None
) -> int:
    """Re-validate the measuring jobs' artifacts and build the comment and the status.

    ``artifacts`` holds one folder per matrix cell (``results-<sha1(id)[:12]>/`` with
    ``exit_code``, ``results/<team>/<name>.json``, ``log.txt``); ``matrix`` is the plan's
    matrix. A missing or malformed cell is an *error* for that submission, never trusted.
    Writes ``output`` and the step outputs ``state`` and ``description``.
    """
    policy = load_policy(repo)
    entries = matrix_entries(matrix, policy)
    outcomes = [evaluate_cell(artifacts, entry) for entry in entries]
    sha = head_sha if head_sha and re.fullmatch(SHA_PATTERN, head_sha) else None
    markdown, state, description = combine(outcomes, sha)
    output.write_text(markdown, encoding="utf-8")
    write_outputs({"state": state, "description": description})
    for outcome in outcomes:
        problem = f": {outcome.problem}" if outcome.problem else ""
        print(f"{outcome.state:8} {outcome.entry.id}{problem}")
    print(f"overall: {state} — {description}")
    return EXIT_OK
