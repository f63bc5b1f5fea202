"""Isolation: each way a child can go wrong gives its own, exact error text.

The ``child_*`` functions run inside ``python -m mcval.measure.child`` (this file is imported
there through ``sys_path``), so they must stay at module level and light.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from mcval.measure.supervisor import run_isolated

TESTS = str(Path(__file__).parent)
HERE = "test_measure_isolation"


class Value(BaseModel):
    x: int
    env: dict[str, str | None] = {}


def child_ok(payload: dict[str, Any], progress: Callable[[str], None]) -> Value:
    progress("working")
    progress("almost done")
    keys = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM")
    return Value(x=payload["n"] * 2, env={k: os.environ.get(k) for k in keys})


def child_sleep(payload: dict[str, Any], progress: Callable[[str], None]) -> Value:
    progress("sleeping")
    time.sleep(payload["seconds"])
    return Value(x=1)


def child_raise(payload: dict[str, Any], progress: Callable[[str], None]) -> Value:
    raise ValueError("the checkpoint has no weights named 'classifier.weight'")


def child_hog(payload: dict[str, Any], progress: Callable[[str], None]) -> Value:
    progress("allocating")
    block = bytearray(payload["mb"] * 2**20)
    return Value(x=len(block))


def child_torch_hog(payload: dict[str, Any], progress: Callable[[str], None]) -> Value:
    import torch

    t = torch.ones(payload["mb"] * 2**18)  # float32: 4 bytes each
    return Value(x=int(t.numel()))


def child_signal(payload: dict[str, Any], progress: Callable[[str], None]) -> Value:
    block = bytearray(payload.get("touch_mb", 0) * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    # Held for a few of the parent's polls, as a model's memory is before the OOM killer
    # strikes (the parent samples the child's peak; a dead child's own mark is gone).
    time.sleep(payload.get("hold_s", 0.0))
    os.kill(os.getpid(), payload["signal"])
    time.sleep(5)
    return Value(x=0)


def child_exit(payload: dict[str, Any], progress: Callable[[str], None]) -> Value:
    print("native library: fatal configuration problem", flush=True)
    os._exit(7)


def child_bad_result(payload: dict[str, Any], progress: Callable[[str], None]) -> dict:
    return {"x": "not a number"}


def run(target: str, payload: dict[str, Any], **kw: Any) -> Any:
    kw.setdefault("time_limit_s", 60)
    return run_isolated(f"{HERE}:{target}", payload, Value, sys_path=[TESTS], **kw)


def test_ok_result_progress_and_child_environment() -> None:
    stages: list[str] = []
    out = run("child_ok", {"n": 21}, hide_cuda=True, threads=3, progress=stages.append)
    assert out.ok and out.error is None
    assert out.value is not None and out.value.x == 42
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
    out = run("child_sleep", {"seconds": 30}, time_limit_s=3.0)
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


def test_exception_reports_type_message_and_line() -> None:
    out = run("child_raise", {})
    err = out.error
    assert err is not None and err.kind == "exception"
    assert err.exc_type == "ValueError"
    assert err.exc_message == "the checkpoint has no weights named 'classifier.weight'"
    assert err.traceback_last is not None
    assert re.fullmatch(r".*test_measure_isolation\.py:\d+ in child_raise", err.traceback_last)
    assert re.fullmatch(
        r"raised ValueError: the checkpoint has no weights named 'classifier\.weight' at "
        r".*test_measure_isolation\.py:\d+ in child_raise; after \d+\.\d s; peak memory \d+ MB",
        err.message,
    ), err.message
    assert "Traceback (most recent call last)" in (err.traceback or "")


def test_allocation_past_memory_cap_is_a_memory_error() -> None:
    out = run("child_hog", {"mb": 2048}, memory_limit_mb=256)
    err = out.error
    assert err is not None and err.kind == "memory"
    assert err.memory_limit_mb == 256
    assert re.fullmatch(
        r"ran out of memory \(memory cap 256 MB\): MemoryError at .*test_measure_isolation\.py:"
        r"\d+ in child_hog; after \d+\.\d s; peak memory \d+ MB",
        err.message,
    ), err.message
    # Under the cap the same code succeeds.
    ok = run("child_hog", {"mb": 64}, memory_limit_mb=256)
    assert ok.ok and ok.value is not None and ok.value.x == 64 * 2**20


@pytest.mark.slow
def test_torch_allocation_past_memory_cap_is_a_memory_error() -> None:
    out = run("child_torch_hog", {"mb": 2048}, memory_limit_mb=300, preload=["torch"])
    err = out.error
    assert err is not None and err.kind == "memory", out
    assert err.exc_type == "OutOfMemoryError" or "can't allocate memory" in err.message


def test_sigkill_reads_as_likely_oom_with_peak_memory() -> None:
    out = run("child_signal", {"signal": signal.SIGKILL, "touch_mb": 150, "hold_s": 2.0})
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
    out = run("child_signal", {"signal": signal.SIGSEGV})
    err = out.error
    assert err is not None and err.kind == "signal" and err.signal == "SIGSEGV"
    assert err.message.startswith(
        "the measuring process crashed with SIGSEGV (segmentation fault) after "
    )


def test_exit_without_result_quotes_the_output() -> None:
    out = run("child_exit", {})
    err = out.error
    assert err is not None and err.kind == "exit" and err.exit_code == 7
    assert re.fullmatch(
        r"the measuring process exited with code 7 without a result after \d+\.\d s; peak "
        r"memory \d+ MB; last output: native library: fatal configuration problem",
        err.message,
    ), err.message


def test_invalid_result_is_a_protocol_error() -> None:
    out = run("child_bad_result", {})
    err = out.error
    assert err is not None and err.kind == "protocol"
    assert err.message.startswith("the measuring process returned an invalid result: ")
    assert "x" in err.message


def test_unknown_target_is_an_exception_not_a_crash() -> None:
    out = run("no_such_function", {})
    err = out.error
    assert err is not None and err.kind == "exception"
    assert err.exc_type == "AttributeError"
    assert "no_such_function" in (err.exc_message or "")
