"""``mcval ci status``: the ``mcval`` commit status that branch protection requires."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from mcval.ci.actions import Connect, run_url
from mcval.ci.plan import resolve_head_sha
from mcval.ci.rules import SHA_PATTERN
from mcval.cli import EXIT_OK
from mcval.errors import InputError
from mcval.policy import load_policy

if TYPE_CHECKING:
    from mcval.github import StatusState


def run_status(
    repo: Path,
    *,
    connect: Connect,
    state: StatusState,
    description: str,
    sha: str | None = None,
    target_url: str | None = None,
) -> int:
    """Set the status on ``sha`` (default: the event's PR head), linking to this run."""
    policy = load_policy(repo)
    sha = sha or resolve_head_sha()
    if not sha or not re.fullmatch(SHA_PATTERN, sha):
        raise InputError("pass --sha with the full 40-character commit SHA")
    client = connect(policy)
    client.set_status(sha, state, description, target_url or run_url())
    print(f"status mcval={state} on {sha[:12]}: {description}")
    return EXIT_OK
