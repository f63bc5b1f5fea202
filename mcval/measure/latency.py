"""Latency of one inference call: warm-up, then repeated timed calls, median as the figure.

Why this shape: a single ``time.time()`` around one call (what teams did) mixes in lazy
initialisation, allocator growth and noise. Here the first call is timed and kept apart,
further warm-up calls are discarded, and timed calls continue until both a minimum count and
a minimum duration are reached (capped by ``max_seconds``). The median is robust to the odd
scheduler hiccup; p10/p90 and the coefficient of variation show the spread.

Nothing else runs in the process while timing: no tracker thread, the garbage collector is
paused (as ``timeit`` does), and the caller fixes the thread count beforehand. On CUDA each
call is bracketed by CUDA events after a synchronisation, so asynchronous kernel launches
are not mistaken for finished work.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field


class LatencyStats(BaseModel):
    """Distribution of per-call times in milliseconds; ``median_ms`` is the reported figure."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    cv: float = Field(description="sample standard deviation / mean (0 for a single call)")
    count: int = Field(description="timed calls")
    total_s: float = Field(description="wall time of the timed loop")
    first_call_ms: float | None = Field(description="first (cold) call; None without warm-up")
    warmup_calls: int
    threads: int | None = Field(description="torch intra-op threads during timing")
    device: str
    stopped_by: Literal["target", "max_seconds"] = Field(
        description="'target' when min_calls and min_seconds were both reached"
    )
    timer: Literal["perf_counter", "cuda_event"]
    times_ms: list[float] = Field(default_factory=list, description="every timed call, in order")
    others_cpu_share: float | None = Field(
        default=None,
        description="share of the machine's CPU time used by other processes while timing "
        "(from /proc/stat minus this process's own CPU time); None where unreadable",
    )
    cpu_time_s: float | None = Field(
        default=None, description="this process's CPU time (user + system) over the timed loop"
    )
    cpu_utilization: float | None = Field(
        default=None,
        description="cpu_time_s / (total_s × threads) on CPU: near 1 when the process had its "
        "cores, well below 1 when other load starved it; None on CUDA",
    )
    load_before: float | None = Field(default=None, description="1-min load average before")
    load_after: float | None = Field(default=None, description="1-min load average after")
    attempts: int = Field(default=1, description="timed windows run (disturbed ones re-run)")
    unstable: bool = Field(
        default=False, description="every window was disturbed: the figure decides nothing"
    )
    unstable_reason: str | None = Field(default=None, description="why, in one sentence")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default 'linear' method), q in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of an empty sample")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within [0, 100], got {q}")
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def summarize(
    times_ms: Sequence[float],
    *,
    first_call_ms: float | None = None,
    warmup_calls: int = 0,
    threads: int | None = None,
    device: str = "cpu",
    total_s: float | None = None,
    stopped_by: Literal["target", "max_seconds"] = "target",
    timer: Literal["perf_counter", "cuda_event"] = "perf_counter",
) -> LatencyStats:
    """Statistics of a sample of per-call times (pure: tested on fixed numbers)."""
    if not times_ms:
        raise ValueError("no timed calls")
    ordered = sorted(times_ms)
    mean = statistics.fmean(ordered)
    sd = statistics.stdev(ordered) if len(ordered) > 1 else 0.0
    return LatencyStats(
        median_ms=statistics.median(ordered),
        p10_ms=percentile(ordered, 10),
        p90_ms=percentile(ordered, 90),
        mean_ms=mean,
        min_ms=ordered[0],
        max_ms=ordered[-1],
        cv=sd / mean if mean > 0 else 0.0,
        count=len(ordered),
        total_s=total_s if total_s is not None else sum(ordered) / 1000,
        first_call_ms=first_call_ms,
        warmup_calls=warmup_calls,
        threads=threads,
        device=device,
        stopped_by=stopped_by,
        timer=timer,
        times_ms=list(times_ms),
    )


def cpu_busy_s() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) right now."""
    import os
    import resource

    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal
    own = resource.getrusage(resource.RUSAGE_SELF)
    return busy, own.ru_utime + own.ru_stime


def others_share(
    before: tuple[float, float] | None, after: tuple[float, float] | None, wall_s: float
) -> float | None:
    """Fraction of all CPUs' time spent by other processes between two ``cpu_busy_s``."""
    import os

    if before is None or after is None or wall_s <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others) / (wall_s * (os.cpu_count() or 1))


def _cuda_timer(device: str) -> Callable[[Callable[[], Any]], float]:
    import torch

    dev = torch.device(device)
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)

    def timed(fn: Callable[[], Any]) -> float:
        torch.cuda.synchronize(dev)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))

    return timed


