"""Errors that reach the user as one line, never as a traceback, and the exit codes.

Every problem with something a person wrote (a submission, the policy file, a CLI
argument) is an ``InputError``: it knows the file and, where known, the line and column,
so the CLI can print ``path:line:col: message`` and exit with code 2. A problem of the
machine that measures (the hub unreachable, ...) is a ``RunnerError``: exit 3, re-run,
never the student's fault.

``ExitCode`` is the one definition of the exit codes: every command, ``mcval ci`` step
and CI check imports it from here (a test fails on a second definition).
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """The exit codes, a contract with CI and with students' scripts."""

    OK = 0
    """Everything passes."""
    FAIL = 1
    """A submission fails its verdict (or a check such as ``table --check`` finds a change)."""
    INPUT = 2
    """Invalid input or usage: the student's (or the caller's) to fix."""
    UNMEASURED = 3
    """The runner could not measure (other load, the hub unreachable): its fault; re-run."""
    INTERRUPTED = 130
    """Stopped with Ctrl-C (128 + SIGINT, as shells report it)."""


class McvalError(Exception):
    """Base class of mcval's own errors (all are reported without a traceback)."""


class InputError(McvalError):
    """Bad user input: printed as ``path:line:col: message``; the CLI exits with 2."""

    def __init__(
        self,
        message: str,
        path: str | Path | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.col = col

    def location(self) -> str:
        """``path:line:col`` (as much of it as is known), or an empty string."""
        parts = [p for p in (self.path, self.line, self.col) if p is not None]
        return ":".join(str(p) for p in parts)

    def __str__(self) -> str:
        loc = self.location()
        return f"{loc}: {self.message}" if loc else self.message


class InputErrors(McvalError):
    """Several input errors found in one pass (a file is reported whole, not one error a run)."""

    def __init__(self, errors: list[InputError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class RunnerError(McvalError):
    """The runner could not do its part (the hub unreachable, ...): exit 3, never the
    submission's fault, so its sentence says so and asks for a re-run.

    ``message`` is the cause; ``str()`` is the whole sentence a user reads.
    """

    what = "the runner could not measure"
    """How the sentence starts; a subclass names what failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.what} ({self.message}); this is not a problem of the submission; re-run"
