"""The fork server: exact peak memory from ``wait4`` whatever the child's lifetime, fast
forked children, isolation kept (own session, environment, no working-directory imports).

The ``child_*`` functions run inside measuring children (this file is imported there
through ``sys_path``), so they stay at module level and light.
"""

from __future__ import annotations

import importlib.util
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from mcval.measure import forkserver
from mcval.measure.memory import MIB, read_status
from mcval.measure.supervisor import ChildMessage, child_env, classify_failure, run_isolated

TESTS = str(Path(__file__).parent)
HERE = "test_measure_forkserver"
BUFFER_MB = 200

pytestmark = pytest.mark.skipif(not forkserver.supported(), reason="fork server needs Linux")


class Probe(BaseModel):
    rss_before_mb: float = 0
    hwm_mb: float = 0
    parent_pid: int = 0
    session: int = 0
    pid: int = 0
    env: dict[str, str | None] = {}
    probe_importable: bool = False
    cwd: str = ""


def child_allocate(payload: dict[str, Any], progress: Callable[[str], None]) -> Probe:
    before = read_status()["VmRSS"] / MIB
    block = bytearray(payload["mb"] * MIB)
    block[::4096] = b"\x01" * (len(block) // 4096)  # every page resident
    hwm = read_status()["VmHWM"] / MIB
    del block  # freed before the parent reads the peak: only the kernel's mark keeps it
    return Probe(rss_before_mb=before, hwm_mb=hwm, pid=os.getpid())


def child_exit_at_once(payload: dict[str, Any], progress: Callable[[str], None]) -> Probe:
    os._exit(7)


def child_describe(payload: dict[str, Any], progress: Callable[[str], None]) -> Probe:
    keys = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM", "MCVAL_PROBE")
    return Probe(
        parent_pid=os.getppid(),
        session=os.getsid(0),
        pid=os.getpid(),
        env={k: os.environ.get(k) for k in keys},
        probe_importable=importlib.util.find_spec("mcval_cwd_probe") is not None,
        cwd=os.getcwd(),
    )


def run(target: str, payload: dict[str, Any], **kw: Any) -> Any:
    kw.setdefault("time_limit_s", 120)
    return run_isolated(f"{HERE}:{target}", payload, Probe, sys_path=[TESTS], **kw)


@pytest.fixture(scope="module")
def big_parent() -> Any:
    """This process holds (and has held) far more than any child: an exec'd child would
    inherit that mark in its ``ru_maxrss``; a server's children must not."""
    block = bytearray(600 * MIB)
    block[::4096] = b"\x01" * (len(block) // 4096)
    yield block
    del block


@pytest.mark.parametrize("preloaded", [True, False], ids=["forked", "exec'd"])
def test_peak_of_a_known_buffer_is_the_childs_own_rusage(big_parent: Any, preloaded: bool) -> None:
    out = run("child_allocate", {"mb": BUFFER_MB}, hide_cuda=True, preload_server=preloaded)
    assert out.ok and out.value is not None, out.error
    assert out.launcher == ("fork" if preloaded else "exec")
    probe = out.value
    # The child's own kernel mark, read inside it, and the parent's figure (wait4) agree.
    assert out.peak_rss_mb == pytest.approx(probe.hwm_mb, rel=0.05)
    assert out.peak_rss_mb - probe.rss_before_mb == pytest.approx(BUFFER_MB, rel=0.05)
    assert out.peak_rss_mb < 600  # nothing of this 600+ MB parent


@pytest.mark.slow
@pytest.mark.parametrize("preloaded", [True, False], ids=["forked", "exec'd"])
def test_children_that_die_at_once_still_have_their_peak_50_of_50(preloaded: bool) -> None:
    peaks = []
    for _ in range(50):
        out = run("child_exit_at_once", {}, hide_cuda=True, preload_server=preloaded)
        assert out.error is not None and out.error.kind == "exit"
        assert out.error.exit_code == 7
        assert "peak memory unknown" not in out.error.message
        peaks.append(out.peak_rss_mb)
    assert all(p is not None and 5 < p < 500 for p in peaks), peaks


def test_forked_children_come_from_one_server_in_their_own_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mcval_cwd_probe.py").write_text("raise SystemExit('imported from the cwd')\n")
    monkeypatch.chdir(tmp_path)
    first = run("child_describe", {}, hide_cuda=True, threads=3, preload_server=True)
    second = run(
        "child_describe",
        {},
        hide_cuda=True,
        threads=1,
        preload_server=True,
        env={"MCVAL_PROBE": "per child"},
    )
    assert first.value is not None and second.value is not None, (first.error, second.error)
    a, b = first.value, second.value
    assert first.launcher == second.launcher == "fork"
    assert a.parent_pid == b.parent_pid != os.getpid()  # the same server forked both
    assert a.pid != b.pid and a.session == a.pid and b.session == b.pid
    assert a.env == {
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "3",
        "TOKENIZERS_PARALLELISM": "false",
        "MCVAL_PROBE": None,
    }
    assert b.env["OMP_NUM_THREADS"] == "1" and b.env["MCVAL_PROBE"] == "per child"
    # The working directory is the caller's, but nothing is imported from it.
    assert a.cwd == str(tmp_path) and not a.probe_importable


def test_exec_d_child_imports_nothing_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mcval_cwd_probe.py").write_text("raise SystemExit('imported from the cwd')\n")
    monkeypatch.chdir(tmp_path)
    out = run("child_describe", {}, hide_cuda=False)
    assert out.value is not None and out.launcher == "exec"
    assert out.value.cwd == str(tmp_path) and not out.value.probe_importable
    assert out.value.env["CUDA_VISIBLE_DEVICES"] == os.environ.get("CUDA_VISIBLE_DEVICES")


def test_server_exits_when_its_client_closes() -> None:
    server = forkserver.ForkServer([], child_env(hide_cuda=True, threads=None))
    server.start()
    assert server._proc is not None
    pid = server._proc.pid
    assert server.alive()
    server.close()
    assert not server.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_server_that_cannot_preload_says_why() -> None:
    server = forkserver.ForkServer(["mcval_no_such_package"], dict(os.environ))
    with pytest.raises(forkserver.ForkServerError, match="mcval_no_such_package"):
        server.start()


def test_classify_failure_words_each_way_to_fail_without_a_process() -> None:
    common: dict[str, Any] = {"elapsed_s": 2.04, "peak_mb": 812.4, "memory_limit_mb": 1024}
    oom = classify_failure(
        final=ChildMessage(type="error", exc_type="MemoryError", memory=True),
        protocol_error=None,
        exit_code=0,
        tail=None,
        **common,
    )
    assert (oom.kind, oom.message) == (
        "memory",
        "ran out of memory (memory cap 1024 MB): MemoryError; after 2.0 s; peak memory 812 MB",
    )
    killed = classify_failure(
        final=None, protocol_error=None, exit_code=-signal.SIGKILL, tail="x", **common
    )
    assert killed.kind == "signal" and killed.details["signal"] == "SIGKILL"
    assert killed.message == (
        "the measuring process was killed by SIGKILL (most likely the out-of-memory killer) "
        "after 2.0 s; peak memory 812 MB"
    )
    garbled = classify_failure(
        final=None,
        protocol_error="unreadable message from the child: x",
        exit_code=0,
        tail=None,
        **common,
    )
    assert garbled.kind == "protocol"
    assert garbled.message == (
        "unreadable message from the child: x (after 2.0 s; peak memory 812 MB)"
    )
    silent = classify_failure(
        final=None, protocol_error=None, exit_code=7, tail="a\nlast words", **common
    )
    assert silent.message == (
        "the measuring process exited with code 7 without a result after 2.0 s; peak memory "
        "812 MB; last output: last words"
    )
