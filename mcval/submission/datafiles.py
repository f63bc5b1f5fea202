"""Local evaluation data read cheaply by ``mcval check`` (standard library only, no torch).

Before this, a missing data file, a misspelt column or an audio path written from the
repository root surfaced only minutes into ``mcval measure``, after the model had loaded.
Here, per local data file (``evaluation.dataset.path`` json / csv / parquet / text):

* the file exists (glob patterns match at least one file);
* the task's columns (``evaluation.columns`` or the defaults of ``mcval.metrics.TASK_ROLES``)
  exist in the first row;
* every audio / image path exists, resolved from the data file's folder (the runner's rule,
  ``mcval.tasks.data.media_source``).

Each message names the data file, the row (1-based, as the runner does) and the folder
paths are resolved from. Files over ``MAX_READ_BYTES`` (16 MiB) are checked for existence only;
parquet columns are read from its schema when pyarrow is installed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Any

from mcval.metrics import TASK_ROLES
from mcval.submission.schema import Submission
from mcval.submission.yamlsafe import FieldPath

LOCAL_BUILDERS = ("json", "csv", "parquet", "text")
MAX_READ_BYTES = 16 << 20
"""Larger data files are checked for existence only (the check must stay fast)."""
MAX_ROWS = 100_000
MAX_MEDIA_ERRORS = 5
"""Missing media files named per data file; the rest are counted."""
MEDIA_ROLES = ("audio", "image")
_GLOB = "*?["

Problem = tuple[str, FieldPath]


def data_file_problems(sub: Submission, repo_root: Path) -> list[Problem]:
    """Problems of the local data files (none for a hub dataset)."""
    spec = sub.evaluation.dataset
    if spec.path not in LOCAL_BUILDERS or not spec.data_files:
        return []
    root = repo_root.resolve()
    roles = _columns(sub)
    problems: list[Problem] = []
    for index, pattern in enumerate(spec.data_files):
        at: FieldPath = ("evaluation", "dataset", "data_files", index)
        pure = PurePosixPath(pattern)
        if pure.is_absolute() or ".." in pure.parts or "\\" in pattern:
            continue  # refused by the submission's own rules
        if any(c in pattern for c in _GLOB):
            files = sorted(p for p in root.glob(pattern) if p.is_file())
            if not files:
                problems.append((f"data file pattern {pattern!r} matches no file", at))
        else:
            files = [root / pattern]
            if not files[0].is_file():
                problems.append(
                    (
                        f"data file {pattern!r} does not exist (data_files are relative to "
                        "the repository root); commit it or fix the path",
                        at,
                    )
                )
                continue
        for file in files:
            if file.resolve().is_relative_to(root):
                problems += [(m, at) for m in _file_problems(spec.path, file, root, roles)]
    return problems


def _columns(sub: Submission) -> dict[str, str]:
    roles = TASK_ROLES[sub.model.task]
    mapped = {r: c for r, c in sub.evaluation.columns.items() if r in roles}
    return {
        role: mapped.get(role, default)  # type: ignore[misc]
        for role, default in roles.items()
        if mapped.get(role, default) is not None
    }


def _rows(builder: str, file: Path) -> Iterator[dict[str, Any]] | None:
    """The file's rows as dicts (``None``: not readable here; the runner will say why)."""
    if builder == "parquet":
        return None
    text = file.read_text(encoding="utf-8", errors="replace")
    if builder == "text":
        return ({"text": line} for line in text.splitlines())
    if builder == "csv":
        return iter(csv.DictReader(text.splitlines()))
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except ValueError:
            return None
        return (r for r in data if isinstance(r, dict)) if isinstance(data, list) else None
    return _json_lines(text)


def _json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            return  # the runner's reader names the parse error
        if isinstance(value, dict):
            yield value


def _parquet_columns(file: Path) -> list[str] | None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    try:
        return list(pq.read_schema(file).names)
    except Exception:  # not a parquet file: the runner's reader says so
        return None


def _has(row: dict[str, Any], column: str) -> bool:
    value: Any = row
    if column in row:
        return True
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def _file_problems(builder: str, file: Path, root: Path, roles: dict[str, str]) -> Iterator[str]:
    shown = file.relative_to(root).as_posix()
    if builder == "parquet":
        names = _parquet_columns(file)
        for role, column in roles.items():
            if names is not None and column.split(".")[0] not in names:
                yield _missing_column(shown, 1, role, column, names)
        return
    if file.stat().st_size > MAX_READ_BYTES:
        return
    rows = _rows(builder, file)
    if rows is None:
        return
    folder = file.parent.relative_to(root).as_posix()
    folder_text = "the repository root" if folder == "." else f"{folder}/"
    missing = 0
    for number, row in enumerate(islice(rows, MAX_ROWS), start=1):
        if number == 1:
            absent = [(r, c) for r, c in roles.items() if not _has(row, c)]
            for role, column in absent:
                yield _missing_column(shown, 1, role, column, list(row))
            if absent:
                return
        for role in MEDIA_ROLES:
            column = roles.get(role)
            value = row.get(column) if column else None
            if not isinstance(value, str) or not value:
                continue
            problem = _media_problem(file.parent, root, value)
            if problem is None:
                continue
            missing += 1
            if missing <= MAX_MEDIA_ERRORS:
                yield (
                    f"{shown} row {number}: {role} file {value!r} {problem} (paths in a data "
                    f"file are resolved from its folder, {folder_text})"
                    + _root_hint(root, file.parent, value)
                )
    if missing > MAX_MEDIA_ERRORS:
        yield f"{shown}: {missing - MAX_MEDIA_ERRORS} more rows name missing media files"


def _missing_column(shown: str, row: int, role: str, column: str, names: list[str]) -> str:
    return (
        f"{shown} row {row}: no column {column!r} (role {role!r}); its columns are "
        f"{', '.join(map(str, names)) or 'none'}. Rename it or map the role with "
        f"evaluation.columns, e.g. {{{role}: <column>}}"
    )


def _media_problem(base: Path, root: Path, value: str) -> str | None:
    path = PurePosixPath(value)
    if path.is_absolute() or "\\" in value:
        return "must be a relative path"
    resolved = (base / value).resolve()
    if not resolved.is_relative_to(root):
        return "resolves outside the repository"
    return None if resolved.is_file() else "does not exist"


def _root_hint(root: Path, base: Path, value: str) -> str:
    """The usual slip: a path written from the repository root."""
    candidate = root / value
    if PurePosixPath(value).is_absolute() or not candidate.is_file():
        return ""
    relative = Path(*[".."] * len(base.relative_to(root).parts), value).as_posix()
    return f"; it exists from the repository root: write {relative!r}"
