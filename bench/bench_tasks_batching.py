"""Batched vs per-sample evaluation time on the same slice (target: >= 5x faster batched).

Runs mcval's own ``evaluate`` twice per task, with ``evaluation.batch_size`` = N and = 1,
on tiny random models (no downloads) and generated local data, checks that both give the
same metric, and prints the times and the speed-up.

    python bench/bench_tasks_batching.py [--rows 256] [--batch-size 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from mcval.submission.schema import Evaluation
from mcval.tasks import get_task
from tests.tiny_models import (
    TASK_CORPUS,
    build_tiny_bert_classifier,
    build_tiny_llama,
)


def timed(fn: Any) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def compare(name: str, run: Any, batch_size: int) -> float:
    run(batch_size)  # warm-up (imports, dataset cache, allocator)
    t_batched, batched = timed(lambda: run(batch_size))
    t_single, single = timed(lambda: run(1))
    for metric, value in batched.items():
        assert abs(single[metric] - value) <= 1e-4 * abs(value), (metric, single, batched)
    speedup = t_single / t_batched
    print(
        f"{name:<22} batch {batch_size:>3}: {t_batched:7.2f} s   batch 1: {t_single:7.2f} s   "
        f"speed-up {speedup:5.1f}x   {batched}"
    )
    return speedup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    words = " ".join(TASK_CORPUS).split()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        rows = []
        for i in range(args.rows):
            start = (i * 7) % len(words)
            text = " ".join(words[start : start + 4 + (i * 5) % 24])
            rows.append({"text": text, "label": ("negative", "neutral", "positive")[i % 3]})
        (repo / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

        def evaluation(batch_size: int, **extra: Any) -> Evaluation:
            return Evaluation.model_validate(
                {
                    "dataset": {"path": "json", "data_files": ["eval.jsonl"], "samples": args.rows},
                    "batch_size": batch_size,
                    **extra,
                }
            )

        text = get_task("text-classification")
        path = build_tiny_bert_classifier(repo / "bert")
        model = text.model_class().from_pretrained(path).eval()
        tokenizer = text.load_preprocessor(path, None, None)
        speedups = [
            compare(
                "text-classification",
                lambda b: text.evaluate(model, tokenizer, evaluation(b), repo, "cpu"),
                args.batch_size,
            )
        ]
        lm = get_task("causal-lm")
        path = build_tiny_llama(repo / "llama", max_positions=128)
        lm_model = lm.model_class().from_pretrained(path).eval()
        lm_tok = lm.load_preprocessor(path, None, None)
        speedups.append(
            compare(
                "causal-lm (perplexity)",
                lambda b: lm.evaluate(
                    lm_model, lm_tok, evaluation(b, context_length=64, stride=32), repo, "cpu"
                ),
                args.batch_size,
            )
        )
    worst = min(speedups)
    print(f"worst speed-up {worst:.1f}x (target >= 5x): {'OK' if worst >= 5 else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
