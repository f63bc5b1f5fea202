"""``mcval ci publish``: the regenerated README, plot and ``results/`` on a course branch.

One commit via the git data API, never a push from a checkout: the publish job holds
``contents: write`` and runs no code from a pull request. The branch is the one the merge
went into (``--branch``, from the push event); it must match the policy's
``[github] branches``, so nothing a pull request contains can point the write elsewhere.
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
from mcval.ci.branches import require_served
from mcval.ci.rules import SHA_PATTERN
from mcval.ci.vet import report_refused, vet_results
from mcval.errors import ExitCode, InputError
from mcval.lock import checkout_lock
from mcval.policy import Policy, load_policy

DEFAULT_MESSAGE = "mcval: update results table"


def collect_files(
    repo: Path, names: Sequence[str], missing_ok: bool = False, policy: Policy | None = None
) -> dict[str, bytes]:
    """The files to commit, repository-relative: the README and the plot the policy names,
    and from ``results/`` only records that pass ``mcval.ci.vet`` (a record for a
    submission on this commit, strictly valid). Anything else the runner left is refused
    and reported; no symbolic link and nothing outside the repository is published."""
    policy = policy or load_policy(repo)
    root = repo.resolve()
    results = policy.results_dir.strip("/")
    allowed = {policy.table.readme, policy.table.plot, results}
    files: dict[str, bytes] = {}
    for name in names:
        clean = name.strip("/")
        path = root / clean
        if clean not in allowed:
            raise InputError(
                f"only {', '.join(sorted(allowed))} are published; refusing {name!r}", name
            )
        if path.is_symlink():
            raise InputError("refusing to publish a symbolic link", name)
        if clean == results and path.is_dir():
            vetted = vet_results(root, path, policy)
            report_refused(vetted)
            files.update(vetted.accepted)
        elif path.is_file() and clean != results:
            files[clean] = path.read_bytes()
        elif missing_ok:
            print(f"notice: {name} does not exist; not published")
        else:
            raise InputError("no such file or directory", name)
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
    """Commit ``files`` to ``branch`` (default: the repository's default branch), once;
    a branch the policy does not serve is refused before anything is read or written.

    When the branch moved meanwhile the commit is rebuilt on the new tip, leaving out (and
    reporting) any path the branch itself changed since ``base_sha`` — the next publish
    run, queued by that very push, regenerates it.
    """
    policy = load_policy(repo)
    if base_sha and not re.fullmatch(SHA_PATTERN, base_sha):
        raise InputError(f"--base-sha must be a full 40-character SHA, got {base_sha!r}")
    if branch:
        require_served(branch, policy)
    # README, plot and results/ read as one snapshot, never halfway through `mcval table`.
    with checkout_lock(repo):
        contents = collect_files(repo, files, missing_ok, policy)
    if not contents:
        raise InputError("--files named no file to publish")
    client = connect(policy)
    target = branch or client.default_branch()
    require_served(target, policy, "the default branch")
    result = client.publish(contents, message, branch=target, base_sha=base_sha or None)
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
            f"published {len(result.changed)} file(s) in {result.commit_sha[:12]} on "
            f"{target} (attempt {result.attempts})"
        )
        write_step_summary(
            f"mcval published {len(result.changed)} file(s) to `{target}` in "
            f"`{result.commit_sha[:12]}`."
        )
    write_outputs({"commit": result.commit_sha or ""})
    return ExitCode.OK
