"""Run one measurement in a freshly spawned Python process, with a time limit and a memory cap.

Why a fresh process: a model that hangs, segfaults, is OOM-killed or raises must become that
submission's error, never a crash of mcval; and RAM/latency figures must not carry state
(allocator caches, imported modules, threads, a CUDA context) from earlier work. The child is
``python -m mcval.measure.child`` started with an explicit environment, so
``CUDA_VISIBLE_DEVICES=""`` and the thread variables are in place before torch is imported.

Protocol: the request (pydantic ``ChildRequest``) goes in on stdin; the child writes JSON
lines to a dedicated pipe (progress events, then exactly one result or error); its stdout and
stderr go to a temporary file whose tail is quoted when something goes wrong. The parent polls
the child's kernel peak-RSS mark (``/proc/<pid>/status`` ``VmHWM``) every ``poll_interval_s``
from outside — that costs the child nothing — so every error can say how much memory had been
used so far.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from mcval.measure.memory import MIB, read_status

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
    sys_path: list[str] = Field(default_factory=list)
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
    peak_rss_mb: float | None = Field(description="child's peak RSS as seen from the parent")
    stages: list[str] = Field(default_factory=list)


def _package_parent() -> str:
    """Directory containing the ``mcval`` package, so the child imports this same code."""
    import mcval

    return str(Path(mcval.__file__).resolve().parent.parent)


def child_env(
    *,
    hide_cuda: bool,
    threads: int | None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of a measuring child (set before its interpreter starts)."""
    env = dict(os.environ)
    parent = _package_parent()
    env["PYTHONPATH"] = os.pathsep.join(
        [parent, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    if hide_cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    if extra:
        env.update(extra)
    return env


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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child and anything it started (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _with_maxrss(peak: int, rusage: Any, parent_rss: int) -> int:
    """Fold the exited child's ``ru_maxrss`` into ``peak`` when it is the child's own."""
    maxrss = rusage.ru_maxrss * 1024
    return max(peak, maxrss) if maxrss > parent_rss * 1.05 else peak


def _is_our_child(pid: int) -> bool:
    """Whether ``pid`` runs the child program yet. Between fork and exec it still is a copy
    of this process, whose peak-RSS mark (and ``ru_maxrss``, kept across exec) would count
    the parent's memory as the child's."""
    try:
        return b"mcval.measure.child" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


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
    sys_path: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
    poll_interval_s: float = 0.2,
) -> Isolated[R]:
    """Run ``target(payload_dict, progress)`` in a spawned child and validate its result.

    ``target`` is ``"module:function"``; it receives the payload as a dict and a callable to
    report progress stages, and returns a ``result_model`` instance (or a dict for it).
    ``memory_limit_mb`` caps how much address space the child may add after importing
    ``preload`` (``RLIMIT_AS``; an allocation past it raises ``MemoryError`` in the child).
    Never raises for anything the child does; ``KeyboardInterrupt`` kills the child first.
    """
    start = time.monotonic()
    peak_hwm = 0
    # ru_maxrss survives exec, and a forked copy inherits this process's high-water mark,
    # so the child's ru_maxrss is its own peak only when it exceeds that mark.
    parent_rss = read_status().get("VmHWM") or 0
    stages: list[str] = []
    payload_dict = (
        payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
    )

    def fail(kind: ErrorKind, message: str, **kw: Any) -> Isolated[R]:
        elapsed = time.monotonic() - start
        peak = peak_hwm / MIB if peak_hwm else None
        err = ChildError(
            kind=kind,
            message=message,
            elapsed_s=round(elapsed, 3),
            peak_rss_mb=peak,
            time_limit_s=time_limit_s,
            memory_limit_mb=memory_limit_mb,
            stage=stages[-1] if stages else None,
            **kw,
        )
        return Isolated[R](ok=False, error=err, elapsed_s=elapsed, peak_rss_mb=peak, stages=stages)

    read_fd, write_fd = os.pipe()
    # Closed in the finally below (it must outlive the Popen call, not a with-block).
    out_file = tempfile.NamedTemporaryFile(  # noqa: SIM115
        prefix="mcval-child-", suffix=".log", delete=False
    )
    out_path = Path(out_file.name)
    proc: subprocess.Popen[bytes] | None = None
    try:
        request = ChildRequest(
            target=target,
            payload=payload_dict,
            memory_limit_mb=memory_limit_mb,
            preload=list(preload),
            sys_path=[str(p) for p in sys_path],
            result_fd=write_fd,
        )
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mcval.measure.child"],
                stdin=subprocess.PIPE,
                stdout=out_file,
                stderr=subprocess.STDOUT,
                env=child_env(hide_cuda=hide_cuda, threads=threads, extra=env),
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        except OSError as exc:
            return fail("launch", f"could not start the measuring process: {exc}")
        finally:
            os.close(write_fd)
        assert proc.stdin is not None
        try:
            proc.stdin.write(request.model_dump_json().encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass

        buf = b""
        final: ChildMessage | None = None
        protocol_error: str | None = None
        status: int | None = None
        eof = False
        sel = selectors.DefaultSelector()
        sel.register(read_fd, selectors.EVENT_READ)
        try:
            while True:
                if _is_our_child(proc.pid):
                    hwm = read_status(proc.pid).get("VmHWM")
                    if hwm:
                        peak_hwm = max(peak_hwm, hwm)
                if not eof:
                    for _key, _ev in sel.select(timeout=poll_interval_s):
                        chunk = os.read(read_fd, 1 << 16)
                        if not chunk:
                            eof = True
                            sel.unregister(read_fd)
                            break
                        buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if not line.strip():
                            continue
                        try:
                            msg = ChildMessage.model_validate_json(line)
                        except ValidationError as exc:
                            protocol_error = f"unreadable message from the child: {exc}"
                            continue
                        if msg.type == "progress" and msg.stage:
                            stages.append(msg.stage)
                            if progress is not None:
                                progress(msg.stage)
                        elif msg.type in ("result", "error"):
                            final = msg
                else:
                    time.sleep(min(poll_interval_s, 0.05))
                pid, st, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    status = st
                    proc.returncode = os.waitstatus_to_exitcode(st)
                    peak_hwm = _with_maxrss(peak_hwm, rusage, parent_rss)
                    # Drain whatever the child wrote before exiting.
                    if not eof:
                        while True:
                            chunk = os.read(read_fd, 1 << 16)
                            if not chunk:
                                break
                            buf += chunk
                        for line in buf.split(b"\n"):
                            if line.strip():
                                try:
                                    msg = ChildMessage.model_validate_json(line)
                                except ValidationError as exc:
                                    protocol_error = f"unreadable message from the child: {exc}"
                                    continue
                                if msg.type in ("result", "error"):
                                    final = msg
                                elif msg.stage:
                                    stages.append(msg.stage)
                    break
                if time.monotonic() - start > time_limit_s:
                    _kill_group(proc)
                    _pid, st, rusage = os.wait4(proc.pid, 0)
                    proc.returncode = os.waitstatus_to_exitcode(st)
                    peak_hwm = _with_maxrss(peak_hwm, rusage, parent_rss)
                    elapsed = time.monotonic() - start
                    return fail(
                        "timeout",
                        f"timed out: still running after {elapsed:.1f} s "
                        f"(time limit {time_limit_s:g} s), so it was killed"
                        + (f" during '{stages[-1]}'" if stages else "")
                        + f"; peak memory so far {_fmt_mb(peak_hwm / MIB if peak_hwm else None)}",
                        output_tail=_tail(out_path),
                    )
        finally:
            sel.close()
            # Kill stray grandchildren the child may have left in its session.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

        elapsed = time.monotonic() - start
        peak_mb = peak_hwm / MIB if peak_hwm else None
        if final is not None and final.peak_rss_bytes:
            peak_hwm = max(peak_hwm, final.peak_rss_bytes)
            peak_mb = peak_hwm / MIB
        code = proc.returncode if status is not None else None

        if final is not None and final.type == "result":
            try:
                value = result_model.model_validate(final.value or {})
            except ValidationError as exc:
                return fail("protocol", f"the measuring process returned an invalid result: {exc}")
            return Isolated[R](
                ok=True, value=value, elapsed_s=elapsed, peak_rss_mb=peak_mb, stages=stages
            )
        if final is not None and final.type == "error":
            what = f"{final.exc_type}: {final.exc_message}".rstrip(": ")
            where = f" at {final.traceback_last}" if final.traceback_last else ""
            ran = f"after {elapsed:.1f} s; peak memory {_fmt_mb(peak_mb)}"
            if final.memory:
                cap = f" (memory cap {memory_limit_mb} MB)" if memory_limit_mb is not None else ""
                message = f"ran out of memory{cap}: {what}{where}; {ran}"
                kind: ErrorKind = "memory"
            else:
                message = f"raised {what}{where}; {ran}"
                kind = "exception"
            return fail(
                kind,
                message,
                exc_type=final.exc_type,
                exc_message=final.exc_message,
                traceback_last=final.traceback_last,
                traceback=final.traceback,
                output_tail=_tail(out_path),
            )
        tail = _tail(out_path)
        ran = f"after {elapsed:.1f} s; peak memory {_fmt_mb(peak_mb)}"
        if code is not None and code < 0:
            return fail(
                "signal",
                f"the measuring process {_signal_message(-code)} {ran}",
                signal=_signal_name(-code),
                exit_code=code,
                output_tail=tail,
            )
        if protocol_error is not None:
            return fail("protocol", f"{protocol_error} ({ran})", exit_code=code, output_tail=tail)
        last = f"; last output: {tail.splitlines()[-1]}" if tail else ""
        return fail(
            "exit",
            f"the measuring process exited with code {code} without a result {ran}{last}",
            exit_code=code,
            output_tail=tail,
        )
    except KeyboardInterrupt:
        if proc is not None and proc.returncode is None:
            _kill_group(proc)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
        raise
    except Exception as exc:  # never crash mcval because of a child
        if proc is not None and proc.returncode is None:
            _kill_group(proc)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
        return fail("launch", f"measuring process failed to run: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(OSError):
            os.close(read_fd)
        out_file.close()
        with contextlib.suppress(OSError):
            out_path.unlink()
