"""``mcval measure``: JSON contract, readable table, exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from tiny_models import build_tiny_bert_classifier

from mcval.measure import command
from mcval.measure.runner import Measurement

SUBMISSION = """\
schema: 1
team: testers
model:
  id: models/tiny-bert
  task: text-classification
method:
  name: FP32
evaluation:
  dataset: {path: json, data_files: [data/eval.jsonl]}
benchmark:
  input: {tokens: 16}
"""
POLICY = """\
[measure]
warmup_calls = 1
min_calls = 3
min_seconds = 0.1
threads = 1
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cmdrepo")
    (root / ".git").mkdir()
    (root / "mcval.toml").write_text(POLICY, encoding="utf-8")
    build_tiny_bert_classifier(root / "models" / "tiny-bert", labels=("negative", "positive"))
    (root / "data").mkdir()
    (root / "data" / "eval.jsonl").write_text(
        '{"text": "hello world", "label": "positive"}\n', encoding="utf-8"
    )
    sub = root / "submissions" / "testers" / "fp32.yaml"
    sub.parent.mkdir(parents=True)
    sub.write_text(SUBMISSION, encoding="utf-8")
    return root


def args(path: Path, **kw: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    ns = parser.parse_args([str(path)])
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


@pytest.fixture(scope="module")
def json_run(repo: Path) -> tuple[int, str, str]:
    capture = pytest.MonkeyPatch()
    import io
    import sys

    out, err = io.StringIO(), io.StringIO()
    capture.setattr(sys, "stdout", out)
    capture.setattr(sys, "stderr", err)
    try:
        code = command.run(
            args(repo / "submissions/testers/fp32.yaml", json=True, skip_quality=True, device="cpu")
        )
    finally:
        capture.undo()
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_json_output_contract(json_run: tuple[int, str, str]) -> None:
    code, out, err = json_run
    assert code == 0, err
    data = json.loads(out)  # exactly one JSON object on stdout
    for key in (
        "weights_mb",
        "latency_cpu_ms",
        "latency_gpu_ms",
        "ram_mb",
        "vram_mb",
        "quality",
        "environment",
        "details",
    ):
        assert key in data
    assert data["latency_gpu_ms"] is None and data["vram_mb"] is None
    assert data["quality"] == {}
    assert data["submission"] == "testers/fp32"
    assert data["details"]["protocol"]["min_calls"] == 3  # mcval.toml was read
    assert data["details"]["latency"]["cpu"]["count"] >= 3
    assert "[cpu] loading model" in err and "[cpu] timing" in err  # progress on stderr


@pytest.mark.slow
def test_readable_table(json_run: tuple[int, str, str]) -> None:
    from rich.console import Console

    m = Measurement.model_validate_json(json_run[1])
    console = Console(record=True, width=160)
    command.render(m, console)
    text = console.export_text()
    assert "mcval measure: testers/fp32" in text
    assert f"{m.weights_mb:,.2f}" in text
    assert f"{m.latency_cpu_ms:,.2f}" in text
    assert "latency_gpu_ms" in text and "vram_mb" in text
    assert "environment: " in text


def test_cuda_without_gpu_is_a_usage_error(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command, "cuda_available", lambda: False)
    code = command.run(args(repo / "submissions/testers/fp32.yaml", device="cuda"))
    assert code == 2
    assert capsys.readouterr().err == (
        "error: --device cuda: no CUDA GPU is available on this machine "
        "(torch.cuda.is_available() is False); measure with --device cpu\n"
    )


def test_invalid_submission_is_an_input_error(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = repo / "submissions" / "testers" / "bad.yaml"
    bad.write_text(SUBMISSION.replace("team: testers", "team: testers\nteem: x"), "utf-8")
    code = command.run(args(bad, device="cpu"))
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: submissions/testers/bad.yaml:3:1: unknown field 'teem'")


def test_devices_for_all_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command, "cuda_available", lambda: False)
    assert command.resolve_devices("all") == (["cpu"], None)
    assert command.resolve_devices("cpu") == (["cpu"], None)
    monkeypatch.setattr(command, "cuda_available", lambda: True)
    assert command.resolve_devices("all") == (["cpu", "cuda"], None)
    assert command.resolve_devices("cuda") == (["cuda"], None)


def test_hidden_cuda_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert command.cuda_available() is False
