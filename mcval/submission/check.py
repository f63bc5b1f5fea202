"""``mcval check``: every file's own rules plus the rules that span files.

Runs on every pull request in seconds, so it never imports torch: baselines are
resolved against the repository's ``submissions/`` tree, not by loading models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mcval.errors import InputError, InputErrors
from mcval.policy import Policy
from mcval.submission.load import SUFFIXES, LoadedSubmission, load_submission, submission_id
from mcval.submission.schema import SUBMISSION_ID_PATTERN
from mcval.submission.yamlsafe import YamlDocument, read_yaml


@dataclass
class FileResult:
    """What ``mcval check`` found for one file."""

    path: Path
    loaded: LoadedSubmission | None = None
    errors: list[InputError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class CheckReport:
    """All files checked in one run."""

    files: list[FileResult]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def errors(self) -> list[InputError]:
        return [e for f in self.files for e in f.errors]


def find_repo_root(start: Path) -> Path:
    """Nearest ancestor holding ``mcval.toml`` or ``.git`` (else ``start`` itself)."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / "mcval.toml").exists() or (candidate / ".git").exists():
            return candidate
    return start


def collect_files(paths: list[Path]) -> list[Path]:
    """Submission files named directly or found under directories, sorted, each once."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.suffix in SUFFIXES and p.is_file())
        elif path.exists() or path.is_symlink():
            found.append(path)
        else:
            raise InputError("no such file or directory", path)
    unique: dict[Path, None] = {}
    for p in found:
        unique.setdefault(p.absolute(), None)
    return list(unique)


def _baseline_file(baseline: str, repo_root: Path, policy: Policy) -> Path | None:
    for suffix in SUFFIXES:
        candidate = repo_root / policy.submissions_dir / f"{baseline}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def check_paths(paths: list[Path], repo_root: Path, policy: Policy) -> CheckReport:
    """Check the given files/directories; cross-file rules see the whole repository."""
    results: list[FileResult] = []
    for path in collect_files(paths):
        result = FileResult(path=path)
        try:
            result.loaded = load_submission(path, repo_root, policy)
        except InputErrors as exc:
            result.errors.extend(exc.errors)
            missing = _missing_baseline_of_broken_file(path, repo_root, policy)
            result.errors += [missing] if missing else []
        except InputError as exc:
            result.errors.append(exc)
        results.append(result)
    _cross_file_rules(results, repo_root, policy)
    for result in results:
        result.errors.sort(key=lambda e: (e.line or 0, e.col or 0))
    return CheckReport(results)


def _missing_baseline_error(doc: YamlDocument, baseline_id: str, policy: Policy) -> InputError:
    return doc.error(
        f"baseline {baseline_id!r} does not exist; add "
        f"{policy.submissions_dir}/{baseline_id}.yaml or fix the id",
        ("method", "baseline"),
    )


def _missing_baseline_of_broken_file(
    path: Path, repo_root: Path, policy: Policy
) -> InputError | None:
    """A file with other errors still names its baseline: a missing one is said in the same
    round, not after the student fixed everything else."""
    try:
        _, relpath = submission_id(path, repo_root, policy)
        doc = read_yaml(path, max_bytes=policy.limits.max_submission_bytes, display_path=relpath)
    except InputError:
        return None
    method = doc.data.get("method") if isinstance(doc.data, dict) else None
    baseline = method.get("baseline") if isinstance(method, dict) else None
    if not isinstance(baseline, str) or not re.match(SUBMISSION_ID_PATTERN, baseline):
        return None
    if _baseline_file(baseline, repo_root, policy) is not None:
        return None
    return _missing_baseline_error(doc, baseline, policy)


def _cross_file_rules(results: list[FileResult], repo_root: Path, policy: Policy) -> None:
    by_id: dict[str, FileResult] = {}
    for result in results:
        if result.loaded is None:
            continue
        sub_id = result.loaded.id
        if sub_id in by_id:
            other = by_id[sub_id].loaded
            assert other is not None
            result.errors.append(
                InputError(
                    f"duplicate submission id {sub_id!r} (also {other.relpath}); keep one file",
                    result.loaded.relpath,
                )
            )
        by_id.setdefault(sub_id, result)
    cache: dict[str, LoadedSubmission | None] = {
        k: v.loaded for k, v in by_id.items() if v.loaded is not None
    }

    def resolve(sub_id: str) -> LoadedSubmission | None:
        if sub_id not in cache:
            file = _baseline_file(sub_id, repo_root, policy)
            try:
                cache[sub_id] = load_submission(file, repo_root, policy) if file else None
            except (InputError, InputErrors):
                cache[sub_id] = None
        return cache[sub_id]

    for result in results:
        loaded = result.loaded
        if loaded is None or loaded.submission.method.baseline is None:
            continue
        doc = loaded.document
        baseline_id = loaded.submission.method.baseline
        if _baseline_file(baseline_id, repo_root, policy) is None:
            result.errors.append(_missing_baseline_error(doc, baseline_id, policy))
            continue
        baseline = resolve(baseline_id)
        if baseline is None:
            result.errors.append(
                doc.error(
                    f"baseline {baseline_id!r} is not a valid submission itself; fix it first",
                    ("method", "baseline"),
                )
            )
            continue
        if baseline.submission.model.task != loaded.submission.model.task:
            result.errors.append(
                doc.error(
                    f"baseline {baseline_id!r} is a {baseline.submission.model.task} "
                    f"submission, this one is {loaded.submission.model.task}; "
                    "a baseline must solve the same task",
                    ("method", "baseline"),
                )
            )
        seen = {loaded.id}
        current: LoadedSubmission | None = baseline
        while current is not None and current.submission.method.baseline is not None:
            if current.id in seen:
                result.errors.append(
                    doc.error(
                        f"baselines form a cycle through {current.id!r}; a chain of baselines "
                        "must end in an uncompressed model",
                        ("method", "baseline"),
                    )
                )
                break
            seen.add(current.id)
            current = resolve(current.submission.method.baseline)
