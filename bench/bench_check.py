"""How long `mcval check` takes on one file: the per-PR fast path (goal: under 0.5 s).

Times the whole command as a student runs it (a fresh interpreter each time, imports
included) and, separately, the in-process check alone, so the share of start-up is visible.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "submissions/ml_masters/whisper-small-fp32.yaml"
RUNS = 15


def main() -> None:
    command = [sys.executable, "-m", "mcval.cli", "check", EXAMPLE]
    wall = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        wall.append(time.perf_counter() - start)
    bare = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - start)

    from mcval.policy import load_policy
    from mcval.submission.check import check_paths

    policy = load_policy(REPO)
    check_paths([REPO / EXAMPLE], REPO, policy)  # warm caches as a long-lived process would
    in_process = []
    for _ in range(RUNS):
        start = time.perf_counter()
        check_paths([REPO / EXAMPLE], REPO, policy)
        in_process.append(time.perf_counter() - start)

    median_wall = statistics.median(wall)
    print(
        f"mcval check, one file, fresh process: median {median_wall * 1000:.0f} ms "
        f"(min {min(wall) * 1000:.0f}, max {max(wall) * 1000:.0f}, n={RUNS})"
    )
    print(f"bare python start-up:                 median {statistics.median(bare) * 1000:.0f} ms")
    in_process_ms = statistics.median(in_process) * 1000
    print(f"check alone, in process:              median {in_process_ms:.1f} ms")
    print(
        f"goal 500 ms: {'met' if median_wall < 0.5 else 'MISSED'} "
        f"(ratio {median_wall / 0.5:.2f} of the budget)"
    )


if __name__ == "__main__":
    main()
