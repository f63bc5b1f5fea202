"""The messages between mcval and a measuring child, and what a run of one amounts to.

Shared by the parent-side supervisor (supervisor.py) and the child entry point (child.py),
so the child imports no more than it needs.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

R = TypeVar("R", bound=BaseModel)

ErrorKind = Literal["timeout", "signal", "memory", "exception", "exit", "protocol", "launch"]

# Phrases with which torch / the CUDA allocator report an allocation failure.
MEMORY_PHRASES = ("can't allocate memory", "out of memory", "std::bad_alloc", "Cannot allocate")


class ChildRequest(BaseModel):
    """What the child needs: which function to run on which JSON payload, and its limits."""

    target: str = Field(description="'package.module:function'")
    payload: dict[str, Any] = Field(default_factory=dict)
    memory_limit_mb: int | None = None
    preload: list[str] = Field(
        default_factory=list, description="modules imported before the memory cap is applied"
    )
    result_fd: int


class ChildMessage(BaseModel):
    """One JSON line from the child on the result pipe."""

    type: Literal["progress", "result", "error"]
    stage: str | None = None
    value: dict[str, Any] | None = None
    exc_type: str | None = None
    exc_message: str | None = None
    traceback_last: str | None = None
    traceback: str | None = None
    memory: bool = False
    peak_rss_bytes: int | None = None
    elapsed_s: float | None = None


class ChildError(BaseModel):
    """Why a child produced no result, phrased for the PR comment."""

    kind: ErrorKind
    message: str = Field(description="one paragraph: what happened, how long, peak memory")
    elapsed_s: float
    peak_rss_mb: float | None = None
    time_limit_s: float | None = None
    memory_limit_mb: int | None = None
    stage: str | None = Field(default=None, description="last progress stage the child reached")
    exc_type: str | None = None
    exc_message: str | None = None
    traceback_last: str | None = None
    traceback: str | None = None
    signal: str | None = None
    exit_code: int | None = None
    output_tail: str | None = Field(default=None, description="last lines of stdout/stderr")


class Isolated(BaseModel, Generic[R]):
    """Outcome of ``run_isolated``: exactly one of ``value`` / ``error`` is set."""

    ok: bool
    value: R | None = None
    error: ChildError | None = None
    elapsed_s: float
    peak_rss_mb: float | None = Field(
        description="the child's peak RSS over its whole life: wait4's ru_maxrss for a forked "
        "child, else its own report or the parent's samples"
    )
    stages: list[str] = Field(default_factory=list)
    launcher: Literal["fork", "exec", "spawn", "local-fork"] = Field(
        default="spawn",
        description="forked from the preloaded fork server, a fresh interpreter exec'd from a "
        "bare one, spawned from this process (where no server can run), or a fork of this "
        "process (LocalForkLauncher)",
    )
