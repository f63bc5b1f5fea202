"""A preloaded server that forks the CPU measuring children of one mcval run.

Why: a fresh interpreter per measurement spends seconds importing torch and transformers
before the model's own work starts. The server imports them once; every measurement still
runs in a process of its own (forked from the server, so nothing of an earlier measurement
is in it), in its own session, under its own limits, killed whole when it overruns. Forking
from a small server instead of exec'ing from mcval's own process also makes the kernel's
accounting exact: a forked child's peak-RSS mark starts from its own pages, so ``ru_maxrss``
from ``wait4`` is its peak RSS, whatever its lifetime (an exec'd child inherits its parent's
mark through exec, which is why the spawning path cannot trust it).

The server never initialises CUDA or a thread pool before it forks: it only imports, with
CUDA hidden, and serves CPU measurements; CUDA measurements are spawned (see supervisor.py).

Protocol, over an ``AF_UNIX``/``SOCK_SEQPACKET`` pair (one JSON message each way): the
client sends ``{"env": ..., "cwd": ...}`` with three descriptors (the request, read by the
child as its stdin; the output file, its stdout and stderr; the result pipe's write end);
the server answers ``{"pid": N}`` after the fork and ``{"pid": N, "status": S, "maxrss":
bytes}`` once it has reaped the child. It exits when its socket closes, killing a child
that still runs.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

_MAX_MESSAGE = 1 << 20
READY_TIMEOUT_S = 600.0
"""Importing torch and transformers on a loaded 2-core machine can take a minute."""


class ChildExit(BaseModel):
    """How a child ended: its raw wait status and, where exact, its peak RSS."""

    status: int
    maxrss_bytes: int | None = None

    @property
    def exit_code(self) -> int:
        """``returncode`` convention: negative for a signal."""
        return os.waitstatus_to_exitcode(self.status)


def supported() -> bool:
    """Whether this platform can fork children from a server (Linux: fd passing, fork)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def kill_session(pid: int) -> None:
    """Kill a child and everything it started (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def package_parent() -> str:
    """Directory containing the ``mcval`` package, so children import this same code."""
    import mcval

    return str(Path(mcval.__file__).resolve().parent.parent)


def python_command(module: str, call: str) -> list[str]:
    """``python -I`` running ``module.call``: isolated mode ignores ``PYTHON*`` variables,
    the user's site and the working directory, so only this mcval (and no ``torch.py``
    lying in the directory mcval runs from) is imported."""
    code = f"import sys; sys.path.insert(0, {package_parent()!r}); import {module}; {call}"
    return [sys.executable, "-I", "-c", code]


# --- server side --------------------------------------------------------------------------


def _send(sock: socket.socket, message: Mapping[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def _start_child(message: dict[str, Any], fds: list[int], server: socket.socket) -> int:
    """Fork one measuring child; in the child, never return."""
    stdin_fd, out_fd, result_fd = fds
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        os.setsid()
        server.close()
        os.dup2(stdin_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(stdin_fd)
        os.close(out_fd)
        os.chdir(message["cwd"])
        if message.get("exec"):
            os.set_inheritable(result_fd, True)
            command = python_command(
                "mcval.measure.child", f"mcval.measure.child.main({result_fd})"
            )
            os.execve(command[0], command, message["env"])
        os.environ.clear()
        os.environ.update(message["env"])
        from mcval.measure.child import run_from_stdin

        code = run_from_stdin(result_fd)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
    os._exit(code)


def _reap(pid: int, server: socket.socket) -> ChildExit | None:
    """Wait for the child; None when the client went away first (the child is killed)."""
    pidfd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
    try:
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return ChildExit(status=status, maxrss_bytes=usage.ru_maxrss * 1024)
            watched = [server] + ([pidfd] if pidfd is not None else [])
            readable, _, _ = select.select(watched, [], [], 0.05 if pidfd is None else None)
            if server in readable and not server.recv(1, socket.MSG_PEEK):
                kill_session(pid)
                os.wait4(pid, 0)
                return None
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _import_all(modules: Sequence[str]) -> list[str]:
    """Import ``modules``; a missing submodule (another library version) is skipped, a
    missing top-level package is an error. Returns the skipped names."""
    import importlib

    skipped = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            if "." not in name:
                raise
            skipped.append(name)
    return skipped


def main(sock_fd: int) -> None:
    """Server entry point: preload, say ready, then fork one child per request."""
    server = socket.socket(fileno=sock_fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # mcval's Ctrl-C is the client's to handle
    hello = json.loads(server.recv(_MAX_MESSAGE))
    try:
        skipped = _import_all(hello["preload"])
    except BaseException as exc:
        _send(server, {"error": f"{type(exc).__name__}: {exc}"})
        return
    _send(server, {"ready": True, "skipped": skipped})
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(server, _MAX_MESSAGE, 3)
        except OSError:
            return
        if not data:
            return
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            _send(server, {"error": f"expected 3 descriptors, got {len(fds)}"})
            continue
        try:
            pid = _start_child(json.loads(data), fds, server)
        finally:
            for fd in fds:
                os.close(fd)
        _send(server, {"pid": pid})
        ended = _reap(pid, server)
        if ended is None:
            return
        _send(server, {"pid": pid, **ended.model_dump()})


# --- client side --------------------------------------------------------------------------


class ForkServerError(RuntimeError):
    """The server could not be started or stopped answering."""


class ForkedChild:
    """The client's handle on one forked child; ``fileno`` is readable when it has ended."""

    def __init__(self, server: ForkServer, pid: int, *, executed: bool) -> None:
        self._server = server
        self.pid = pid
        self.launcher: Literal["fork", "exec"] = "exec" if executed else "fork"
        self.ended: ChildExit | None = None

    def fileno(self) -> int:
        return self._server.fileno()

    def poll(self) -> ChildExit | None:
        """The exit, if the server has reported it (never blocks)."""
        if self.ended is None:
            self.ended = self._server.receive_exit(self.pid, block=False)
        return self.ended

    def kill(self) -> None:
        kill_session(self.pid)

    def wait(self) -> ChildExit:
        if self.ended is None:
            self.ended = self._server.receive_exit(self.pid, block=True)
        return self.ended

    def sample_peak(self) -> int:
        """Nothing to sample: ``wait4`` in the server gives the exact peak at the end."""
        return 0


