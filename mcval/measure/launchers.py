"""How a measuring child is started, and what it may see.

Three launchers, one interface (``Launcher.start`` → a ``ChildHandle`` the supervisor waits
on), the idea of optimum-benchmark's launchers:

- ``ServerLauncher`` (what mcval runs): a CPU child forked from the run's preloaded fork
  server, a CUDA child exec'd from a bare one (forkserver.py: exact ``wait4`` peak); where
  no server can run, a spawned ``python -I``.
- ``LocalForkLauncher``: the child is a fork of the calling process itself, so whatever
  that process imported or patched is in the child. Tests use it to put a model that hangs,
  is OOM-killed or raises behind the real loading API (``monkeypatch`` on ``mcval.models``
  and ``mcval.tasks``) while keeping a real process to kill; production code carries no
  hook for them. Its peak RSS starts at the caller's, so only the child's own windows
  (which reset the kernel mark) are exact.

What a child may see is decided here too: an allow-listed environment (never a GitHub or
Hugging Face token unless the policy asks for the HF one, for gated models) and a fresh,
empty working directory, so nothing lying where mcval was started is read or imported.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from mcval.measure import forkserver
from mcval.measure.forkserver import ChildExit, ForkedChild, kill_session, python_command
from mcval.measure.memory import read_status

LauncherName = Literal["fork", "exec", "spawn", "local-fork"]

CHILD_ENV_NAMES = frozenset(
    {
        # the system: where programs, libraries, certificates and temporary files are
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
        "LD_LIBRARY_PATH", "VIRTUAL_ENV", "CONDA_PREFIX",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
        # Hugging Face and torch: caches, offline switches, the hub's address
        "HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_ASSETS_CACHE", "HF_XET_CACHE",
        "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT",
        "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT",
        "HF_HUB_ENABLE_HF_TRANSFER", "TORCH_HOME", "XDG_CACHE_HOME",
        "PYTORCH_CUDA_ALLOC_CONF", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
    }
)  # fmt: skip
"""Variables a measuring child inherits; everything else (the workflow's token, cloud keys,
the runner's own variables) stays in mcval's process."""
CHILD_ENV_PREFIXES = ("LC_", "CUDA_")
HF_TOKEN_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")


def child_env(
    *,
    hide_cuda: bool,
    threads: int | None,
    extra: Mapping[str, str] | None = None,
    hf_token: bool = False,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of a measuring child (set before its interpreter starts): the allow-list
    from ``source`` (``os.environ``), the thread and CUDA settings, then ``extra``.

    Without ``hf_token`` the child gets no token and cannot read the one a ``huggingface-cli
    login`` stored under ``HF_HOME`` (``HF_TOKEN_PATH`` points nowhere, implicit tokens are
    off): a submission's model code path never sees the runner's credentials.
    """
    environ = os.environ if source is None else source
    env = {
        name: value
        for name, value in environ.items()
        if name in CHILD_ENV_NAMES or name.startswith(CHILD_ENV_PREFIXES)
    }
    if hf_token:
        env.update({name: environ[name] for name in HF_TOKEN_NAMES if name in environ})
    else:
        env["HF_TOKEN_PATH"] = os.devnull
        env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
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


@dataclass(frozen=True)
class Launch:
    """One child to start: its descriptors, environment and working directory."""

    request_fd: int
    output_fd: int
    result_fd: int
    env: Mapping[str, str]
    cwd: str
    hide_cuda: bool
    preload: Sequence[str] = field(default_factory=tuple)
    preload_server: bool = False


class ChildHandle(Protocol):
    """What the supervisor needs of a running child."""

    pid: int
    launcher: LauncherName

    def fileno(self) -> int | None: ...
    def poll(self) -> ChildExit | None: ...
    def kill(self) -> None: ...
    def wait(self) -> ChildExit: ...
    def sample_peak(self) -> int: ...


class Launcher(Protocol):
    def start(self, launch: Launch) -> ChildHandle: ...


class _WaitedChild:
    """A direct child of this process, reaped with ``wait4``."""

    launcher: LauncherName

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ended: ChildExit | None = None
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(pid)

    def fileno(self) -> int | None:
        return self._pidfd

    def own_maxrss(self, maxrss_bytes: int) -> int | None:
        return None

    def _exit(self, status: int, usage: Any) -> ChildExit:
        self.ended = ChildExit(status=status, maxrss_bytes=self.own_maxrss(usage.ru_maxrss * 1024))
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return self.ended

    def poll(self) -> ChildExit | None:
        if self.ended is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                return self._exit(status, usage)
        return self.ended

    def kill(self) -> None:
        kill_session(self.pid)

    def wait(self) -> ChildExit:
        if self.ended is None:
            _pid, status, usage = os.wait4(self.pid, 0)
            return self._exit(status, usage)
        return self.ended

    def sample_peak(self) -> int:
        return 0


class SpawnedChild(_WaitedChild):
    """A child exec'd from this process. Its ``ru_maxrss`` starts at this process's own
    mark (kept across exec), so it counts only when clearly above that mark; otherwise the
    peak comes from the child's own report or from sampling it while it runs."""

    launcher: LauncherName = "spawn"

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self._parent_mark = read_status().get("VmHWM") or 0

    def own_maxrss(self, maxrss_bytes: int) -> int | None:
        return maxrss_bytes if maxrss_bytes > self._parent_mark * 1.05 else None

    def sample_peak(self) -> int:
        """The running child's peak-RSS mark, once it runs the child program (between
        fork and exec it is still a copy of this process, whose mark is not its own)."""
        try:
            if b"mcval.measure.child" not in Path(f"/proc/{self.pid}/cmdline").read_bytes():
                return 0
        except OSError:
            return 0
        return read_status(self.pid).get("VmHWM") or 0


class LocalForkedChild(_WaitedChild):
    """A fork of this process: its peak mark starts at this process's, so ``wait4``'s is not
    its own; the samples are, once the child has reset the mark (a measurement does)."""

    launcher: LauncherName = "local-fork"

    def sample_peak(self) -> int:
        return read_status(self.pid).get("VmHWM") or 0


def spawn(launch: Launch) -> SpawnedChild:
    """A fresh ``python -I`` running the child entry point (no fork server here)."""
    proc = subprocess.Popen(
        python_command("mcval.measure.child", f"mcval.measure.child.main({launch.result_fd})"),
        stdin=launch.request_fd,
        stdout=launch.output_fd,
        stderr=subprocess.STDOUT,
        env=dict(launch.env),
        cwd=launch.cwd,
        pass_fds=(launch.result_fd,),
        start_new_session=True,
    )
    return SpawnedChild(proc.pid)


class ServerLauncher:
    """What mcval runs: forked from the preloaded server (CPU) or exec'd from a bare one
    (CUDA, or when asked); spawned where no server can run."""

    def start(self, launch: Launch) -> ChildHandle:
        if forkserver.supported():
            preloaded = launch.preload_server and launch.hide_cuda
            with contextlib.suppress(forkserver.ForkServerError):
                server = forkserver.shared_server(
                    launch.preload if preloaded else (),
                    child_env(hide_cuda=True, threads=None) if preloaded else {},
                )
                child: ForkedChild = server.fork(
                    request_fd=launch.request_fd,
                    output_fd=launch.output_fd,
                    result_fd=launch.result_fd,
                    env=launch.env,
                    cwd=launch.cwd,
                    exec_child=not preloaded,
                )
                return child
        return spawn(launch)


class LocalForkLauncher:
    """Fork this process itself (see the module docstring: tests substitute the loading
    API this way). Linux/macOS only; CUDA must not have been initialised here."""

    def start(self, launch: Launch) -> ChildHandle:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return LocalForkedChild(pid)
        code = 3
        try:
            os.setsid()
            os.dup2(launch.request_fd, 0)
            os.dup2(launch.output_fd, 1)
            os.dup2(launch.output_fd, 2)
            os.chdir(launch.cwd)
            os.environ.clear()
            os.environ.update(launch.env)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            from mcval.measure.child import run_from_stdin

            code = run_from_stdin(launch.result_fd)
        except BaseException:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
