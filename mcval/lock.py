"""One writer at a time per checkout: the lock around ``mcval table`` and ``mcval ci publish``.

Why: ``mcval table`` reads ``results/`` and rewrites README.md and the plot; ``mcval ci
publish`` reads those files to commit them. Every single write is atomic already (temporary
file + rename), but two runs on the same checkout (a maintainer's local run beside the bot,
two jobs sharing a self-hosted runner's workspace) could still interleave their
read-compute-write: a run that read ``results/`` before another one added a row would write
its older table last, and the row would be lost. Holding this lock makes each of those
steps one unit.

The lock is an OS file lock (``flock`` through the ``filelock`` package): the kernel
releases it when the holder exits, even by a crash, so a stale file never blocks anyone.
The file lives in ``.git/`` when the checkout has one (next to git's own locks, invisible to
``git status``), else at the repository root as ``.mcval.lock`` (listed in .gitignore).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mcval.errors import McvalError

LOCK_NAME = "mcval.lock"
DEFAULT_TIMEOUT_S = 300.0
"""Longer than any table or publish run takes; a run waiting longer is told why."""


def lock_path(repo_root: Path) -> Path:
    """Where the checkout's lock file is: ``.git/mcval.lock``, else ``.mcval.lock``."""
    git = repo_root / ".git"
    return git / LOCK_NAME if git.is_dir() else repo_root / f".{LOCK_NAME}"


@contextmanager
def checkout_lock(repo_root: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Path]:
    """Hold the checkout's lock for the block; waits up to ``timeout_s`` for another run."""
    from filelock import FileLock, Timeout

    path = lock_path(repo_root)
    lock = FileLock(path, timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise McvalError(
            f"another mcval run has held the lock {path} for over {timeout_s:g} s; wait for it "
            "to finish and run again"
        ) from None
    try:
        yield path
    finally:
        lock.release()
