"""``mcval ci <step>``: one subcommand per step of the GitHub Actions workflows.

The steps read the standard Actions environment (``GITHUB_EVENT_PATH``,
``GITHUB_REPOSITORY``, ``GITHUB_TOKEN``, ``GITHUB_API_URL``, ``GITHUB_STEP_SUMMARY``,
``GITHUB_OUTPUT``) so the workflows never put ``${{ }}`` expressions into shell code.
Everything that comes from a pull request — its files, the artifact of a run it could
have tampered with, the results of a job that ran a stranger's model — is read as data
and validated before use. This module stays light (no PyGithub, no torch at import):
``mcval.cli`` imports it to build the parser, and ``mcval.github`` is imported by the
steps that talk to GitHub.

Exit codes follow the CLI: 0 ok, 1 the pull request breaks a rule (paths, team), 2 a
usage, input or GitHub error (printed as one sentence).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, ValidationError

from mcval.errors import InputError, McvalError
from mcval.policy import Policy, load_policy

if TYPE_CHECKING:
    from mcval.github import GithubClient, PathViolation, PullInfo
    from mcval.verdict import VerdictStatus

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_INPUT = 2
SHA_PATTERN = r"^[0-9a-f]{40}$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
MAX_MARKDOWN_BYTES = 256 * 1024
MAX_RESULT_BYTES = 1024 * 1024
MAX_DATA_FILE_BYTES = 1024 * 1024  # the contents API inlines files up to 1 MiB
MAX_JSON_DEPTH = 32

CLIENT_OPTIONS: dict[str, Any] = {}
"""Extra keyword arguments for every ``GithubClient`` the steps build (tests: fast retries)."""


# -- data crossing the workflow boundary -------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _EventRepo(BaseModel):
    full_name: str


class _EventRef(BaseModel):
    sha: str = Field(pattern=SHA_PATTERN)
    ref: str
    repo: _EventRepo | None = None


class _EventPull(BaseModel):
    number: int = Field(gt=0)
    head: _EventRef
    base: _EventRef


class PullRequestEvent(BaseModel):
    """The part of a ``pull_request`` event payload mcval reads (GitHub writes the file)."""

    pull_request: _EventPull


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
    violations: list[str]


def slug_of(submission_id: str) -> str:
    """Artifact names may not contain '/', and 'a-/b' style joins could collide."""
    return "results-" + hashlib.sha1(submission_id.encode()).hexdigest()[:12]


# -- environment helpers -----------------------------------------------------------------------


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise InputError(f"{name} is not set; run this step inside GitHub Actions or export it")
    return value


def _event() -> PullRequestEvent | None:
    path = os.environ.get("GITHUB_EVENT_PATH")
    if not path or not Path(path).is_file():
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the event file: {exc}", path) from None
    if not isinstance(data, dict) or "pull_request" not in data:
        return None
    try:
        return PullRequestEvent.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"unexpected pull_request event: {exc.errors()[0]['msg']}", path) from None


def _write_output(values: dict[str, str]) -> None:
    """Step outputs via ``$GITHUB_OUTPUT`` (heredoc form with a random delimiter)."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        for key, value in values.items():
            delimiter = f"mcval_{secrets.token_hex(8)}"
            out.write(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")


def _summary(markdown: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(markdown.rstrip("\n") + "\n\n")


def _annotation(level: str, message: str, file: str | None = None) -> str:
    message = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    where = f" file={file.replace(',', '%2C').replace(':', '%3A')}" if file else ""
    return f"::{level}{where}::{message}"


def _policy(args: argparse.Namespace) -> Policy:
    return load_policy(Path(args.repo))


def _client(policy: Policy) -> GithubClient:
    from mcval.github import GithubClient

    return GithubClient.from_env(policy, **CLIENT_OPTIONS)


def _pr_number(args: argparse.Namespace) -> int:
    if getattr(args, "pr", None):
        return int(args.pr)
    if getattr(args, "pr_info", None):
        return _read_pr_info(Path(args.pr_info)).number
    event = _event()
    if event is None:
        raise InputError("no pull request: pass --pr N (or run on a pull_request event)")
    return event.pull_request.number


def _expected_sha(args: argparse.Namespace) -> str | None:
    if getattr(args, "head_sha", None):
        if not re.fullmatch(SHA_PATTERN, args.head_sha):
            raise InputError(f"--head-sha must be a full 40-character SHA, got {args.head_sha!r}")
        return str(args.head_sha)
    event = _event()
    return event.pull_request.head.sha if event else None


def _read_pr_info(path: Path) -> PrInfo:
    try:
        raw = path.read_bytes()
        if len(raw) > 4096:
            raise InputError("pr.json is larger than 4 KiB; refusing it", path)
        return PrInfo.model_validate_json(raw)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path) from None
    except ValidationError as exc:
        raise InputError(f"not a valid pr.json: {exc.errors()[0]['msg']}", path) from None


# -- planning: what does this PR change, and may it? -------------------------------------------


class StalePullRequest(McvalError):
    """The PR's head moved since the run was triggered; the newer push gets its own run."""


def plan(
    client: GithubClient, policy: Policy, number: int, expected_sha: str | None
) -> tuple[PullInfo, ChangedReport]:
    """The PR's changed files, classified and checked against the policy (from the API)."""
    from mcval.github import check_paths_allowed, check_team_ownership, submission_path_pattern

    pr = client.pull_request(number)
    if expected_sha is not None and pr.head_sha != expected_sha:
        raise StalePullRequest(
            f"pull request #{number} moved on: its head is {pr.head_sha[:12]}, this run was "
            f"for {expected_sha[:12]}; the run for the newer push measures it"
        )
    if pr.state != "open":
        raise StalePullRequest(f"pull request #{number} is {pr.state}; nothing to validate")
    files = client.changed_files(number)
    violations: list[PathViolation] = check_paths_allowed(files, policy)
    violations += check_team_ownership(files, pr.author, policy, pr.author_association)
    pattern = submission_path_pattern(policy)
    prefix = policy.submissions_dir.strip("/") + "/"
    entries: list[MatrixEntry] = []
    removed: list[str] = []
    data_files: list[str] = []
    for changed in files:
        match = pattern.fullmatch(changed.path)
        if match and changed.status == "removed":
            removed.append(changed.path)
        elif match:
            sub_id = f"{match['team']}/{match['name']}"
            entries.append(MatrixEntry(id=sub_id, path=changed.path, slug=slug_of(sub_id)))
        elif changed.path.startswith(prefix) and changed.status != "removed":
            data_files.append(changed.path)
    if len(entries) > policy.limits.max_submissions_per_pr:
        from mcval.github import PathViolation as Violation

        violations.append(
            Violation(
                path=prefix,
                reason=(
                    f"the pull request changes {len(entries)} submissions; at most "
                    f"{policy.limits.max_submissions_per_pr} per pull request "
                    "(mcval.toml limits.max_submissions_per_pr) — split it"
                ),
            )
        )
    report = ChangedReport(
        pr=pr.number,
        head_sha=pr.head_sha,
        head_repo=pr.head_repo,
        author=pr.author,
        submissions=entries,
        removed=removed,
        data_files=data_files,
        violations=[str(v) for v in violations],
    )
    return pr, report


def _report_violations(report: ChangedReport) -> int:
    if not report.violations:
        return EXIT_OK
    lines = [f"Pull request #{report.pr} changes files it may not change:"]
    for violation in report.violations:
        path, _, reason = violation.partition(": ")
        print(f"error: {violation}", file=sys.stderr)
        if os.environ.get("GITHUB_ACTIONS") == "true":
            print(_annotation("error", f"{path} {reason}", path))
        lines.append(f"- `{path}` {reason}")
    _summary("\n".join(lines))
    return EXIT_FAIL


# -- steps -------------------------------------------------------------------------------------


def run_changed(args: argparse.Namespace) -> int:
    """List the PR's changed submissions, enforce allowed paths and team ownership.

    Writes ``--output`` (a ``ChangedReport`` JSON) and the step outputs ``pr``,
    ``head_sha``, ``count``, ``ids`` (JSON list), ``matrix`` (``{"include": [...]}``) and
    ``stale`` ("true" when the PR moved on or closed: downstream jobs skip).
    """
    policy = _policy(args)
    client = _client(policy)
    number = _pr_number(args)
    try:
        _, report = plan(client, policy, number, _expected_sha(args))
    except StalePullRequest as exc:
        print(f"notice: {exc}")
        _write_output({"stale": "true", "count": "0", "pr": str(number)})
        return EXIT_OK
    for out_path, model in ((args.output, report), (args.pr_info_out, _pr_info(report))):
        if out_path:
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
            Path(out_path).write_text(model.model_dump_json(indent=2) + "\n", encoding="utf-8")
    matrix = {"include": [e.model_dump() for e in report.submissions]}
    _write_output(
        {
            "stale": "false",
            "pr": str(report.pr),
            "head_sha": report.head_sha,
            "count": str(len(report.submissions)),
            "ids": json.dumps([e.id for e in report.submissions], separators=(",", ":")),
            "matrix": json.dumps(matrix, separators=(",", ":")),
        }
    )
    for entry in report.submissions:
        print(f"changed  {entry.path} ({entry.id})")
    for path in report.removed:
        print(f"removed  {path}")
    for path in report.data_files:
        print(f"data     {path}")
    if not (report.submissions or report.removed or report.data_files):
        print(f"pull request #{report.pr} changes no submission")
    return _report_violations(report)


def _pr_info(report: ChangedReport) -> PrInfo:
    return PrInfo(number=report.pr, head_sha=report.head_sha)


def _safe_target(dest: Path, relpath: str) -> Path:
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


def run_fetch(args: argparse.Namespace) -> int:
    """Write the PR's submission files at its head SHA into ``--dest`` as data.

    Layout is the repository's (``DEST/submissions/<team>/<name>.yaml``), so ``--dest`` may
    be a checkout of the base branch: the PR's files are overlaid, deleted ones removed,
    and ``mcval check``/``validate`` see baselines from the base branch. Nothing is
    checked out and nothing from the PR runs.
    """
    from mcval.github import submission_path_pattern

    policy = _policy(args)
    client = _client(policy)
    number = _pr_number(args)
    try:
        pr, report = plan(client, policy, number, _expected_sha(args))
    except StalePullRequest as exc:
        raise InputError(str(exc)) from None
    if report.violations:
        return _report_violations(report)
    only = set(args.only or [])
    unknown = only - {e.id for e in report.submissions}
    if unknown:
        raise InputError(
            "--only names submissions this pull request does not change: "
            + ", ".join(sorted(unknown))
        )
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    pattern = submission_path_pattern(policy)
    written: list[str] = []
    for entry in report.submissions:
        if only and entry.id not in only:
            continue
        data = client.read_pr_file(pr, entry.path, policy.limits.max_submission_bytes)
        _safe_target(dest, entry.path).write_bytes(data)
        written.append(entry.path)
    # Other allowed files under the team's directory (local datasets, label maps): data
    # too; with --only, those of the selected submissions' teams.
    teams = {e.id.split("/")[0] for e in report.submissions if not only or e.id in only}
    root = policy.submissions_dir.strip("/")
    safe_data = re.compile(
        re.escape(root) + r"/(?P<team>[A-Za-z0-9][A-Za-z0-9_.-]*)(?:/[A-Za-z0-9][A-Za-z0-9_.-]*)+"
    )
    for path in report.data_files:
        match = safe_data.fullmatch(path)
        if not match:
            print(f"warning: skipped {path}: unusual characters in the path", file=sys.stderr)
        elif match["team"] in teams or not only:
            _safe_target(dest, path).write_bytes(client.read_pr_file(pr, path, MAX_DATA_FILE_BYTES))
            written.append(path)
    if not only:
        for path in report.removed:
            if pattern.fullmatch(path):
                target = _safe_target(dest, path)
                if target.exists():
                    target.unlink()
                    print(f"removed  {path}")
    for path in written:
        print(f"fetched  {path} @ {pr.head_sha[:12]}")
    if args.list:
        yaml_paths = [p for p in written if pattern.fullmatch(p)]
        Path(args.list).write_text("".join(f"{p}\n" for p in yaml_paths), encoding="utf-8")
    return EXIT_OK


def _read_text(path: Path, limit: int, what: str) -> str:
    try:
        if path.is_symlink() or not path.is_file():
            raise InputError(f"{what} must be a regular file", path)
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror}", path) from None
    if len(raw) > limit:
        raise InputError(f"{what} is {len(raw)} bytes; at most {limit} are accepted", path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text", path) from None


def run_comment(args: argparse.Namespace) -> int:
    """Create or edit the one mcval comment on the PR; the same text goes to the job summary."""
    from mcval.github import comment_body

    policy = _policy(args)
    markdown = _read_text(Path(args.markdown), MAX_MARKDOWN_BYTES, "the comment Markdown")
    client = _client(policy)
    number = _pr_number(args)
    result = client.upsert_comment(number, markdown)
    _summary(comment_body(markdown))
    print(f"{'created' if result.created else 'updated'} comment {result.url}")
    return EXIT_OK


def _run_url() -> str | None:
    server = os.environ.get("GITHUB_SERVER_URL")
    repository = os.environ.get("GITHUB_REPOSITORY")
    run_id = os.environ.get("GITHUB_RUN_ID")
    if server and repository and run_id and run_id.isdigit():
        return f"{server}/{repository}/actions/runs/{run_id}"
    return None


def run_status(args: argparse.Namespace) -> int:
    """Set the ``mcval`` commit status (the one branch protection requires)."""
    policy = _policy(args)
    sha = args.sha or _expected_sha(args)
    if not sha or not re.fullmatch(SHA_PATTERN, sha):
        raise InputError("pass --sha with the full 40-character commit SHA")
    client = _client(policy)
    target = args.target_url or _run_url()
    client.set_status(sha, args.state, args.description, target)
    print(f"status mcval={args.state} on {sha[:12]}: {args.description}")
    return EXIT_OK


# -- the report job: results from the measuring job are untrusted ------------------------------

_JSON = TypeAdapter(dict[str, JsonValue])


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key in JSON object")
    return dict(pairs)


def _depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > limit:
            break
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def load_untrusted_json(raw: bytes) -> dict[str, Any]:
    """Strict JSON (no NaN, no duplicate keys, bounded size and depth) as a pydantic JSON value.

    The results file comes from a job that ran a stranger's model: parse it like input
    from the internet before anything reads a field of it.
    """
    if len(raw) > MAX_RESULT_BYTES:
        raise ValueError(f"{len(raw)} bytes; at most {MAX_RESULT_BYTES}")
    data = json.loads(
        raw.decode("utf-8"), parse_constant=_no_constants, object_pairs_hook=_no_duplicates
    )
    if _depth(data) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return _JSON.validate_python(data)


@dataclass
class CellOutcome:
    """One matrix cell after re-validation in the report job.

    ``record`` is the cell's ``ResultRecord``, parsed strictly from the artifact; the
    comment is rendered from it here, so no Markdown written on the GPU runner reaches the
    PR. A cell without a usable record gets a fixed section naming the problem.
    """

    entry: MatrixEntry
    state: Literal["success", "failure", "error"]
    record: Any = None
    section: str = ""
    problem: str | None = None


def _log_tail(folder: Path, lines: int = 20) -> str:
    """The end of the job's log as a fenced block (no fence of its own can close it)."""
    try:
        text = _read_text(folder / "log.txt", MAX_MARKDOWN_BYTES, "log.txt")
    except InputError:
        return ""
    tail = "\n".join(text.replace("~~~", "~ ~ ~").splitlines()[-lines:])
    return f"\n\n~~~~text\n{tail}\n~~~~" if tail.strip() else ""


_CELL_STATES: dict[VerdictStatus, Literal["success", "failure", "error"]] = {
    "pass": "success",
    "fail": "failure",
    "error": "failure",  # the submission's own child crashed, hung or ran out of memory
    # The runner could not measure stably: its fault, so the commit status says "could not
    # be measured" (error), not a failure of the submission; its section still renders.
    "unmeasured": "error",
}


def _cell(artifacts: Path, entry: MatrixEntry) -> CellOutcome:
    from mcval.cli import VERDICT_EXIT_CODES
    from mcval.render.markdown import code_span
    from mcval.results import ResultRecord, record_path

    folder = artifacts / slug_of(entry.id)
    title = f"### {entry.id}\n\n{code_span(entry.path)}"

    def broken(problem: str) -> CellOutcome:
        section = (
            f"{title}: ⚠️ **could not be measured**: {problem}. Maintainers: see the "
            "workflow run's logs."
        )
        return CellOutcome(entry, "error", section=section + _log_tail(folder), problem=problem)

    if folder.is_symlink() or not folder.is_dir():
        return broken("the job's results artifact is missing (the job failed or was cancelled)")
    try:
        code_text = _read_text(folder / "exit_code", 16, "exit_code").strip()
    except InputError as exc:
        return broken(exc.message)
    if not re.fullmatch(r"\d{1,3}", code_text):
        return broken(f"exit_code is not a number: {code_text[:16]!r}")
    code = int(code_text)
    record_file = record_path(folder / "results", entry.id)
    if record_file.is_symlink() or not record_file.is_file():
        if code == 2:
            section = (
                f"{title}: ⛔ **invalid**: `mcval validate` rejected the file; run it locally "
                "to see every problem with its line."
            )
            return CellOutcome(entry, "failure", section=section + _log_tail(folder))
        return broken(f"no result file (mcval validate exited with {code})")
    try:
        record = ResultRecord.model_validate(load_untrusted_json(record_file.read_bytes()))
    except (ValueError, ValidationError) as exc:
        return broken(f"the result file is not valid: {str(exc).splitlines()[0]}")
    if record.id != entry.id:
        return broken(f"the result file is for {record.id!r}, not for this submission")
    if code != VERDICT_EXIT_CODES[record.verdict]:
        return broken(f"exit code {code} and verdict {record.verdict!r} disagree")
    return CellOutcome(entry, _CELL_STATES[record.verdict], record=record)


def combine(outcomes: list[CellOutcome], head_sha: str | None) -> tuple[str, str, str]:
    """The comment for the whole PR, the overall state and a ≤140-char description.

    Sections are rendered by ``mcval.render.comment`` from the re-validated records, the
    same renderer ``mcval validate --markdown`` uses locally.
    """
    from mcval.render.comment import MARKER, SubmissionReport, render_comment

    if not outcomes:
        body = render_comment([])
        return body, "success", "no submission changed"
    reports = [
        SubmissionReport(id=o.entry.id, path=o.entry.path, record=o.record)
        for o in outcomes
        if o.record is not None
    ]
    body = render_comment(reports) if reports else f"{MARKER}\n## mcval: results check\n"
    extra = [o.section for o in outcomes if o.record is None]
    states = [o.state for o in outcomes]
    overall = "error" if "error" in states else "failure" if "failure" in states else "success"
    parts = [f"{states.count('success')} passed"]
    parts += [f"{states.count('failure')} failed"] if "failure" in states else []
    parts += [f"{states.count('error')} could not be measured"] if "error" in states else []
    description = f"{len(outcomes)} submission(s): {', '.join(parts)}"
    footer = f"<sub>mcval run for commit {head_sha[:7]}.</sub>" if head_sha else ""
    sections = [body.rstrip("\n"), *extra, footer]
    return "\n\n".join(s for s in sections if s) + "\n", overall, description


def _matrix_entries(text: str, policy: Policy) -> list[MatrixEntry]:
    """The plan's matrix, re-checked: ids and paths must agree and be safe."""
    from mcval.github import submission_path_pattern

    try:
        data = json.loads(text)
        items = data["include"] if isinstance(data, dict) else None
        entries = TypeAdapter(list[MatrixEntry]).validate_python(items)
    except (ValueError, KeyError, TypeError, ValidationError):
        raise InputError('--matrix must be the plan\'s matrix: {"include": [...]}') from None
    pattern = submission_path_pattern(policy)
    for entry in entries:
        match = pattern.fullmatch(entry.path)
        if not match or f"{match['team']}/{match['name']}" != entry.id:
            raise InputError(f"--matrix entry {entry.id!r} has a bad path {entry.path!r}")
    return entries


def run_report(args: argparse.Namespace) -> int:
    """Re-validate the measuring jobs' artifacts and build the comment and the status.

    ``--artifacts`` holds one folder per matrix cell (``results-<sha1(id)[:12]>/`` with
    ``exit_code``, ``results/<team>/<name>.json``, ``log.txt``); ``--matrix`` is the plan's
    matrix. A missing or malformed cell is an *error* for that submission, never trusted.
    Writes ``--output`` and the step outputs ``state`` and ``description``.
    """
    policy = _policy(args)
    entries = _matrix_entries(args.matrix, policy)
    artifacts = Path(args.artifacts)
    outcomes = [_cell(artifacts, entry) for entry in entries]
    head_sha = args.head_sha if args.head_sha and re.fullmatch(SHA_PATTERN, args.head_sha) else None
    markdown, state, description = combine(outcomes, head_sha)
    Path(args.output).write_text(markdown, encoding="utf-8")
    _write_output({"state": state, "description": description})
    for outcome in outcomes:
        problem = f": {outcome.problem}" if outcome.problem else ""
        print(f"{outcome.state:8} {outcome.entry.id}{problem}")
    print(f"overall: {state} — {description}")
    return EXIT_OK


# -- publishing on the default branch ----------------------------------------------------------


def _collect_publish_files(
    repo: Path, names: list[str], missing_ok: bool = False
) -> dict[str, bytes]:
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


def run_publish(args: argparse.Namespace) -> int:
    """Commit the regenerated README, plot and ``results/`` to the default branch, once.

    One commit via the git data API; when the branch moved meanwhile the commit is
    rebuilt on the new tip, leaving out (and reporting) any path the branch itself changed
    since ``--base-sha`` — the next publish run, queued by that very push, regenerates it.
    """
    policy = _policy(args)
    if args.base_sha and not re.fullmatch(SHA_PATTERN, args.base_sha):
        raise InputError(f"--base-sha must be a full 40-character SHA, got {args.base_sha!r}")
    from mcval.lock import checkout_lock

    # README, plot and results/ read as one snapshot, never halfway through `mcval table`.
    with checkout_lock(Path(args.repo)):
        files = _collect_publish_files(Path(args.repo), args.files, args.missing_ok)
    if not files:
        raise InputError("--files named no file to publish")
    client = _client(policy)
    result = client.publish(
        files, args.message, branch=args.branch or None, base_sha=args.base_sha or None
    )
    for path in result.dropped:
        message = (
            f"{path} changed on the branch while this run worked; left out, the run for "
            "that push regenerates it"
        )
        print(f"warning: {message}", file=sys.stderr)
        if os.environ.get("GITHUB_ACTIONS") == "true":
            print(_annotation("warning", message))
    if result.commit_sha is None:
        print("nothing to publish: the branch already has these files")
    else:
        print(
            f"published {len(result.changed)} file(s) in {result.commit_sha[:12]} "
            f"(attempt {result.attempts})"
        )
        _summary(f"mcval published {len(result.changed)} file(s) in `{result.commit_sha[:12]}`.")
    _write_output({"commit": result.commit_sha or ""})
    return EXIT_OK


# -- argparse wiring ---------------------------------------------------------------------------


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``mcval ci <step>`` to the main parser's subparsers (called by ``mcval.cli``)."""
    ci = subparsers.add_parser("ci", help="steps of the GitHub Actions workflows")
    steps = ci.add_subparsers(dest="ci_step", required=True, metavar="STEP")

    def step(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        parser = steps.add_parser(name, help=help_text, description=help_text)
        parser.add_argument(
            "--repo", default=".", help="repository root holding mcval.toml (default: .)"
        )
        parser.set_defaults(handler=handler)
        return parser

    def pr_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--pr", type=int, help="pull request number (default: from event)")
        parser.add_argument(
            "--pr-info", help="pr.json from the check workflow (untrusted: only its number is used)"
        )
        parser.add_argument(
            "--head-sha", help="the head SHA this run is for; a PR that moved on is stale"
        )

    changed = step(
        "changed", "list the PR's changed submissions and enforce path rules", run_changed
    )
    pr_options(changed)
    changed.add_argument("--output", help="write the plan (JSON) to this file")
    changed.add_argument(
        "--pr-info-out", help="write pr.json (number, head SHA) for the measuring workflow"
    )

    fetch = step("fetch", "write the PR's submission files at its head SHA into a dir", run_fetch)
    pr_options(fetch)
    fetch.add_argument("--dest", required=True, help="work dir laid out as the repository")
    fetch.add_argument(
        "--only", action="append", metavar="ID", help="only this submission id (repeatable)"
    )
    fetch.add_argument("--list", help="write the fetched submission paths here, one a line")

    comment = step("comment", "create or update the one mcval comment on the PR", run_comment)
    comment.add_argument("--pr", type=int, help="pull request number (default: from event)")
    comment.add_argument("--markdown", required=True, help="the comment's Markdown file")

    status = step("status", "set the 'mcval' commit status", run_status)
    status.add_argument("--sha", help="commit SHA (default: the event's PR head)")
    status.add_argument(
        "--state", required=True, choices=["pending", "success", "failure", "error"]
    )
    status.add_argument("--description", required=True, help="shown next to the status")
    status.add_argument("--target-url", help="link (default: this workflow run)")

    report = step(
        "report", "re-validate measurement artifacts; build comment and state", run_report
    )
    report.add_argument("--artifacts", required=True, help="folder with the downloaded artifacts")
    report.add_argument("--matrix", required=True, help="the plan's matrix JSON (ci changed)")
    report.add_argument("--head-sha", help="the PR head the results are for")
    report.add_argument("--output", required=True, help="write the combined comment here")

    publish = step("publish", "commit README, plot and results to the default branch", run_publish)
    publish.add_argument("--files", nargs="+", required=True, help="files or dirs, repo-relative")
    publish.add_argument("--message", default="mcval: update results table", help="commit message")
    publish.add_argument("--branch", help="target branch (default: the repository's default)")
    publish.add_argument("--base-sha", help="commit the files were generated from (3-way check)")
    publish.add_argument(
        "--missing-ok", action="store_true", help="skip named files that do not exist"
    )
    return ci
