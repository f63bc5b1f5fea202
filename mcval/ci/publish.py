"""``mcval ci publish``: the regenerated README, plot and ``results/`` on the default branch.

One commit via the git data API, never a push from a checkout: the publish job holds
``contents: write`` and runs no code from a pull request.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from mcval.ci.actions import (
    Connect,
    annotation,
    running_in_actions,
    write_outputs,
    write_step_summary,
)
from mcval.ci.rules import SHA_PATTERN
from mcval.errors import ExitCode, InputError
from mcval.lock import checkout_lock
from mcval.policy import load_policy

DEFAULT_MESSAGE = "mcval: update results table"


def collect_files(repo: Path, names: Sequence[str], missing_ok: bool = False) -> dict[str, bytes]:
    """The named files and directories' files, repository-relative; no symbolic link and
    nothing outside the repository is published."""
    root = repo.resolve()
    files: dict[str, bytes] = {}
    for name in names:
        path = root / name
        if path.is_symlink():
            raise InputError("refusing to publish a symbolic link", name)
        if path.is_dir():
            found = [p for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink()]
        elif path.is_file():
            found = [path]
        elif missing_ok:
            print(f"notice: {name} does not exist; not published")
            continue
        else:
            raise InputError("no such file or directory", name)
        for item in found:
            resolved = item.resolve()
            if root not in resolved.parents:
                raise InputError("the file is outside the repository", name)
            files[resolved.relative_to(root).as_posix()] = resolved.read_bytes()
    return files


def run_publish(
    repo: Path,
    *,
    connect: Connect,
    files: Sequence[str],
    message: str = DEFAULT_MESSAGE,
    branch: str | None = None,
    base_sha: str | None = None,
    missing_ok: bool = False,
) -> ExitCode:
    """Commit ``files`` to ``branch`` (default: the repository's default branch), once.

    When the branch moved meanwhile the commit is rebuilt on the new tip, leaving out (and
    reporting) any path the branch itself changed since ``base_sha`` — the next publish
    run, queued by that very push, regenerates it.
    """
    policy = load_policy(repo)
    if base_sha and not re.fullmatch(SHA_PATTERN, base_sha):
        raise InputError(f"--base-sha must be a full 40-character SHA, got {base_sha!r}")
    # README, plot and results/ read as one snapshot, never halfway through `mcval table`.
    with checkout_lock(repo):
        contents = collect_files(repo, files, missing_ok)
    if not contents:
        raise InputError("--files named no file to publish")
    client = connect(policy)
    result = client.publish(contents, message, branch=branch or None, base_sha=base_sha or None)
    for path in result.dropped:
        warning = (
            f"{path} changed on the branch while this run worked; left out, the run for "
            "that push regenerates it"
        )
        print(f"warning: {warning}", file=sys.stderr)
        if running_in_actions():
            print(annotation("warning", warning))
    if result.commit_sha is None:
        print("nothing to publish: the branch already has these files")
    else:
        print(
            f"published {len(result.changed)} file(s) in {result.commit_sha[:12]} "
            f"(attempt {result.attempts})"
        )
        write_step_summary(
            f"mcval published {len(result.changed)} file(s) in `{result.commit_sha[:12]}`."
        )
    write_outputs({"commit": result.commit_sha or ""})
    return ExitCode.OK
