"""Regenerating the README table for 10,000 synthetic results (goal: under 1 s).

Times what `mcval table` does per merge once the records are in memory: ordering and
formatting the rows and the footnote, then locating (mistune parse) and replacing the
table in a real course README that already holds the 10,000-row table (the steady state;
the result must be unchanged: idempotence). Loading the records from JSON and, with
``--plot``, drawing the plot are timed separately, for information.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fixtures.records import make_record  # noqa: E402

from mcval.policy import DEFAULT_HEADING, Policy  # noqa: E402
from mcval.render.readme import replace_table  # noqa: E402
from mcval.render.table import render_block  # noqa: E402
from mcval.results import ResultRecord, load_all, save_record  # noqa: E402

N = 10_000
RUNS = 5
GOAL_S = 1.0
README = REPO / "tests" / "fixtures" / "course-2025" / "README-36b8cd1.md"
TASKS = {
    "automatic-speech-recognition": {"wer": (0.03, 0.2), "cer": (0.01, 0.08)},
    "causal-lm": {"perplexity": (8.0, 40.0)},
    "text-classification": {"accuracy": (0.6, 0.95), "macro_f1": (0.5, 0.9)},
}


def synthetic(n: int, seed: int = 0) -> list[ResultRecord]:
    """``n`` results: 500 teams, a baseline and compressed rows per (team, model)."""
    rng = random.Random(seed)
    records: list[ResultRecord] = []
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    while len(records) < n:
        i = len(records)
        team = f"team{rng.randrange(500):03d}"
        task = rng.choice(sorted(TASKS))
        model = f"org{i % 97}/model-{i % 31}"
        base_id = f"{team}/m{i}-base"
        size = rng.uniform(100, 8000)
        latency = rng.uniform(5, 3000)
        quality = {m: rng.uniform(lo, hi) for m, (lo, hi) in TASKS[task].items()}
        when = start + timedelta(minutes=i)
        records.append(
            make_record(
                base_id,
                model,
                "FP32",
                task=task,
                weights_mb=size,
                latency_cpu_ms=latency * 3,
                latency_gpu_ms=latency,
                ram_mb=size * 1.1,
                vram_mb=size * 1.05,
                quality=quality,
                measured_at=when,
            )
        )
        for k, method in enumerate(("FP16", "INT8 | dynamic", "GPTQ <4-bit>")):
            if len(records) >= n:
                break
            factor = rng.uniform(1.5, 4.0)
            records.append(
                make_record(
                    f"{team}/m{i}-{k}",
                    model,
                    method,
                    baseline=base_id,
                    task=task,
                    weights_mb=size / factor,
                    latency_cpu_ms=None if k == 0 else latency * 3 / factor,
                    latency_gpu_ms=latency / factor if k != 1 else None,
                    ram_mb=size / factor * 1.1,
                    vram_mb=None if k == 1 else size / factor,
                    quality={m: v * rng.uniform(0.97, 1.03) for m, v in quality.items()},
                    measured_at=when,
                )
            )
    return records


def main() -> None:
    policy = Policy()
    started = time.perf_counter()
    records = synthetic(N)
    built = time.perf_counter() - started
    readme = README.read_text(encoding="utf-8")

    # Steady state of a merge: the README already holds the 10,000-row table, which has to
    # be located (parsed) and replaced by the freshly rendered one.
    current = replace_table(readme, DEFAULT_HEADING, render_block(records, policy, "results.svg"))
    render_times, replace_times, first_times, cpu_times = [], [], [], []
    for _ in range(RUNS):
        c0 = time.process_time()
        t0 = time.perf_counter()
        block = render_block(records, policy, "results.svg")
        t1 = time.perf_counter()
        text = replace_table(current, DEFAULT_HEADING, block)
        t2 = time.perf_counter()
        cpu_times.append(time.process_time() - c0)
        replace_table(readme, DEFAULT_HEADING, block)
        t3 = time.perf_counter()
        assert text == current  # idempotent
        render_times.append(t1 - t0)
        replace_times.append(t2 - t1)
        first_times.append(t3 - t2)
    total = [a + b for a, b in zip(render_times, replace_times, strict=True)]
    median = statistics.median(total)

    with tempfile.TemporaryDirectory() as tmp:
        for record in records:
            save_record(Path(tmp), record)
        t0 = time.perf_counter()
        loaded = load_all(Path(tmp))
        load_s = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*.json")) / 2**20
    assert len(loaded) == N

    print(f"records: {N} synthetic results ({len(block) - 4} table rows), built in {built:.2f} s")
    print(
        f"render rows + footnote:          median {statistics.median(render_times) * 1000:7.1f} ms"
        f" (min {min(render_times) * 1000:.1f}, n={RUNS})"
    )
    print(
        f"locate + replace the 10k table:  median {statistics.median(replace_times) * 1000:7.1f} ms"
        f" (README of {len(current)} chars)"
    )
    print(
        f"replace the hand-written table:  median {statistics.median(first_times) * 1000:7.1f} ms"
        f" (first run, README of {len(readme)} chars)"
    )
    print(
        f"regenerate (render + replace):   median {median * 1000:7.1f} ms; goal {GOAL_S:.0f} s: "
        f"{'met' if median < GOAL_S else 'MISSED'} (ratio {median / GOAL_S:.2f} of the budget)"
    )
    print(
        f"  same, CPU time of this process: median {statistics.median(cpu_times) * 1000:7.1f} ms "
        f"(wall time above includes waiting for a busy CPU: load {os.getloadavg()[0]:.1f})"
    )
    print(f"for information: loading {N} result files ({size_mb:.1f} MB JSON) took {load_s:.2f} s")
    if "--plot" in sys.argv:
        from mcval.render.plot import render_plot

        t0 = time.perf_counter()
        svg = render_plot(records, policy)
        print(
            f"for information: plot of {N} points {time.perf_counter() - t0:.2f} s, "
            f"{len(svg) / 2**20:.1f} MB SVG"
        )


if __name__ == "__main__":
    main()
