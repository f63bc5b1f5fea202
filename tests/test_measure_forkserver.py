"""The fork server: exact peak memory from ``wait4`` whatever the child's lifetime, fast
forked children, isolation kept (own session, allow-listed environment, a fresh working
directory, no working-directory imports). The children run ``mcval.measure.probes``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from mcval.measure import forkserver
from mcval.measure.launchers import child_env
from mcval.measure.memory import MIB
from mcval.measure.probes import TARGET, AllocateReport, DescribeReport, MisbehaveReport
from mcval.measure.supervisor import ChildMessage, classify_failure, run_isolated

BUFFER_MB = 200
SEEN = ["CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM", "MCVAL_PROBE"]

pytestmark = pytest.mark.skipif(not forkserver.supported(), reason="fork server needs Linux")


def run(probe: str, payload: dict[str, Any], result: type[BaseModel], **kw: Any) -> Any:
    kw.setdefault("time_limit_s", 120)
    return run_isolated(f"{TARGET}:{probe}", payload, result, **kw)


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
    out = run(
        "allocate",
        {"inference_mb": BUFFER_MB, "hold": False},
        AllocateReport,
        hide_cuda=True,
        preload_server=preloaded,
    )
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
        out = run(
            "misbehave",
            {"how": "exit", "code": 7},
            MisbehaveReport,
            hide_cuda=True,
            preload_server=preloaded,
        )
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
    asked = {"env": SEEN, "importable": ["mcval_cwd_probe"]}
    first = run("describe", asked, DescribeReport, hide_cuda=True, threads=3, preload_server=True)
    second = run(
        "describe",
        asked,
        DescribeReport,
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
    # A fresh, empty working directory of its own; nothing imported from the caller's.
    assert a.cwd != str(tmp_path) and a.cwd_entries == [] and a.cwd != b.cwd
    assert a.importable == {"mcval_cwd_probe": False}
    assert not Path(a.cwd).exists()  # removed once the child ended


def test_exec_d_child_imports_nothing_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mcval_cwd_probe.py").write_text("raise SystemExit('imported from the cwd')\n")
    monkeypatch.chdir(tmp_path)
    asked = {"env": ["CUDA_VISIBLE_DEVICES"], "importable": ["mcval_cwd_probe"]}
    out = run("describe", asked, DescribeReport, hide_cuda=False)
    assert out.value is not None and out.launcher == "exec"
    assert out.value.cwd != str(tmp_path) and out.value.importable == {"mcval_cwd_probe": False}
    assert out.value.env["CUDA_VISIBLE_DEVICES"] == os.environ.get("CUDA_VISIBLE_DEVICES")
    assert out.value.preloaded == []


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


def test_the_child_sees_no_token_and_only_allow_listed_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The audit's probe child saw GITHUB_TOKEN and HF_TOKEN: now neither, nor any variable
    outside the allow-list; the HF token only where the policy asks for gated models."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_secret")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws_secret")
    monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", "actions_secret")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    names = ["GITHUB_TOKEN", "HF_TOKEN", "HF_TOKEN_PATH", "HF_HOME", "PATH"]
    out = run("describe", {"env": names}, DescribeReport)
    assert out.value is not None, out.error
    seen = out.value.env
    assert seen["GITHUB_TOKEN"] is None and seen["HF_TOKEN"] is None
    assert seen["HF_TOKEN_PATH"] == os.devnull  # a stored `huggingface-cli login` is unread
    assert seen["HF_HOME"] == str(tmp_path / "hf") and seen["PATH"] == os.environ["PATH"]
    secrets = [n for n in out.value.env_names if n.startswith(("GITHUB_", "AWS_", "ACTIONS_"))]
    assert secrets == []
    gated = run("describe", {"env": names}, DescribeReport, hf_token=True)
    assert gated.value is not None, gated.error
    assert gated.value.env["HF_TOKEN"] == "hf_secret"
    assert gated.value.env["GITHUB_TOKEN"] is None


def test_child_env_is_an_allow_list() -> None:
    source = {"PATH": "/bin", "LC_ALL": "C", "CUDA_HOME": "/cuda", "GITHUB_TOKEN": "x", "X": "y"}
    env = child_env(hide_cuda=False, threads=2, source=source, extra={"MCVAL_PROBE": "1"})
    assert env == {
        "PATH": "/bin",
        "LC_ALL": "C",
        "CUDA_HOME": "/cuda",
        "HF_TOKEN_PATH": os.devnull,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
        "MCVAL_PROBE": "1",
    }
