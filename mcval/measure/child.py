"""Entry point of a measuring child, spawned or forked by the fork server (see supervisor.py).

Reads a ``ChildRequest`` from stdin, imports ``preload`` modules, applies the memory cap,
runs the target and writes JSON lines (progress, then one result or error) to the result
pipe; the result carries the process's lifetime peak RSS. Exits with ``os._exit`` so that
library threads or atexit hooks cannot hang it.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from typing import Any, BinaryIO


def _is_memory_error(exc: BaseException) -> bool:
    from mcval.measure.protocol import MEMORY_PHRASES

    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    if name in ("OutOfMemoryError", "OutOfResources"):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(p in text for p in MEMORY_PHRASES)


def _last_frame(exc: BaseException) -> str | None:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    f = frames[-1]
    return f"{f.filename}:{f.lineno} in {f.name}"


def _apply_memory_cap(limit_mb: int) -> None:
    """Cap further address-space growth at ``limit_mb`` over what is mapped now."""
    import resource

    from mcval.measure.memory import read_status

    vm = read_status().get("VmSize", 0)
    cap = vm + limit_mb * 2**20
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _lift_memory_cap() -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


def run_from_stdin(result_fd: int | None = None) -> int:
    """Read a ``ChildRequest`` from stdin, run it, write the messages; the exit code.

    ``result_fd`` overrides the request's (a forked child received the pipe from the fork
    server under another number than the spawning parent's).
    """
    start = time.monotonic()
    raw = b""
    while chunk := os.read(0, 1 << 16):
        raw += chunk
    from mcval.measure.memory import lifetime_peak_rss
    from mcval.measure.protocol import ChildMessage, ChildRequest

    request = ChildRequest.model_validate_json(raw)
    out: BinaryIO = os.fdopen(
        request.result_fd if result_fd is None else result_fd, "wb", buffering=0
    )

    def send(msg: ChildMessage) -> None:
        out.write(msg.model_dump_json(exclude_none=True).encode() + b"\n")

    def progress(stage: str) -> None:
        send(ChildMessage(type="progress", stage=stage))

    try:
        for mod in request.preload:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError:
                # A submodule another library version lacks; the first entries must exist.
                if "." not in mod:
                    raise
        module_name, _, func_name = request.target.partition(":")
        func = getattr(importlib.import_module(module_name), func_name)
        if request.memory_limit_mb is not None:
            _apply_memory_cap(request.memory_limit_mb)
        value: Any = func(request.payload, progress)
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json")
        send(
            ChildMessage(
                type="result",
                value=value,
                peak_rss_bytes=lifetime_peak_rss(),
                elapsed_s=time.monotonic() - start,
            )
        )
    except BaseException as exc:
        _lift_memory_cap()  # reporting must not fail for want of memory
        tb = traceback.format_exc()
        memory = _is_memory_error(exc)
        exc_message = str(exc)
        try:
            send(
                ChildMessage(
                    type="error",
                    exc_type=type(exc).__name__,
                    exc_message=exc_message[:2000],
                    traceback_last=_last_frame(exc),
                    traceback=tb[-8000:],
                    memory=memory,
                    peak_rss_bytes=lifetime_peak_rss(),
                    elapsed_s=time.monotonic() - start,
                )
            )
        except BaseException:
            return 3
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def main(result_fd: int | None = None) -> None:
    """Entry point of an exec'd child (see supervisor.py); exits without atexit hooks."""
    os._exit(run_from_stdin(result_fd))


if __name__ == "__main__":
    main()
