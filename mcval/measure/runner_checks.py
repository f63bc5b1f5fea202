"""What ``mcval doctor`` checks on a runner before a maintainer opens the gates.

Each check says what it found in one line and how serious it is: ``fail`` for anything
that would make published figures wrong (peak memory misread, a hung child not killed, a
token visible to the submission's code, no disk for one model, no GPU where one is
required), ``warn`` for what makes them noisier or the runner less safe (frequency
scaling, a shared model cache, a busy machine), ``info`` for the facts a maintainer wants
to see. The measuring machinery is checked by running its own probes (probes.py) through
the same launcher a measurement uses, so this process never imports torch.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from mcval.measure.environment import package_version
from mcval.measure.latency import cpu_busy_s, others_share
from mcval.measure.launchers import HF_TOKEN_NAMES
from mcval.measure.probes import (
    TARGET,
    AllocateReport,
    DescribeReport,
    DevicesReport,
    MisbehaveReport,
)
from mcval.measure.supervisor import run_isolated
from mcval.policy import Policy

Status = Literal["ok", "info", "warn", "fail"]
RUNTIMES = (
    "transformers", "accelerate", "safetensors", "gguf", "bitsandbytes",
    "onnxruntime", "openvino", "llama-cpp-python",
)  # fmt: skip
PROBE_MB = 256
CREDENTIAL = re.compile(
    r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|API_?KEY|ACCESS_KEY|PRIVATE_KEY)(_|$)", re.I
)


class Check(BaseModel):
    name: str
    status: Status
    detail: str


def check_python() -> Check:
    return Check(
        name="python",
        status="info",
        detail=f"{platform.python_version()} at {sys.executable}; mcval {package_version('mcval')}",
    )


def check_torch_and_gpu(require_gpu: bool) -> list[Check]:
    """torch, its CUDA build and the GPUs, as a CUDA measuring child sees them."""
    out = run_isolated(f"{TARGET}:devices", {}, DevicesReport, time_limit_s=300)
    if out.value is None:
        why = out.error.message if out.error else "no answer"
        return [Check(name="torch", status="fail", detail=f"a child could not import it: {why}")]
    seen = out.value
    torch_line = Check(
        name="torch",
        status="ok",
        detail=f"{seen.torch_version}, built for CUDA {seen.cuda_build or '(none: CPU build)'}",
    )
    if not seen.gpus:
        return [
            torch_line,
            Check(
                name="gpu",
                status="fail" if require_gpu else "info",
                detail="no GPU visible to the measuring child"
                + (" (--require-gpu)" if require_gpu else ": CPU figures only"),
            ),
        ]
    gpus = [
        Check(
            name=f"gpu {gpu.index}",
            status="ok",
            detail=f"{gpu.name}: {gpu.free_mb / 1024:.1f} of {gpu.total_mb / 1024:.1f} GiB free",
        )
        for gpu in seen.gpus
    ]
    return [torch_line, *gpus]


def check_runtimes() -> Check:
    found = [f"{dist} {package_version(dist)}" for dist in RUNTIMES if package_version(dist)]
    missing = [dist for dist in RUNTIMES if not package_version(dist)]
    detail = ", ".join(found) + (f"; not installed: {', '.join(missing)}" if missing else "")
    return Check(name="runtimes", status="info", detail=detail)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(policy: Policy) -> list[Check]:
    """Room for the largest model the policy lets a submission download, in the caches."""
    from huggingface_hub import constants

    need_gb = policy.measure.max_download_gb
    checks = []
    places = {"model cache": Path(constants.HF_HUB_CACHE)}
    places["dataset cache"] = Path(os.environ.get("HF_DATASETS_CACHE") or constants.HF_HOME)
    for label, place in places.items():
        free_gb = shutil.disk_usage(_existing(place)).free / 2**30
        status: Status = "ok" if free_gb >= 2 * need_gb else "warn"
        if free_gb < need_gb:
            status = "fail"
        checks.append(
            Check(
                name=label,
                status=status,
                detail=f"{place}: {free_gb:.1f} GiB free (max_download_gb = {need_gb:g})",
            )
        )
    return checks


def check_child_sees(policy: Policy) -> list[Check]:
    """No credential in the measuring child's environment; a fresh, empty working directory."""
    out = run_isolated(
        f"{TARGET}:describe",
        {"importable": ["mcval"]},
        DescribeReport,
        time_limit_s=120,
        hf_token=policy.measure.hf_token,
    )
    if out.value is None:
        why = out.error.message if out.error else "no answer"
        return [Check(name="child environment", status="fail", detail=f"probe failed: {why}")]
    seen = out.value
    allowed = set(HF_TOKEN_NAMES) if policy.measure.hf_token else set()
    ours = {"HF_TOKEN_PATH", "HF_HUB_DISABLE_IMPLICIT_TOKEN"}  # set by mcval to keep tokens out
    leaked = [n for n in seen.env_names if CREDENTIAL.search(n) and n not in allowed | ours]
    tokens = [n for n in seen.env_names if n in allowed - ours]
    env_check = Check(
        name="child environment",
        status="fail" if leaked else "ok",
        detail=(
            f"credentials visible to the measuring child: {', '.join(leaked)}"
            if leaked
            else f"{len(seen.env_names)} variables, tokens visible: "
            + (", ".join(tokens) + " ([measure] hf_token = true)" if tokens else "none")
        ),
    )
    fresh = not seen.cwd_entries and not Path(seen.cwd).exists()
    cwd_check = Check(
        name="child directory",
        status="ok" if fresh else "fail",
        detail=f"a fresh empty directory, removed afterwards ({seen.cwd})"
        if fresh
        else f"{seen.cwd} holds {seen.cwd_entries[:5]} or outlived the child",
    )
    return [env_check, cwd_check]


