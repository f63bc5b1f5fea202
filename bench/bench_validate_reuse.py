"""`mcval validate` of an unchanged submission: the second run reuses the stored result.

First run: the real MiniLM is measured in a child process. Second run: the fingerprint
matches, so only the verdict is recomputed; goal: well under a second. Both are timed as
a student runs them (a fresh `mcval validate` process), plus the in-process reuse alone.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_measure_latency import env, make_repo  # the same MiniLM course repository

RUNS = 5


def validate(root: Path, sub: Path) -> float:
    cmd = [sys.executable, "-m", "mcval.cli", "validate", str(sub), "--device", "cpu"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, env=env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.exit(f"mcval validate failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mcval-bench-reuse-") as tmp:
        root = Path(tmp)
        sub = make_repo(root)
        first = validate(root, sub)
        again = sorted(validate(root, sub) for _ in range(RUNS))

        from mcval.policy import load_policy
        from mcval.submission.check import check_paths
        from mcval.validate import Validator, validate_paths

        policy = load_policy(root)
        validator = Validator(root, policy, root / "results", ["cpu"])
        check_paths([sub], root, policy)
        start = time.perf_counter()
        (report,) = validate_paths([sub], validator)
        in_process = time.perf_counter() - start
        assert report.reused, "the stored result was not reused"

    median = again[len(again) // 2]
    print(f"first validate (measures in a child): {first:6.2f} s")
    print(f"second validate, fresh process:       {median:6.2f} s median of {RUNS}")
    print(f"reuse alone, in process:              {in_process * 1000:6.1f} ms")
    print(
        f"second / first: {median / first:.3f}; goal under 1 s: {'met' if median < 1 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
