"""``mcval ci changed``: what a pull request changes, and whether it may.

The plan comes from the API, never from the PR's own files: the PR's changed files are
classified (submissions to measure, removed ones, other data files) and checked against
the policy. The measuring workflow gets only a PR number and a head SHA (``pr.json``),
both re-checked here, because the check workflow that wrote them ran the PR's code.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcval.ci.actions import (
    Connect,
    annotation,
    log_safe,
    print_untrusted,
    read_event,
    running_in_actions,
    write_outputs,
    write_step_summary,
)
from mcval.ci.branches import served, unserved_description
from mcval.ci.dependents import dependent_submissions, unmeasured_changes
from mcval.ci.rules import (
    MAINTAINER_ROLES,
    SHA_PATTERN,
    PathViolation,
    check_paths_allowed,
    check_submission_count,
    check_team_ownership,
    listed_maintainer,
    submission_path_pattern,
)
from mcval.errors import ExitCode, InputError, McvalError
from mcval.policy import Policy, load_policy

if TYPE_CHECKING:
    from mcval.github import GithubClient, PullInfo

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
MAX_PR_INFO_BYTES = 4096


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrInfo(_Strict):
    """``pr.json`` handed from the check workflow to the measuring one: untrusted (the PR can
    change the check workflow), so only a number and a SHA, both re-checked with the API."""

    number: int = Field(gt=0, lt=10**9)
    head_sha: str = Field(pattern=SHA_PATTERN)


class MatrixEntry(_Strict):
    """One cell of the measuring job matrix."""

    id: str = Field(pattern=ID_PATTERN)
    path: str
    slug: str = Field(description="artifact-safe name: 'results-' + sha1(id)[:12]")


class ChangedReport(_Strict):
    """What ``ci changed`` found: the plan of one validation run."""

    pr: int
    head_sha: str
    head_repo: str | None
    author: str
    submissions: list[MatrixEntry]
    removed: list[str] = Field(description="submission files the PR deletes (not measured)")
    data_files: list[str] = Field(description="other allowed files under submissions/")
    removed_data: list[str] = Field(
        default_factory=list, description="other files under submissions/ the PR deletes"
    )
    violations: list[str]
    base_ref: str = Field(default="", description="the branch the PR merges into (served)")


class StalePullRequest(McvalError):
    """The PR's head moved since the run was triggered; the newer push gets its own run."""


class UnservedBranch(McvalError):
    """The PR merges into a branch the policy's ``[github] branches`` does not name."""

    def __init__(self, pr: PullInfo, policy: Policy) -> None:
        self.pr = pr
        self.description = unserved_description(pr.base_ref, policy)
        super().__init__(
            f"pull request #{pr.number} merges into {pr.base_ref!r}, which mcval does not "
            f"serve ([github] branches = {policy.github.branches}); nothing is checked"
        )


def slug_of(submission_id: str) -> str:
    """Artifact names may not contain '/', and 'a-/b' style joins could collide."""
    return "results-" + hashlib.sha1(submission_id.encode()).hexdigest()[:12]


def _id_of(path: str, pattern: re.Pattern[str]) -> str:
    match = pattern.fullmatch(path)
    return f"{match['team']}/{match['name']}" if match else path


def is_maintainer(client: GithubClient, policy: Policy, author: str) -> bool:
    """Listed in ``[github] maintainers``, or (unless turned off) admin or maintain on the
    repository by GitHub's permission API; a PR's author association never counts."""
    if listed_maintainer(author, policy):
        return True
    if not policy.github.maintainers_from_permissions:
        return False
    return client.repository_role(author) in MAINTAINER_ROLES


# -- which pull request, at which commit ------------------------------------------------------


def read_pr_info(path: Path) -> PrInfo:
    """``pr.json`` parsed strictly and bounded in size (it is untrusted)."""
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_PR_INFO_BYTES:
            raise InputError("pr.json is larger than 4 KiB; refusing it", path)
        return PrInfo.model_validate_json(raw)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path) from None
    except ValidationError as exc:
        raise InputError(f"not a valid pr.json: {exc.errors()[0]['msg']}", path) from None


