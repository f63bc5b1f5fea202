"""Wall time of `mcval demo`: a first run on an empty cache, then a second run reusing it.

The second run must reuse the prepared model, the student's figures and the bot's
fingerprinted results, so it measures nothing and takes seconds.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.console import Console

from mcval.commands.demo import run_demo


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mcval-bench-demo-") as tmp:
        root = Path(tmp)
        quiet = Console(file=open("/dev/null", "w"))  # noqa: SIM115
        timings = []
        for label in ("first", "second"):
            start = time.perf_counter()
            code = run_demo(root / label, root / "cache", quiet)
            timings.append(time.perf_counter() - start)
            print(f"demo {label} run: {timings[-1]:7.1f} s (exit {code})")
        print(f"second / first: {timings[1] / timings[0]:.3f}")


if __name__ == "__main__":
    main()
