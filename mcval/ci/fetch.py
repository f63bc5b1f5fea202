"""``mcval ci fetch``: the PR's submission files at its head SHA, written as data.

Nothing from the PR is checked out or run: each file is read through the contents API and
written under a work directory laid out as the repository, at a path that has already
matched a strict pattern and is checked again so it cannot leave that directory.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from mcval.ci.actions import Connect, log_safe, print_untrusted
from mcval.ci.plan import (
    StalePullRequest,
    UnservedBranch,
    plan,
    report_violations,
    resolve_head_sha,
    resolve_pr_number,
)
from mcval.ci.rules import data_path_pattern, submission_path_pattern
from mcval.errors import ExitCode, InputError
from mcval.policy import load_policy

MAX_DATA_FILE_BYTES = 1024 * 1024  # the contents API inlines files up to 1 MiB


def safe_target(dest: Path, relpath: str) -> Path:
    """``dest/relpath`` for a path already matched by a strict pattern; never outside."""
    parts = PurePosixPath(relpath).parts
    if relpath.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InputError("unsafe path in pull request", relpath)
    root = dest.resolve()
    target = root.joinpath(*parts)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    if root not in (parent.resolve(), *parent.resolve().parents):
        raise InputError("path escapes the work directory (symbolic link?)", relpath)
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise InputError("refusing to overwrite a symbolic link or directory", relpath)
    return target


def run_fetch(
    repo: Path,
    *,
    connect: Connect,
    dest: Path,
    pr: int | None = None,
    pr_info: Path | None = None,
    head_sha: str | None = None,
    only: Sequence[str] = (),
    listing: Path | None = None,
) -> ExitCode:
    """Write the PR's submission files at its head SHA into ``dest`` as data.

    Layout is the repository's (``DEST/submissions/<team>/<name>.yaml``), so ``dest`` may
    be a checkout of the base branch: the PR's files are overlaid, deleted ones removed,
    and ``mcval check``/``validate`` see baselines from the base branch. ``only`` limits
    the run to some submission ids; ``listing`` gets the fetched YAML paths, one a line.
    """
    policy = load_policy(repo)
    client = connect(policy)
    number = resolve_pr_number(pr, pr_info)
    try:
        pull, report = plan(client, policy, number, resolve_head_sha(head_sha), repo)
    except StalePullRequest as exc:
        raise InputError(str(exc)) from None
    except UnservedBranch as exc:
        print_untrusted(f"notice: {exc}")
        if listing:
            listing.write_text("", encoding="utf-8")
        return ExitCode.OK
    if report.violations:
        return report_violations(report)
    wanted = set(only)
    unknown = wanted - {e.id for e in report.submissions}
    if unknown:
        raise InputError(
            "--only names submissions this pull request does not change: "
            + ", ".join(sorted(unknown))
        )
    dest.mkdir(parents=True, exist_ok=True)
    pattern = submission_path_pattern(policy)
    written: list[str] = []
    for entry in report.submissions:
        if wanted and entry.id not in wanted:
            continue
        data = client.read_pr_file(pull, entry.path, policy.limits.max_submission_bytes)
        safe_target(dest, entry.path).write_bytes(data)
        written.append(entry.path)
    # Other allowed files under submissions/ (local datasets, label maps, model weights):
    # data too, all of them, since a selected submission may read another team's files;
    # the ones the PR deletes are removed, so nothing is measured with the base's copy.
    safe_data = data_path_pattern(policy)
    for path in report.data_files:
        match = safe_data.fullmatch(path)
        if not match:
            print(
                f"warning: skipped {log_safe(path)}: unusual characters in the path",
                file=sys.stderr,
            )
        else:
            data = client.read_pr_file(pull, path, MAX_DATA_FILE_BYTES)
            safe_target(dest, path).write_bytes(data)
            written.append(path)
    _remove(dest, [p for p in report.removed_data if safe_data.fullmatch(p)])
    if not wanted:
        _remove(dest, [p for p in report.removed if pattern.fullmatch(p)])
    for path in written:
        print(f"fetched  {path} @ {pull.head_sha[:12]}")
    if listing:
        yaml_paths = [p for p in written if pattern.fullmatch(p)]
        listing.write_text("".join(f"{p}\n" for p in yaml_paths), encoding="utf-8")
    return ExitCode.OK


def _remove(dest: Path, paths: list[str]) -> None:
    """Delete what the pull request deletes, so the base's copy is never measured."""
    for path in paths:
        target = safe_target(dest, path)
        if target.exists():
            target.unlink()
            print(f"removed  {path}")