def resolve_pr_number(pr: int | None = None, pr_info: Path | None = None) -> int:
    """``--pr``, else the number in ``pr.json``, else the ``pull_request`` event's."""
    if pr:
        return int(pr)
    if pr_info:
        return read_pr_info(pr_info).number
    event = read_event()
    if event is None:
        raise InputError("no pull request: pass --pr N (or run on a pull_request event)")
    return event.pull_request.number


def resolve_head_sha(head_sha: str | None = None) -> str | None:
    """The head SHA this run is for: ``--head-sha``, else the event's, else unknown."""
    if head_sha:
        if not re.fullmatch(SHA_PATTERN, head_sha):
            raise InputError(f"--head-sha must be a full 40-character SHA, got {head_sha!r}")
        return head_sha
    event = read_event()
    return event.pull_request.head.sha if event else None


# -- the plan -----------------------------------------------------------------------------------


def open_pull(
    client: GithubClient, policy: Policy, number: int, expected_sha: str | None
) -> PullInfo:
    """The PR, if it is still open at ``expected_sha`` and merges into a served branch."""
    pr = client.pull_request(number)
    if expected_sha is not None and pr.head_sha != expected_sha:
        raise StalePullRequest(
            f"pull request #{number} moved on: its head is {pr.head_sha[:12]}, this run was "
            f"for {expected_sha[:12]}; the run for the newer push measures it"
        )
    if pr.state != "open":
        raise StalePullRequest(f"pull request #{number} is {pr.state}; nothing to validate")
    if not served(pr.base_ref, policy):
        raise UnservedBranch(pr, policy)
    return pr


def plan(
    client: GithubClient,
    policy: Policy,
    number: int,
    expected_sha: str | None,
    repo: Path | None = None,
) -> tuple[PullInfo, ChangedReport]:
    """The PR's changed files, classified and checked against the policy (from the API).

    With ``repo`` (the base checkout), a submission on the base whose local data files or
    model directory the PR changes is measured too, and a changed file that nothing would
    measure is a violation: a PR never goes green on data, weights or deletions alone.
    """
    pr = open_pull(client, policy, number, expected_sha)
    files = client.changed_files(number)
    violations: list[PathViolation] = check_paths_allowed(files, policy)
    violations += check_team_ownership(
        files, pr.author, policy, lambda: is_maintainer(client, policy, pr.author)
    )
    pattern = submission_path_pattern(policy)
    prefix = policy.submissions_dir.strip("/") + "/"
    entries: list[MatrixEntry] = []
    removed: list[str] = []
    data_files: list[str] = []
    removed_data: list[str] = []
    for changed in files:
        match = pattern.fullmatch(changed.path)
        if match and changed.status == "removed":
            removed.append(changed.path)
        elif match:
            sub_id = f"{match['team']}/{match['name']}"
            entries.append(MatrixEntry(id=sub_id, path=changed.path, slug=slug_of(sub_id)))
        elif changed.path.startswith(prefix) and changed.status != "removed":
            data_files.append(changed.path)
        elif changed.path.startswith(prefix):
            removed_data.append(changed.path)
        old = changed.previous_path if changed.status == "renamed" else None
        if old and pattern.fullmatch(old):
            removed.append(old)  # a renamed submission: its old id disappears
        elif old and old.startswith(prefix):
            removed_data.append(old)
    if repo is not None:
        measured = {e.id for e in entries} | {_id_of(p, pattern) for p in removed}
        touched = data_files + removed_data
        for sub_id, path in dependent_submissions(repo, policy, touched):
            if sub_id not in measured:
                measured.add(sub_id)
                entries.append(MatrixEntry(id=sub_id, path=path, slug=slug_of(sub_id)))
        violations += unmeasured_changes(repo, policy, touched, entries, removed)
    violations += check_submission_count(len(entries), policy)
    report = ChangedReport(
        pr=pr.number,
        head_sha=pr.head_sha,
        head_repo=pr.head_repo,
        author=pr.author,
        submissions=entries,
        removed=removed,
        data_files=data_files,
        removed_data=removed_data,
        violations=[str(v) for v in violations],
        base_ref=pr.base_ref,
    )
    return pr, report


