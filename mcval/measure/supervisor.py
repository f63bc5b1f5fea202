"""Run one measurement in a process of its own, with a time limit and a memory cap.

Why a fresh process: a model that hangs, segfaults, is OOM-killed or raises must become that
submission's error, never a crash of mcval; and RAM/latency figures must not carry state
(allocator caches, threads, a CUDA context) from earlier work. A CPU measurement is forked
from the run's preloaded fork server (forkserver.py: no import cost, exact peak RSS from
``wait4``); a CUDA one, or any where the platform cannot fork from a server, is a spawned
``python -I`` with an explicit environment, so ``CUDA_VISIBLE_DEVICES`` and the thread
variables are in place before torch is imported.

Protocol: the request (pydantic ``ChildRequest``) is the child's stdin; the child writes JSON
lines to a dedicated pipe (progress events, then exactly one result or error, which carries
its lifetime peak RSS); its stdout and stderr go to a temporary file whose tail is quoted when
something goes wrong. The parts: ``MessageReader`` parses the pipe, ``_supervise`` waits
for the end or the time limit, ``classify_failure`` (pure) words what went wrong.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from mcval.measure.forkserver import ChildExit
from mcval.measure.launchers import ChildHandle, Launch, Launcher, ServerLauncher, child_env
from mcval.measure.memory import MIB
from mcval.measure.protocol import (
    ChildError,
    ChildMessage,
    ChildRequest,
    ErrorKind,
    Isolated,
    R,
)


def _fmt_mb(peak: float | None) -> str:
    return f"{peak:.0f} MB" if peak is not None else "unknown"


def _tail(path: Path, lines: int = 15, max_chars: int = 4000) -> str | None:
    try:
        data = path.read_bytes()[-max_chars * 4 :].decode("utf-8", "replace")
    except OSError:
        return None
    text = "\n".join(data.splitlines()[-lines:]).strip()
    return text[-max_chars:] or None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _signal_message(signum: int) -> str:
    name = _signal_name(signum)
    if signum == signal.SIGKILL:
        return f"was killed by {name} (most likely the out-of-memory killer)"
    if signum == signal.SIGSEGV:
        return f"crashed with {name} (segmentation fault)"
    if signum == signal.SIGABRT:
        return f"aborted with {name} (a native library gave up)"
    if signum == signal.SIGBUS:
        return f"crashed with {name} (bus error)"
    return f"was terminated by {name}"


class MessageReader:
    """Splits the result pipe's bytes into ``ChildMessage`` lines as they arrive."""

    def __init__(self, on_stage: Callable[[str], None] | None = None) -> None:
        self._buf = b""
        self._on_stage = on_stage
        self.stages: list[str] = []
        self.final: ChildMessage | None = None
        self.protocol_error: str | None = None

    def feed(self, chunk: bytes) -> None:
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        for line in lines:
            self._take(line)

    def close(self) -> None:
        """The pipe is drained: a last line without its newline still counts."""
        self._take(self._buf)
        self._buf = b""

    def _take(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            msg = ChildMessage.model_validate_json(line)
        except ValidationError as exc:
            self.protocol_error = f"unreadable message from the child: {exc}"
            return
        if msg.type == "progress" and msg.stage:
            self.stages.append(msg.stage)
            if self._on_stage is not None:
                self._on_stage(msg.stage)
        elif msg.type in ("result", "error"):
            self.final = msg


class Failure(BaseModel):
    """What ``classify_failure`` decided: the kind, the sentence and the evidence."""

    kind: ErrorKind
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


def classify_failure(
    *,
    final: ChildMessage | None,
    protocol_error: str | None,
    exit_code: int | None,
    elapsed_s: float,
    peak_mb: float | None,
    memory_limit_mb: int | None,
    tail: str | None,
) -> Failure:
    """Why a child that ended gave no valid result, in one sentence (pure: no process)."""
    ran = f"after {elapsed_s:.1f} s; peak memory {_fmt_mb(peak_mb)}"
    if final is not None and final.type == "error":
        what = ": ".join(part for part in (final.exc_type, final.exc_message) if part)
        where = f" at {final.traceback_last}" if final.traceback_last else ""
        evidence = {
            "exc_type": final.exc_type,
            "exc_message": final.exc_message,
            "traceback_last": final.traceback_last,
            "traceback": final.traceback,
            "output_tail": tail,
        }
        if final.memory:
            cap = f" (memory cap {memory_limit_mb} MB)" if memory_limit_mb is not None else ""
            return Failure(
                kind="memory",
                message=f"ran out of memory{cap}: {what}{where}; {ran}",
                details=evidence,
            )
        return Failure(kind="exception", message=f"raised {what}{where}; {ran}", details=evidence)
    if exit_code is not None and exit_code < 0:
        return Failure(
            kind="signal",
            message=f"the measuring process {_signal_message(-exit_code)} {ran}",
            details={
                "signal": _signal_name(-exit_code),
                "exit_code": exit_code,
                "output_tail": tail,
            },
        )
    if protocol_error is not None:
        return Failure(
            kind="protocol",
            message=f"{protocol_error} ({ran})",
            details={"exit_code": exit_code, "output_tail": tail},
        )
    last = f"; last output: {tail.splitlines()[-1]}" if tail else ""
    return Failure(
        kind="exit",
        message=f"the measuring process exited with code {exit_code} without a result {ran}{last}",
        details={"exit_code": exit_code, "output_tail": tail},
    )


def _read_available(fd: int) -> tuple[bytes, bool]:
    """Everything readable now from a non-blocking pipe, and whether it reached EOF (a
    grandchild holding the write end must not block the parent)."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return data, False
        if not chunk:
            return data, True
        data += chunk


def run_isolated(
    target: str,
    payload: BaseModel | Mapping[str, Any],
    result_model: type[R],
    *,
    time_limit_s: float,
    memory_limit_mb: int | None = None,
    hide_cuda: bool = False,
    threads: int | None = None,
    preload: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    hf_token: bool = False,
    launcher: Launcher | None = None,
    progress: Callable[[str], None] | None = None,
    poll_interval_s: float = 0.2,
    preload_server: bool = False,
) -> Isolated[R]:
    """Run ``target(payload_dict, progress)`` in a child of its own and validate its result.

    ``target`` is ``"module:function"``; it receives the payload as a dict and a callable to
    report progress stages, and returns a ``result_model`` instance (or a dict for it).
    ``memory_limit_mb`` caps how much address space the child may add after importing
    ``preload`` (``RLIMIT_AS``; an allocation past it raises ``MemoryError`` in the child).
    On Linux the child comes from a fork server, so its peak RSS is exact (``wait4``):
    with ``preload_server`` and ``hide_cuda``, forked from a server that has imported
    ``preload`` already (no import cost); otherwise exec'd from a bare server. Elsewhere,
    or when no server starts, it is spawned and its peak sampled.
    ``launcher`` defaults to ``ServerLauncher`` (see launchers.py). The child sees the
    allow-listed environment plus ``env`` (an HF token only with ``hf_token``) and runs in
    a fresh empty working directory, removed afterwards.
    Never raises for anything the child does; ``KeyboardInterrupt`` kills the child first.
    """
    start = time.monotonic()
    payload_dict = (
        payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
    )
    reader = MessageReader(progress)
    peak = 0
    handle: ChildHandle | None = None

    def outcome(**kw: Any) -> Isolated[R]:
        peak_mb = peak / MIB if peak else None
        return Isolated[R](
            elapsed_s=time.monotonic() - start,
            peak_rss_mb=peak_mb,
            stages=reader.stages,
            launcher=handle.launcher if handle is not None else "spawn",
            **kw,
        )

    def fail(kind: ErrorKind, message: str, **details: Any) -> Isolated[R]:
        error = ChildError(
            kind=kind,
            message=message,
            elapsed_s=round(time.monotonic() - start, 3),
            peak_rss_mb=peak / MIB if peak else None,
            time_limit_s=time_limit_s,
            memory_limit_mb=memory_limit_mb,
            stage=reader.stages[-1] if reader.stages else None,
            **details,
        )
        return outcome(ok=False, error=error)

    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    # Closed in the finally below (they must outlive the launch, not a with-block).
    out_file = tempfile.NamedTemporaryFile(  # noqa: SIM115
        prefix="mcval-child-", suffix=".log", delete=False
    )
    request_file = tempfile.TemporaryFile(prefix="mcval-request-")  # noqa: SIM115
    out_path = Path(out_file.name)
    workdir = tempfile.mkdtemp(prefix="mcval-child-cwd-")
    try:
        request = ChildRequest(
            target=target,
            payload=payload_dict,
            memory_limit_mb=memory_limit_mb,
            preload=list(preload),
            result_fd=write_fd,
        )
        request_file.write(request.model_dump_json().encode())
        request_file.flush()
        request_file.seek(0)
        launch = Launch(
            request_fd=request_file.fileno(),
            output_fd=out_file.fileno(),
            result_fd=write_fd,
            env=child_env(hide_cuda=hide_cuda, threads=threads, extra=env, hf_token=hf_token),
            cwd=workdir,
            hide_cuda=hide_cuda,
            preload=tuple(preload),
            preload_server=preload_server,
        )
        try:
            handle = (launcher or ServerLauncher()).start(launch)
        except OSError as exc:
            return fail("launch", f"could not start the measuring process: {exc}")
        finally:
            os.close(write_fd)

        ended, overran, peak_seen = _supervise(
            handle, read_fd, reader, start, time_limit_s, poll_interval_s
        )
        peak = max(peak, peak_seen)
        peak = max(peak, ended.maxrss_bytes or 0)
        final = reader.final
        if final is not None and final.peak_rss_bytes:
            peak = max(peak, final.peak_rss_bytes)
        elapsed = time.monotonic() - start
        if overran:
            return fail(
                "timeout",
                f"timed out: still running after {elapsed:.1f} s "
                f"(time limit {time_limit_s:g} s), so it was killed"
                + (f" during '{reader.stages[-1]}'" if reader.stages else "")
                + f"; peak memory so far {_fmt_mb(peak / MIB if peak else None)}",
                output_tail=_tail(out_path),
            )
        if final is not None and final.type == "result":
            try:
                value = result_model.model_validate(final.value or {})
            except ValidationError as exc:
                return fail("protocol", f"the measuring process returned an invalid result: {exc}")
            return outcome(ok=True, value=value)
        failure = classify_failure(
            final=final,
            protocol_error=reader.protocol_error,
            exit_code=ended.exit_code,
            elapsed_s=elapsed,
            peak_mb=peak / MIB if peak else None,
            memory_limit_mb=memory_limit_mb,
            tail=_tail(out_path),
        )
        return fail(failure.kind, failure.message, **failure.details)
    except KeyboardInterrupt:
        if handle is not None:
            handle.kill()
            with contextlib.suppress(Exception):
                handle.wait()
        raise
    except Exception as exc:  # never crash mcval because of a child
        if handle is not None:
            handle.kill()
            with contextlib.suppress(Exception):
                handle.wait()
        return fail("launch", f"measuring process failed to run: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(OSError):
            os.close(read_fd)
        out_file.close()
        request_file.close()
        with contextlib.suppress(OSError):
            out_path.unlink()
        shutil.rmtree(workdir, ignore_errors=True)


def _supervise(
    handle: ChildHandle,
    read_fd: int,
    reader: MessageReader,
    start: float,
    time_limit_s: float,
    poll_interval_s: float,
) -> tuple[ChildExit, bool, int]:
    """Read the child's messages until it ends: (how it ended, whether it overran the time
    limit and was killed, the highest peak-RSS mark sampled while it ran)."""
    sel = selectors.DefaultSelector()
    sel.register(read_fd, selectors.EVENT_READ, "pipe")
    exit_fd = handle.fileno()
    if exit_fd is not None:
        sel.register(exit_fd, selectors.EVENT_READ, "exit")
    pipe_open = True
    peak_seen = 0
    try:
        while True:
            peak_seen = max(peak_seen, handle.sample_peak())
            remaining = time_limit_s - (time.monotonic() - start)
            if remaining <= 0:
                handle.kill()
                return handle.wait(), True, peak_seen
            for key, _events in sel.select(timeout=min(poll_interval_s, remaining)):
                if key.data == "pipe":
                    data, eof = _read_available(read_fd)
                    reader.feed(data)
                    if eof:
                        sel.unregister(read_fd)
                        pipe_open = False
            ended = handle.poll()
            if ended is not None:
                if pipe_open:
                    data, _eof = _read_available(read_fd)
                    reader.feed(data)
                reader.close()
                return ended, False, peak_seen
    finally:
        sel.close()
        handle.kill()  # stray grandchildren left in the child's session
