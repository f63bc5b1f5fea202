"""GPU code paths (VRAM figures, CUDA children, CUDA latency through the runner).

Skipped cleanly without CUDA; on a GPU runner they check the figures against known sizes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

MIB = 2**20


def test_vram_peak_of_a_known_allocation() -> None:
    from mcval.measure.memory import read_vram, reset_vram

    torch.cuda.empty_cache()
    reset_vram("cuda")
    before = torch.cuda.memory_allocated()
    block = torch.ones(256 * MIB // 4, device="cuda")  # 256 MiB of float32
    del block
    stats = read_vram("cuda")
    assert stats.vram_mb * MIB - before == pytest.approx(256 * MIB, rel=0.01)
    assert stats.max_reserved_mb >= stats.vram_mb
    assert stats.device_used_mb is not None and stats.device_used_mb >= 256
    assert stats.device_total_mb is not None and stats.device_total_mb > stats.device_used_mb
    assert stats.device_source in ("nvml", "mem_get_info")


def test_runner_measures_cuda_latency_vram_and_quality(tmp_path: Path) -> None:
    import json

    from tiny_models import build_tiny_bert_classifier, write_submission

    from mcval.measure.measurement import measure_submission
    from mcval.policy import MeasurePolicy, Policy
    from mcval.submission.load import load_submission

    (tmp_path / ".git").mkdir()
    build_tiny_bert_classifier(tmp_path / "models" / "bert", labels=("negative", "positive"))
    (tmp_path / "data").mkdir()
    rows = [{"text": "hello world", "label": "positive"}, {"text": "the cat", "label": "negative"}]
    (tmp_path / "data" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sub = write_submission(
        tmp_path,
        "gpu",
        "bert",
        "schema: 1\nteam: gpu\nmodel: {id: models/bert, task: text-classification}\n"
        "method: {name: FP32}\n"
        "evaluation: {dataset: {path: json, data_files: [data/eval.jsonl]}}\n"
        "benchmark: {input: {tokens: 32}}\n",
    )
    loaded = load_submission(sub, tmp_path)
    policy = Policy(measure=MeasurePolicy(warmup_calls=2, min_calls=5, min_seconds=0.2))
    m = measure_submission(loaded, tmp_path, policy, ["cuda"])
    assert m.ok, m.details.errors
    assert m.latency_gpu_ms is not None and m.latency_gpu_ms > 0
    assert m.details.latency["cuda"].timer == "cuda_event"
    assert m.vram_mb is not None and m.vram_mb * MIB >= m.details.size.weights_bytes
    assert m.details.vram.max_reserved_mb >= m.vram_mb
    assert m.details.quality_device == "cuda" and set(m.quality) == {"accuracy", "macro_f1"}
    assert m.latency_cpu_ms is None and m.ram_mb is None
    assert m.environment is not None and m.environment.gpu_name
    assert m.environment.cuda_version == torch.version.cuda