def report_violations(report: ChangedReport) -> ExitCode:
    """Each violation as one error line, an annotation and a job-summary entry; exit 1."""
    if not report.violations:
        return ExitCode.OK
    lines = [f"Pull request #{report.pr} changes files it may not change:"]
    for violation in report.violations:
        path, _, reason = violation.partition(": ")
        print(f"error: {log_safe(violation)}", file=sys.stderr)
        if running_in_actions():
            print(annotation("error", f"{path} {reason}", path))
        lines.append(f"- `{path}` {reason}")
    write_step_summary("\n".join(lines))
    return ExitCode.FAIL


# -- the step -----------------------------------------------------------------------------------


def _write_json(path: Path | None, model: BaseModel) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(model.model_dump_json(indent=2) + "\n", encoding="utf-8")


def run_changed(
    repo: Path,
    *,
    connect: Connect,
    pr: int | None = None,
    pr_info: Path | None = None,
    head_sha: str | None = None,
    output: Path | None = None,
    pr_info_out: Path | None = None,
    base_only: bool = False,
) -> ExitCode:
    """List the PR's changed submissions, enforce allowed paths and team ownership.

    With ``base_only`` only decide the base branch (outputs ``stale``, ``served``,
    ``base_ref``, ``pr``, ``head_sha``): measure.yml's plan job asks this with the default
    branch's policy, then checks that branch out and plans on it.

    Writes ``output`` (a ``ChangedReport`` JSON), ``pr_info_out`` (``pr.json``) and the
    step outputs ``pr``, ``head_sha``, ``count``, ``ids`` (JSON list), ``matrix``
    (``{"include": [...]}``), ``base_ref`` (the served branch the PR merges into), ``stale``
    ("true" when the PR moved on or closed: downstream jobs skip) and ``served`` ("false"
    for a PR into a branch the policy does not serve: only a neutral status follows, with
    ``description``).
    """
    policy = load_policy(repo)
    client = connect(policy)
    number = resolve_pr_number(pr, pr_info)
    try:
        if base_only:
            pull = open_pull(client, policy, number, resolve_head_sha(head_sha))
            base = {"stale": "false", "served": "true", "base_ref": pull.base_ref}
            write_outputs({**base, "pr": str(pull.number), "head_sha": pull.head_sha})
            print(f"pull request #{pull.number} merges into {pull.base_ref} (served)")
            return ExitCode.OK
        _, report = plan(client, policy, number, resolve_head_sha(head_sha), repo)
    except StalePullRequest as exc:
        print_untrusted(f"notice: {exc}")
        write_outputs({"stale": "true", "count": "0", "pr": str(number)})
        return ExitCode.OK
    except UnservedBranch as exc:
        print_untrusted(f"notice: {exc}")
        _write_json(pr_info_out, PrInfo(number=exc.pr.number, head_sha=exc.pr.head_sha))
        write_outputs(
            {
                "stale": "false",
                "served": "false",
                "count": "0",
                "pr": str(exc.pr.number),
                "head_sha": exc.pr.head_sha,
                "description": exc.description,
            }
        )
        return ExitCode.OK
    info = PrInfo(number=report.pr, head_sha=report.head_sha)
    _write_json(output, report)
    _write_json(pr_info_out, info)
    matrix = {"include": [e.model_dump() for e in report.submissions]}
    write_outputs(
        {
            "stale": "false",
            "served": "true",
            "base_ref": report.base_ref,
            "pr": str(report.pr),
            "head_sha": report.head_sha,
            "count": str(len(report.submissions)),
            "ids": json.dumps([e.id for e in report.submissions], separators=(",", ":")),
            "removed": json.dumps(report.removed, separators=(",", ":")),
            "matrix": json.dumps(matrix, separators=(",", ":")),
        }
    )
    for entry in report.submissions:
        print(f"changed  {entry.path} ({entry.id})")
    for path in report.removed:
        print_untrusted(f"removed  {path} (not measured; allowed for its team or a maintainer)")
    for path in report.data_files:
        print_untrusted(f"data     {path}")
    if not (report.submissions or report.removed or report.data_files):
        print(f"pull request #{report.pr} changes no submission")
    return report_violations(report)
