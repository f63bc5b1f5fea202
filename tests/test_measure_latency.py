"""Latency statistics and the timing loop, on deterministic callables and a fake clock."""

from __future__ import annotations

import gc
import os
import statistics
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mcval.measure import latency as latency_mod
from mcval.measure.latency import measure_latency, percentile, summarize


class FakeClock:
    """perf_counter replacement advanced only by the callable under test (durations in the
    tests are binary fractions, so the sums are exact)."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The fake clock, and every window judged undisturbed: the real machine's load is read
    around each window, and on a busy machine a retry would sleep on the fake ``time``
    (these tests are about the loop's counts; disturbance has tests of its own below)."""
    fake = FakeClock()
    monkeypatch.setattr(latency_mod, "time", SimpleNamespace(perf_counter=fake.perf_counter))
    monkeypatch.setattr(latency_mod, "disturbance", lambda stats, stability: None)
    return fake


def stepping_call(clock: FakeClock, durations_ms: list[float]) -> tuple[object, list[dict]]:
    """A callable whose n-th call 'takes' durations_ms[n] (last value repeats)."""
    seen: list[dict] = []

    def call() -> None:
        i = len(seen)
        seen.append({"inference": torch.is_inference_mode_enabled(), "gc": gc.isenabled()})
        clock.now += durations_ms[min(i, len(durations_ms) - 1)] / 1000

    return call, seen


def test_summarize_matches_numpy_on_fixed_sample() -> None:
    sample = [12.0, 10.0, 11.0, 30.0, 10.5, 9.5, 10.2, 10.8, 11.5, 9.9, 10.1]
    stats = summarize(sample, first_call_ms=250.0, warmup_calls=3, threads=2)
    arr = np.array(sample)
    assert stats.median_ms == pytest.approx(float(np.median(arr)))
    assert stats.p10_ms == pytest.approx(float(np.percentile(arr, 10)))
    assert stats.p90_ms == pytest.approx(float(np.percentile(arr, 90)))
    assert stats.mean_ms == pytest.approx(float(arr.mean()))
    assert stats.cv == pytest.approx(float(arr.std(ddof=1) / arr.mean()))
    assert (stats.min_ms, stats.max_ms, stats.count) == (9.5, 30.0, 11)
    assert stats.times_ms == sample  # kept in call order
    assert stats.first_call_ms == 250.0


def test_summarize_exact_values() -> None:
    stats = summarize([float(x) for x in range(1, 11)])
    assert stats.median_ms == 5.5
    assert stats.p10_ms == pytest.approx(1.9)
    assert stats.p90_ms == pytest.approx(9.1)
    assert stats.cv == pytest.approx(statistics.stdev(range(1, 11)) / 5.5)
    single = summarize([7.0])
    assert (single.median_ms, single.p10_ms, single.p90_ms, single.cv) == (7.0, 7.0, 7.0, 0.0)


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty sample"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"within \[0, 100\], got 101"):
        percentile([1.0], 101)
    with pytest.raises(ValueError, match="no timed calls"):
        summarize([])


def test_warmup_first_call_and_min_calls(clock: FakeClock) -> None:
    # cold call 500 ms, two warm-up calls 20 ms, then steady 10 ms calls
    call, seen = stepping_call(clock, [500, 20, 20, 10])
    stats = measure_latency(call, warmup_calls=3, min_calls=7, min_seconds=0.0)
    assert stats.first_call_ms == pytest.approx(500)
    assert stats.count == 7
    assert len(seen) == 3 + 7
    assert stats.times_ms == pytest.approx([10.0] * 7)
    assert stats.median_ms == pytest.approx(10.0)
    assert stats.cv == pytest.approx(0.0, abs=1e-9)
    assert stats.stopped_by == "target"
    assert stats.timer == "perf_counter"
    assert stats.threads == torch.get_num_threads()
    assert all(s["inference"] for s in seen)
    assert [s["gc"] for s in seen] == [True] * 3 + [False] * 7  # gc paused only while timing
    assert gc.isenabled()


def test_min_seconds_extends_the_loop(clock: FakeClock) -> None:
    call, seen = stepping_call(clock, [62.5])
    stats = measure_latency(call, warmup_calls=1, min_calls=2, min_seconds=1.0)
    # 62.5 ms calls: the 16th call brings the timed loop to 1.0 s
    assert stats.count == 16
    assert stats.total_s == 1.0
    assert len(seen) == 17


def test_max_seconds_caps_the_loop(clock: FakeClock) -> None:
    call, _ = stepping_call(clock, [125])
    stats = measure_latency(call, warmup_calls=0, min_calls=1000, min_seconds=0, max_seconds=0.5)
    assert stats.count == 4
    assert stats.stopped_by == "max_seconds"
    assert stats.first_call_ms is None


def test_a_call_slower_than_max_seconds_is_still_timed_once(clock: FakeClock) -> None:
    call, _ = stepping_call(clock, [3000])
    stats = measure_latency(call, warmup_calls=1, min_calls=10, min_seconds=2, max_seconds=1)
    assert stats.count == 1
    assert stats.median_ms == pytest.approx(3000)


