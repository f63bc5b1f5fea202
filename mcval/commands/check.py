"""``mcval check PATH...``: schema and cross-file rules for submission files; no model loaded.

Runs on every pull request, so it stays fast and torch-free.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mcval.ci.actions import Level, annotation, running_in_actions
from mcval.errors import ExitCode, InputError


def _annotation(level: Level, error: InputError) -> str:
    """A GitHub Actions workflow command pointing at the error's file and line."""
    return annotation(level, error.message, error.path, error.line, error.col)


def check(paths: Sequence[Path], *, repo: Path | None = None) -> ExitCode:
    """Check the files (directories are searched); every problem is one line. ``repo``:
    the repository root (default: found from the current directory)."""
    from mcval.policy import load_policy
    from mcval.submission.check import check_paths, find_repo_root

    repo_root = repo if repo is not None else find_repo_root(Path.cwd())
    policy = load_policy(repo_root)
    report = check_paths(list(paths), repo_root, policy)
    annotate = running_in_actions()
    for result in report.files:
        if result.loaded is not None and result.ok:
            loaded = result.loaded
            print(f"ok     {loaded.relpath} ({loaded.id})")
            for conversion in loaded.conversions:
                print(f"  note: {conversion.describe()}")
        for warning in result.loaded.warnings if result.loaded else []:
            print(f"  warning: {warning}")
            if annotate:
                print(_annotation("warning", warning))
        for error in result.errors:
            print(f"error  {error}")
            if annotate:
                print(_annotation("error", error))
    total = len(report.files)
    bad = sum(1 for f in report.files if not f.ok)
    if total == 0:
        print("no submission files found", file=sys.stderr)
        return ExitCode.INPUT
    print(f"{total - bad} of {total} submission file(s) valid")
    return ExitCode.OK if report.ok else ExitCode.INPUT
