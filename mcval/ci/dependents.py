"""Which submissions a pull request's non-YAML changes affect, and which changes nothing measures.

Why: a submission's result depends on files besides its YAML (local ``data_files``, a local
model directory's weights). A PR that changes only those, or deletes them, must re-measure
every submission that reads them; otherwise it would go green with the table's numbers no
longer true. A changed file that no submission reads is refused: nothing would measure it.

The base checkout's submissions are read with the strict YAML reader only (no schema, no
rules), so a submission that fails other checks still counts as a reader of its files.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mcval.ci.rules import PathViolation, submission_path_pattern
from mcval.errors import McvalError
from mcval.policy import Policy
from mcval.submission.yamlsafe import read_yaml

_GLOB = re.compile(r"[*?\[]")


def local_references(data: Any, repo: Path, policy: Policy) -> list[str]:
    """Repository-relative paths (or globs) a submission's YAML reads: its local model
    directory and its ``evaluation.dataset.data_files``."""
    refs: list[str] = []
    if not isinstance(data, dict):
        return refs
    model = data.get("model")
    model_id = model.get("id") if isinstance(model, dict) else None
    if isinstance(model_id, str):
        plain = model_id.removeprefix("./").strip("/")
        local = model_id.startswith("./") or plain.startswith(policy.submissions_dir + "/")
        if plain and (local or (repo / plain).is_dir()):
            refs.append(plain)
    evaluation = data.get("evaluation")
    dataset = evaluation.get("dataset") if isinstance(evaluation, dict) else None
    files = dataset.get("data_files") if isinstance(dataset, dict) else None
    for item in [files] if isinstance(files, str) else files if isinstance(files, list) else []:
        if isinstance(item, str) and item.strip():
            refs.append(item.removeprefix("./").strip())
    return refs


def reads(reference: str, path: str) -> bool:
    """Whether a submission reading ``reference`` (a file, a directory or a glob) reads
    ``path``; ``*`` crosses ``/`` here, which errs on the side of measuring."""
    if path == reference or path.startswith(reference.rstrip("/") + "/"):
        return True
    return bool(_GLOB.search(reference)) and fnmatch.fnmatchcase(path, reference)


def base_submissions(repo: Path, policy: Policy) -> Iterator[tuple[str, str, list[str]]]:
    """``(id, path, references)`` of each submission file in the base checkout."""
    pattern = submission_path_pattern(policy)
    folder = repo / policy.submissions_dir
    if not folder.is_dir():
        return
    for file in sorted(folder.glob("*/*")):
        relpath = file.relative_to(repo).as_posix()
        match = pattern.fullmatch(relpath)
        if not match or file.is_symlink() or not file.is_file():
            continue
        try:
            doc = read_yaml(
                file, max_bytes=policy.limits.max_submission_bytes, display_path=relpath
            )
        except McvalError:
            continue
        refs = local_references(doc.data, repo, policy)
        yield f"{match['team']}/{match['name']}", relpath, refs


def dependent_submissions(
    repo: Path, policy: Policy, touched: Iterable[str]
) -> list[tuple[str, str]]:
    """``(id, path)`` of base submissions that read any of the ``touched`` paths."""
    paths = list(touched)
    if not paths:
        return []
    return [
        (sub_id, relpath)
        for sub_id, relpath, refs in base_submissions(repo, policy)
        if any(reads(ref, path) for ref in refs for path in paths)
    ]


def unmeasured_changes(
    repo: Path,
    policy: Policy,
    touched: Iterable[str],
    measured: Iterable[Any],
    removed: Iterable[str],
) -> list[PathViolation]:
    """Changed files that no measured submission reads.

    A file counts as read when a base submission reads it (that one is measured, or is
    being deleted together with it) or when the PR also changes a submission of the same
    team (a new submission and its data arrive together; that submission is measured with
    the PR's files). Files directly under ``submissions/`` (maintainers' only) are no
    submission's input and are not counted."""
    paths = list(touched)
    if not paths:
        return []
    prefix = policy.submissions_dir.strip("/") + "/"
    teams = {entry.id.split("/")[0] for entry in measured}
    teams |= {p[len(prefix) :].split("/")[0] for p in removed if p.startswith(prefix)}
    readers = [refs for _, _, refs in base_submissions(repo, policy)]
    violations = []
    for path in paths:
        rest = path[len(prefix) :] if path.startswith(prefix) else ""
        if "/" not in rest:
            continue  # directly under submissions/: maintainers' files, no submission's input
        if rest.split("/")[0] in teams or any(reads(r, path) for refs in readers for r in refs):
            continue
        violations.append(
            PathViolation(
                path=path,
                reason=(
                    "is read by no submission, so nothing would measure this change; "
                    "reference it from a submission's data_files or model.id, or leave it out"
                ),
            )
        )
    return violations
