"""Every read and write of the GitHub Actions environment, and nothing else.

Why one module: the ``GITHUB_*`` variables, the ``$GITHUB_OUTPUT`` heredoc format, the
job summary and workflow commands (``::error file=…::``) are GitHub's protocol. Kept here,
the rest of mcval neither knows nor cares where it runs, and a change in that protocol is
a change in one file. The workflows never put ``${{ }}`` expressions into shell code;
the steps read the standard variables instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from pydantic import BaseModel, Field, ValidationError

from mcval.ci.rules import SHA_PATTERN
from mcval.errors import InputError

if TYPE_CHECKING:
    from mcval.github import GithubClient
    from mcval.policy import Policy

Level = Literal["error", "warning", "notice"]

Connect = Callable[["Policy"], "GithubClient"]
"""How a step gets its GitHub client: the policy in, a client for this job's repository
out. Steps take one as a parameter, so a test can pass a client with fast retries."""


# -- the event that started the run ---------------------------------------------------------


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


def read_event() -> PullRequestEvent | None:
    """The ``pull_request`` event of this run (``GITHUB_EVENT_PATH``); None on other events."""
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


def run_url() -> str | None:
    """The link to this workflow run, for the commit status (None outside Actions)."""
    server = os.environ.get("GITHUB_SERVER_URL")
    repository = os.environ.get("GITHUB_REPOSITORY")
    run_id = os.environ.get("GITHUB_RUN_ID")
    if server and repository and run_id and run_id.isdigit():
        return f"{server}/{repository}/actions/runs/{run_id}"
    return None


def running_in_actions() -> bool:
    """Whether workflow commands printed to stdout become annotations (else noise)."""
    return os.environ.get("GITHUB_ACTIONS") == "true"


# -- the GitHub client ------------------------------------------------------------------------


def github_job_available() -> bool:
    """Whether a GitHub client can be made here: a repository and a token (in a job)."""
    return bool(os.environ.get("GITHUB_REPOSITORY") and os.environ.get("GITHUB_TOKEN"))


def github_client(policy: Policy, **options: Any) -> GithubClient:
    """The client for this job's repository (``GITHUB_TOKEN``, ``GITHUB_REPOSITORY``,
    ``GITHUB_API_URL``); ``options`` go to ``GithubClient`` (retries, throttling)."""
    from mcval.github import DEFAULT_API_URL, GithubClient, GithubError

    repository = os.environ.get("GITHUB_REPOSITORY", "")
    if not repository:
        raise GithubError("GITHUB_REPOSITORY is not set (owner/name of the course repository)")
    return GithubClient(
        os.environ.get("GITHUB_TOKEN", ""),
        repository,
        api_url=os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL,
        bot_login=policy.github.bot_login,
        **options,
    )


# -- what a step leaves behind ----------------------------------------------------------------


def write_outputs(values: Mapping[str, str]) -> None:
    """Step outputs via ``$GITHUB_OUTPUT`` (heredoc form with a random delimiter, so a
    value cannot end its own entry and forge another)."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        for key, value in values.items():
            delimiter = f"mcval_{secrets.token_hex(8)}"
            out.write(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")


def write_step_summary(markdown: str) -> None:
    """Append Markdown to the job's summary page (``$GITHUB_STEP_SUMMARY``), if any."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(markdown.rstrip("\n") + "\n\n")


# -- the job log --------------------------------------------------------------------------------


_BREAK = "\u200b"  # zero-width space: shown as nothing, breaks the runner's command syntax
_OWN_COMMAND = re.compile(r"::(?:error|warning|notice)(?: [^:\n]*)?::")
"""The only workflow commands mcval prints: annotations built by ``annotation()``, whose
properties are %-escaped (no raw ``:``), so a forged one cannot set outputs, masks or
``stop-commands``."""


def _no_legacy(text: str) -> str:
    """The runner honours the legacy ``##[command]`` anywhere in a line."""
    return text.replace("##[", f"#{_BREAK}#[")


def _escape_data(text: str) -> str:
    return _no_legacy(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    level: Level,
    message: str,
    file: str | None = None,
    line: int | None = None,
    col: int | None = None,
    title: str | None = None,
) -> str:
    """One workflow command line (the log turns it into an annotation on the PR's diff,
    on the line a student has to fix); properties and message escaped as GitHub says."""
    props = []
    if file:
        props.append(f"file={_escape_property(file)}")
    if line:
        props.append(f"line={line}")
    if col:
        props.append(f"col={col}")
    if title:
        props.append(f"title={_escape_property(title)}")
    head = f"::{level} {','.join(props)}" if props else f"::{level}"
    return f"{head}::{_escape_data(message)}"


def log_safe(text: str) -> str:
    """Untrusted text (a PR's file name, a metric name, a job's message) made inert on the
    log line it is printed on: ``%`` and line breaks are %-escaped (a newline could start
    a ``::command::`` line), other control characters are backslash-escaped, and ``::``
    and ``##[`` are broken by a zero-width space so the runner reads no workflow command."""
    escaped = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in escaped)
    return _no_legacy(printable).replace("::", f":{_BREAK}:")


def print_untrusted(text: str, *, file: TextIO | None = None) -> None:
    """The one way a step prints text that came from a PR, a runner or a model."""
    print(log_safe(text), file=file or sys.stdout)


class LogGuard(io.TextIOBase):
    """Wraps stdout/stderr in Actions: whatever mcval prints (rich tables, error lines that
    quote a student's values, wrapped long lines) reaches the log with no workflow command
    but mcval's own annotations. Whole lines are guarded, so a command split over writes
    is caught too."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._pending = ""

    @staticmethod
    def guard_line(line: str) -> str:
        line = _no_legacy(line)
        stripped = line.lstrip()
        if stripped.startswith("::") and not _OWN_COMMAND.match(stripped):
            indent = line[: len(line) - len(stripped)]
            line = f"{indent}:{_BREAK}{stripped[1:]}"
        return line

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.stream.write(self.guard_line(line) + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.stream.write(self.guard_line(self._pending))
            self._pending = ""
        self.stream.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")


@contextlib.contextmanager
def guarded_output() -> Iterator[None]:
    """In Actions, route stdout and stderr through ``LogGuard`` for the block."""
    if not running_in_actions():
        yield
        return
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = LogGuard(saved[0]), LogGuard(saved[1])
    try:
        yield
    finally:
        for guard in (sys.stdout, sys.stderr):
            guard.flush()
        sys.stdout, sys.stderr = saved
