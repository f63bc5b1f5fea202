"""``mcval ci status``: the ``mcval`` commit status that branch protection requires."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from mcval.ci.actions import Connect, run_url
from mcval.ci.plan import resolve_head_sha
from mcval.ci.rules import SHA_PATTERN
from mcval.errors import ExitCode, InputError
from mcval.policy import load_policy
from mcval.render.comment import ReportStatus, RunSummary

if TYPE_CHECKING:
    from mcval.github import StatusState

CELL_STATES: dict[ReportStatus, StatusState] = {
    "pass": "success",
    "fail": "failure",
    "error": "failure",  # the submission's own child crashed, hung or ran out of memory
    "input": "failure",  # `mcval validate` rejected the file: the student fixes it
    # The runner could not measure (stably, or at all): its fault, so the commit status says
    # "could not be measured" (error), never a failure of the submission.
    "unmeasured": "error",
    "unusable": "error",
}


def commit_status(summary: RunSummary) -> tuple[StatusState, str]:
    """The overall state and its description, from the summary the comment also shows:
    the worst state wins (error, then failure), and the counts add up to the total."""
    if not summary.total:
        return "success", "no submission changed"
    states: Counter[str] = Counter()
    for status, count in summary.counts.items():
        states[CELL_STATES[status]] += count
    overall: StatusState = (
        "error" if states["error"] else "failure" if states["failure"] else "success"
    )
    parts = [f"{states['success']} passed"]
    parts += [f"{states['failure']} failed"] if states["failure"] else []
    parts += [f"{states['error']} could not be measured"] if states["error"] else []
    return overall, f"{summary.total} submission(s): {', '.join(parts)}"


def run_status(
    repo: Path,
    *,
    connect: Connect,
    state: StatusState,
    description: str,
    sha: str | None = None,
    target_url: str | None = None,
) -> ExitCode:
    """Set the status on ``sha`` (default: the event's PR head), linking to this run."""
    policy = load_policy(repo)
    sha = sha or resolve_head_sha()
    if not sha or not re.fullmatch(SHA_PATTERN, sha):
        raise InputError("pass --sha with the full 40-character commit SHA")
    client = connect(policy)
    client.set_status(sha, state, description, target_url or run_url())
    print(f"status mcval={state} on {sha[:12]}: {description}")
    return ExitCode.OK