class ForkServer:
    """Client of one server process; one child at a time (measurements run one by one)."""

    def __init__(self, preload: Sequence[str], env: Mapping[str, str]) -> None:
        self.preload = list(preload)
        self.env = dict(env)
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile(prefix="mcval-forkserver-")  # noqa: SIM115
        self._busy = threading.Lock()
        self.skipped: list[str] = []

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                python_command(
                    "mcval.measure.forkserver", f"mcval.measure.forkserver.main({theirs.fileno()})"
                ),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self.env,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._sock = ours
        _send(ours, {"preload": self.preload})
        ready, _, _ = select.select([ours], [], [], READY_TIMEOUT_S)
        reply = json.loads(ours.recv(_MAX_MESSAGE) or b"{}") if ready else {}
        if not reply.get("ready"):
            why = reply.get("error") or self._log_tail() or "no answer"
            self.close()
            raise ForkServerError(f"the measuring fork server did not start: {why}")
        self.skipped = list(reply.get("skipped", []))

    def _log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read()[-2000:].decode("utf-8", "replace").strip()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._sock is not None

    def fileno(self) -> int:
        assert self._sock is not None
        return self._sock.fileno()

    def fork(
        self,
        *,
        request_fd: int,
        output_fd: int,
        result_fd: int,
        env: Mapping[str, str],
        cwd: str,
        exec_child: bool = False,
    ) -> ForkedChild:
        """Start one child; the caller waits on the returned handle before the next.

        ``exec_child``: the forked process execs a fresh interpreter (a CUDA measurement, which
        must not inherit even the server's imports); its ``ru_maxrss`` stays exact, since
        the mark it keeps across exec is the small server's, not mcval's.
        """
        if not self.alive():
            self.close()
            self.start()
        assert self._sock is not None
        self._busy.acquire()
        try:
            message = json.dumps({"env": dict(env), "cwd": cwd, "exec": exec_child}).encode()
            socket.send_fds(self._sock, [message], [request_fd, output_fd, result_fd])
            reply = json.loads(self._sock.recv(_MAX_MESSAGE) or b"{}")
        except BaseException:
            self._busy.release()
            raise
        if "pid" not in reply:
            self._busy.release()
            raise ForkServerError(
                "the measuring fork server did not start a child: "
                + str(reply.get("error") or self._log_tail() or "it exited")
            )
        return ForkedChild(self, int(reply["pid"]), executed=exec_child)

    def receive_exit(self, pid: int, *, block: bool) -> ChildExit | None:
        assert self._sock is not None
        if not block and not select.select([self._sock], [], [], 0)[0]:
            return None
        data = self._sock.recv(_MAX_MESSAGE)
        self._busy.release()
        if not data:  # the server died with the child: read the child's end from nowhere
            raise ForkServerError("the measuring fork server exited while a child ran")
        reply = json.loads(data)
        if reply.get("pid") != pid:
            raise ForkServerError(f"the fork server reported on pid {reply.get('pid')}, not {pid}")
        return ChildExit(status=reply["status"], maxrss_bytes=reply.get("maxrss_bytes"))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_session(self._proc.pid)
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> ForkServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_shared: dict[bool, tuple[str, ForkServer]] = {}
"""The process's servers: one preloaded, one bare, each with the key it was started for."""
_shared_lock = threading.Lock()


def shared_server(preload: Sequence[str], env: Mapping[str, str]) -> ForkServer:
    """The process's server for this preload list and environment, started on first use.

    Keyed by the environment too: libraries read settings such as ``HF_HOME`` when they
    are imported, so a server started under another environment would serve stale ones
    and is replaced. The preloaded and the bare server live side by side.
    """
    key = hashlib.sha256(json.dumps([list(preload), sorted(env.items())]).encode()).hexdigest()
    slot = bool(preload)
    with _shared_lock:
        current = _shared.get(slot)
        if current is not None and current[0] == key and current[1].alive():
            return current[1]
        if current is not None:
            current[1].close()
        server = ForkServer(preload, env)
        server.start()
        _shared[slot] = (key, server)
        return server


@atexit.register
def _close_shared() -> None:
    for _key, server in _shared.values():
        server.close()
    _shared.clear()