def _cpu_timer(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


class Stability(BaseModel):
    """When a timed window counts as disturbed, and what to do about it (the policy's)."""

    max_other_load: float = 0.10
    max_spread: float = 2.0
    attempts: int = 3
    pause_s: float = 2.0


def _load_average() -> float | None:
    import os

    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _own_cpu_s() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def disturbance(stats: LatencyStats, stability: Stability) -> str | None:
    """Why a timed window cannot be trusted, in one sentence; None when it can.

    The way pyperf judges a system: other processes' share of the CPU while timing (a
    2-thread call on 2 shared cores slows 3-11x, not 2x), then the spread of the calls.
    """
    busy = stats.others_cpu_share
    if busy is not None and busy > stability.max_other_load:
        used = (
            f"; this process got {stats.cpu_utilization:.0%} of its {stats.threads} threads' time"
            if stats.cpu_utilization is not None and stats.threads
            else ""
        )
        return (
            f"other processes used {busy:.0%} of this machine's CPU while the calls were "
            f"timed (limit {stability.max_other_load:.0%}){used}"
        )
    if stats.count >= 5 and stats.p10_ms > 0:
        spread = stats.p90_ms / stats.p10_ms
        if spread > stability.max_spread:
            return (
                f"the timed calls spread too widely (p90/p10 = {spread:.1f}, limit "
                f"{stability.max_spread:g})"
            )
    return None


def _timed_window(
    fn: Callable[[], Any],
    timed: Callable[[Callable[[], Any]], float],
    *,
    min_calls: int,
    min_seconds: float,
    max_seconds: float,
) -> tuple[list[float], float, Literal["target", "max_seconds"], dict[str, float | None]]:
    """One timed loop: the per-call times, its wall time, why it stopped, and the CPU and
    load readings around it."""
    times: list[float] = []
    stopped_by: Literal["target", "max_seconds"] = "target"
    load_before = _load_average()
    busy_before = cpu_busy_s()
    own_before = _own_cpu_s()
    loop_start = time.perf_counter()
    while True:
        times.append(timed(fn))
        elapsed = time.perf_counter() - loop_start
        if len(times) >= min_calls and elapsed >= min_seconds:
            break
        if elapsed >= max_seconds:
            stopped_by = "max_seconds"
            break
    total = time.perf_counter() - loop_start
    own_after = _own_cpu_s()
    busy_after = cpu_busy_s()
    readings = {
        "cpu_time_s": own_after - own_before,
        "others_cpu_share": others_share(busy_before, busy_after, total),
        "load_before": load_before,
        "load_after": _load_average(),
    }
    return times, total, stopped_by, readings


def measure_latency(
    fn: Callable[[], Any],
    *,
    warmup_calls: int = 3,
    min_calls: int = 10,
    min_seconds: float = 2.0,
    max_seconds: float = 60.0,
    device: str = "cpu",
    before_timed: Callable[[], None] | None = None,
    stability: Stability | None = None,
) -> LatencyStats:
    """Time the zero-argument ``fn`` (one inference call) under ``torch.inference_mode()``.

    The first warm-up call is timed and reported as ``first_call_ms``. Timed calls continue
    until ``min_calls`` calls and ``min_seconds`` of timed work are both reached, or the loop
    has run ``max_seconds`` (at least one call is always timed). ``before_timed`` runs
    between warm-up and the timed calls (the RSS polling fallback pauses there).
    A window disturbed by other load (see ``disturbance``) is timed again after a pause, up
    to ``stability.attempts`` windows; the least disturbed one is kept, and when every one
    was disturbed the figure is marked ``unstable`` with the reason.
    """
    import torch

    if min_calls < 1:
        raise ValueError("min_calls must be at least 1")
    stability = stability or Stability()
    is_cuda = torch.device(device).type == "cuda"
    timed = _cuda_timer(device) if is_cuda else _cpu_timer
    threads = torch.get_num_threads()

    gc_was_enabled = gc.isenabled()
    windows: list[tuple[LatencyStats, str | None]] = []
    with torch.inference_mode():
        first_ms: float | None = None
        for i in range(warmup_calls):
            ms = timed(fn)
            if i == 0:
                first_ms = ms
        if before_timed is not None:
            before_timed()
        for attempt in range(stability.attempts):
            if attempt:
                time.sleep(stability.pause_s)
            gc.collect()
            gc.disable()
            try:
                times, total, stopped_by, readings = _timed_window(
                    fn,
                    timed,
                    min_calls=min_calls,
                    min_seconds=min_seconds,
                    max_seconds=max_seconds,
                )
            finally:
                if gc_was_enabled:
                    gc.enable()
            stats = summarize(
                times,
                first_call_ms=first_ms,
                warmup_calls=warmup_calls,
                threads=threads,
                device=device,
                total_s=total,
                stopped_by=stopped_by,
                timer="cuda_event" if is_cuda else "perf_counter",
            )
            cpu_time = readings["cpu_time_s"]
            stats.cpu_time_s = cpu_time
            if not is_cuda and cpu_time is not None and total > 0:
                stats.cpu_utilization = cpu_time / (total * max(threads, 1))
            stats.others_cpu_share = readings["others_cpu_share"]
            stats.load_before = readings["load_before"]
            stats.load_after = readings["load_after"]
            reason = disturbance(stats, stability)
            windows.append((stats, reason))
            if reason is None:
                break
    best, reason = min(windows, key=lambda w: (w[1] is not None, w[0].others_cpu_share or 0.0))
    best.attempts = len(windows)
    if reason is not None:
        best.unstable = True
        best.unstable_reason = (
            f"{reason}, in each of {len(windows)} timed window(s); measure again on a quiet machine"
        )
    return best
