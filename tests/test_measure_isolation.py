"""Isolation: each way a child can go wrong gives its own, exact error text.

The children run the probes of ``mcval.measure.probes`` (the ones ``mcval doctor`` runs
on a runner) through the real launcher, each asked to fail in one way.
"""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import pytest

from mcval.measure.probes import TARGET, MisbehaveReport
from mcval.measure.supervisor import run_isolated

PROBE_LINE = r".*mcval/measure/probes\.py:\d+ in misbehave"


def run(how: str, target: str = "misbehave", **kw: Any) -> Any:
    payload = {"how": how, **kw.pop("payload", {})}
    kw.setdefault("time_limit_s", 60)
    return run_isolated(f"{TARGET}:{target}", payload, MisbehaveReport, **kw)


def test_ok_result_progress_and_child_environment() -> None:
    stages: list[str] = []
    out = run("ok", hide_cuda=True, threads=3, progress=stages.append)
    assert out.ok and out.error is None
    assert out.value is not None
    assert out.value.env == {
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "3",
        "MKL_NUM_THREADS": "3",
        "TOKENIZERS_PARALLELISM": "false",
    }
    assert stages == ["working", "almost done"] == out.stages
    assert out.peak_rss_mb is not None and 5 < out.peak_rss_mb < 500


def test_timeout_kills_the_child_and_says_so() -> None:
    t0 = time.monotonic()
    # 3 s: room for the child's start-up on a busy machine, so it is killed while sleeping.
    out = run("sleep", payload={"seconds": 30}, time_limit_s=3.0)
    assert time.monotonic() - t0 < 10
    err = out.error
    assert not out.ok and err is not None and err.kind == "timeout"
    assert re.fullmatch(
        r"timed out: still running after 3\.\d s \(time limit 3 s\), so it was killed during "
        r"'sleeping'; peak memory so far \d+ MB",
        err.message,
    ), err.message
    assert 3.0 <= err.elapsed_s < 6
    assert err.stage == "sleeping"


MESSAGE = "the checkpoint has no weights named 'classifier.weight'"


def test_exception_reports_type_message_and_line() -> None:
    out = run("raise", payload={"message": MESSAGE})
    err = out.error
    assert err is not None and err.kind == "exception"
    assert err.exc_type == "ValueError"
    assert err.exc_message == MESSAGE
    assert err.traceback_last is not None
    assert re.fullmatch(PROBE_LINE, err.traceback_last)
    assert re.fullmatch(
        rf"raised ValueError: {re.escape(MESSAGE)} at {PROBE_LINE}; after \d+\.\d s; peak "
        r"memory \d+ MB",
        err.message,
    ), err.message
    assert "Traceback (most recent call last)" in (err.traceback or "")


def test_allocation_past_memory_cap_is_a_memory_error() -> None:
    out = run("hog", payload={"mb": 2048}, memory_limit_mb=256)
    err = out.error
    assert err is not None and err.kind == "memory"
    assert err.memory_limit_mb == 256
    assert re.fullmatch(
        rf"ran out of memory \(memory cap 256 MB\): MemoryError at {PROBE_LINE}; after "
        r"\d+\.\d s; peak memory \d+ MB",
        err.message,
    ), err.message
    # Under the cap the same code succeeds.
    ok = run("hog", payload={"mb": 64}, memory_limit_mb=256)
    assert ok.ok and ok.value is not None and ok.value.allocated_bytes == 64 * 2**20


@pytest.mark.slow
def test_torch_allocation_past_memory_cap_is_a_memory_error() -> None:
    out = run("torch-hog", payload={"mb": 2048}, memory_limit_mb=300, preload=["torch"])
    err = out.error
    assert err is not None and err.kind == "memory", out
    assert err.exc_type == "OutOfMemoryError" or "can't allocate memory" in err.message


def test_sigkill_reads_as_likely_oom_with_peak_memory() -> None:
    out = run("signal", payload={"signal": signal.SIGKILL, "mb": 150, "seconds": 2.0})
    err = out.error
    assert err is not None and err.kind == "signal"
    assert err.signal == "SIGKILL" and err.exit_code == -9
    assert re.fullmatch(
        r"the measuring process was killed by SIGKILL \(most likely the out-of-memory killer\) "
        r"after \d+\.\d s; peak memory \d+ MB",
        err.message,
    ), err.message
    assert err.peak_rss_mb is not None and err.peak_rss_mb >= 150


def test_segfault_is_named() -> None:
    out = run("signal", payload={"signal": signal.SIGSEGV})
    err = out.error
    assert err is not None and err.kind == "signal" and err.signal == "SIGSEGV"
    assert err.message.startswith(
        "the measuring process crashed with SIGSEGV (segmentation fault) after "
    )


def test_exit_without_result_quotes_the_output() -> None:
    out = run("exit", payload={"message": "native library: fatal configuration problem"})
    err = out.error
    assert err is not None and err.kind == "exit" and err.exit_code == 7
    assert re.fullmatch(
        r"the measuring process exited with code 7 without a result after \d+\.\d s; peak "
        r"memory \d+ MB; last output: native library: fatal configuration problem",
        err.message,
    ), err.message


def test_invalid_result_is_a_protocol_error() -> None:
    out = run("bad-result")
    err = out.error
    assert err is not None and err.kind == "protocol"
    assert err.message.startswith("the measuring process returned an invalid result: ")
    assert "allocated_bytes" in err.message


def test_unknown_target_is_an_exception_not_a_crash() -> None:
    out = run("ok", target="no_such_function")
    err = out.error
    assert err is not None and err.kind == "exception"
    assert err.exc_type == "AttributeError"
    assert "no_such_function" in (err.exc_message or "")