def test_before_timed_hook_runs_between_warmup_and_timing(clock: FakeClock) -> None:
    events: list[str] = []
    call, _seen = stepping_call(clock, [5])

    def tracked() -> None:
        events.append("call")
        call()

    measure_latency(
        tracked, warmup_calls=2, min_calls=3, min_seconds=0, before_timed=lambda: events.append("H")
    )
    assert events == ["call", "call", "H", "call", "call", "call"]


def test_real_clock_sleep_is_measured() -> None:
    import time

    stats = measure_latency(lambda: time.sleep(0.005), warmup_calls=1, min_calls=5, min_seconds=0)
    assert stats.count == 5
    assert 5.0 <= stats.median_ms < 50.0  # sleep never returns early; generous upper bound


def test_min_calls_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_calls must be at least 1"):
        measure_latency(lambda: None, min_calls=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_events_time_gpu_work() -> None:
    a = torch.randn(2048, 2048, device="cuda")
    stats = measure_latency(
        lambda: a @ a, warmup_calls=2, min_calls=10, min_seconds=0.1, device="cuda"
    )
    assert stats.timer == "cuda_event"
    assert stats.device == "cuda"
    assert stats.median_ms > 0
    assert stats.count >= 10


def test_others_share_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    # machine busy 2.0 s, of which this process 0.5 s, over 1 s wall on 2 CPUs
    assert latency_mod.others_share((10.0, 1.0), (12.0, 1.5), 1.0) == 0.75
    assert latency_mod.others_share((10.0, 1.0), (10.1, 1.2), 1.0) == 0.0  # never negative
    assert latency_mod.others_share(None, (1.0, 1.0), 1.0) is None


def test_a_busy_machine_is_detected() -> None:
    import subprocess
    import sys
    import time

    spin = "import time\nt = time.time()\nwhile time.time() - t < 4: pass\n"
    spinner = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.3)
        stats = measure_latency(
            lambda: time.sleep(0.01),
            warmup_calls=0,
            min_calls=1,
            min_seconds=1.0,
            stability=latency_mod.Stability(attempts=1),
        )
    finally:
        spinner.kill()
        spinner.wait()
    assert stats.others_cpu_share is not None
    assert stats.others_cpu_share >= 0.8 / (os.cpu_count() or 1)  # the spinner holds one CPU
    assert stats.unstable and stats.attempts == 1
    assert stats.unstable_reason is not None
    assert stats.unstable_reason.startswith("other processes used ")


SPIN = "import time\nt = time.time()\nwhile time.time() - t < 60: pass\n"


@pytest.mark.slow
def test_a_cpu_hog_beside_a_measurement_never_leaves_it_silently_off() -> None:
    """Two busy processes on the cores a 2-thread call uses: the figure is either still
    right (within 50 % of the undisturbed one) or marked unstable with the reason."""
    import subprocess
    import sys

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    a = torch.randn(320, 320)
    stability = latency_mod.Stability(attempts=2, pause_s=0.2)
    settings: dict = {"warmup_calls": 3, "min_calls": 20, "min_seconds": 0.5}
    try:
        quiet = measure_latency(lambda: a @ a @ a, stability=stability, **settings)
        hogs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(2)]
        try:
            time.sleep(0.3)
            busy = measure_latency(lambda: a @ a @ a, stability=stability, **settings)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    finally:
        torch.set_num_threads(before)
    assert busy.attempts == 2 or not busy.unstable
    if busy.unstable:
        assert busy.unstable_reason is not None
        assert busy.unstable_reason.endswith(
            "in each of 2 timed window(s); measure again on a quiet machine"
        )
        assert busy.others_cpu_share is not None and busy.others_cpu_share > 0.10
    else:  # the hogs did not get in the way: then the figure must agree
        assert not quiet.unstable, quiet.unstable_reason
        assert busy.median_ms == pytest.approx(quiet.median_ms, rel=0.5)
    assert busy.cpu_utilization is not None and 0 < busy.cpu_utilization <= 1.05
    assert busy.load_before is not None and busy.load_after is not None


def test_disturbance_rules_on_fixed_windows() -> None:
    rules = latency_mod.Stability(max_other_load=0.10, max_spread=2.0)
    calm = latency_mod.summarize([10.0, 10.2, 9.9, 10.1, 10.0, 10.3], threads=2)
    calm.others_cpu_share = 0.02
    assert latency_mod.disturbance(calm, rules) is None
    crowded = calm.model_copy(update={"others_cpu_share": 0.55, "cpu_utilization": 0.31})
    assert latency_mod.disturbance(crowded, rules) == (
        "other processes used 55% of this machine's CPU while the calls were timed (limit 10%)"
        "; this process got 31% of its 2 threads' time"
    )
    jumpy = latency_mod.summarize([10.0, 10.0, 31.0, 10.0, 35.0, 10.0, 40.0], threads=2)
    assert latency_mod.disturbance(jumpy, rules) == (
        "the timed calls spread too widely (p90/p10 = 3.7, limit 2)"
    )