def check_peak_memory() -> Check:
    """A known allocation must read back within 5 % in the child and in the parent."""
    out = run_isolated(
        f"{TARGET}:allocate",
        {"inference_mb": PROBE_MB, "hold": False},
        AllocateReport,
        time_limit_s=120,
        hide_cuda=True,
    )
    if out.value is None or out.peak_rss_mb is None:
        why = out.error.message if out.error else "no peak from the parent"
        return Check(name="peak memory", status="fail", detail=why)
    inside = out.value.stats.ram_mb
    outside = out.peak_rss_mb - out.value.rss_before_mb
    good = abs(inside / PROBE_MB - 1) <= 0.05 and abs(outside / PROBE_MB - 1) <= 0.05
    return Check(
        name="peak memory",
        status="ok" if good else "fail",
        detail=f"{PROBE_MB} MiB allocated, read as {inside:.1f} MiB in the child "
        f"({out.value.stats.method}) and {outside:.1f} MiB by the parent ({out.launcher})",
    )


def check_time_limit() -> Check:
    """A hung child is killed at its limit and named as such."""
    started = time.monotonic()
    out = run_isolated(
        f"{TARGET}:misbehave", {"how": "sleep", "seconds": 60}, MisbehaveReport, time_limit_s=2
    )
    took = time.monotonic() - started
    killed = out.error is not None and out.error.kind == "timeout" and took < 10
    return Check(
        name="time limit",
        status="ok" if killed else "fail",
        detail=f"a hung child was killed after {took:.1f} s (limit 2 s)"
        if killed
        else f"a hung child was not killed in time: {out.error or out.value}",
    )


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def check_clock() -> list[Check]:
    """Frequency scaling and the clock source decide how much latency figures wander."""
    governors = {
        g
        for cpu in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*"))
        if (g := _read(f"{cpu}/cpufreq/scaling_governor"))
    }
    if not governors:
        governor = Check(name="cpu governor", status="info", detail="not readable here")
    else:
        steady = governors == {"performance"}
        governor = Check(
            name="cpu governor",
            status="ok" if steady else "warn",
            detail=", ".join(sorted(governors))
            + ("" if steady else ": latency varies with the clock; set 'performance'"),
        )
    source = _read("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    resolution = time.get_clock_info("perf_counter").resolution
    clock = Check(
        name="clock",
        status="info" if source in (None, "tsc") else "warn",
        detail=f"source {source or 'not readable'}, perf_counter resolution {resolution:g} s",
    )
    return [governor, clock]


def check_load(policy: Policy, window_s: float = 1.0) -> Check:
    """Other processes' share of the CPUs right now: above the protocol's limit, timed
    windows would be retried and may end unmeasured."""
    before = cpu_busy_s()
    started = time.monotonic()
    time.sleep(window_s)
    share = others_share(before, cpu_busy_s(), time.monotonic() - started)
    if share is None:
        return Check(name="cpu load", status="info", detail="/proc/stat not readable")
    limit = policy.measure.max_other_load
    return Check(
        name="cpu load",
        status="ok" if share <= limit else "warn",
        detail=f"other processes use {share:.0%} of the CPUs (max_other_load {limit:.0%}); "
        f"{os.cpu_count()} logical CPUs",
    )


def run_checks(policy: Policy, *, require_gpu: bool = False) -> list[Check]:
    """Every check, in the order a maintainer reads them."""
    steps: list[Callable[[], Check | list[Check]]] = [
        check_python,
        lambda: check_torch_and_gpu(require_gpu),
        check_runtimes,
        lambda: check_disk(policy),
        lambda: check_child_sees(policy),
        check_peak_memory,
        check_time_limit,
        check_clock,
        lambda: check_load(policy),
    ]
    checks: list[Check] = []
    for step in steps:
        found = step()
        checks.extend(found if isinstance(found, list) else [found])
    return checks
