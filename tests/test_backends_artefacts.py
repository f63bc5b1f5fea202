"""Shipped runtime artefacts (``model.file``): a good .onnx / OpenVINO IR is measured as
shipped; hostile ones are refused with exit 2 and a one-line reason before any runtime
opens them (external data outside the model directory, a custom-op domain, a TorchScript
or zip archive, a file over the size limit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import (
    QUICK_MEASURE_TOML,
    build_tiny_bert_classifier,
    write_classification_rows,
    write_submission,
)

from mcval.cli import main

pytestmark = pytest.mark.slow
POLICY = QUICK_MEASURE_TOML


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artefacts")
    (root / ".git").mkdir()
    (root / "mcval.toml").write_text(POLICY, encoding="utf-8")
    bert = build_tiny_bert_classifier(root / "models" / "bert")
    _export(bert)
    write_classification_rows(root / "data" / "cls.jsonl")
    return root


def _export(directory: Path) -> None:
    """What a student ships: an .onnx with external data, and an OpenVINO IR."""
    import openvino as ov
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    ids = torch.ones((1, 8), dtype=torch.long)
    args = (ids, torch.ones_like(ids))
    torch.onnx.export(
        model,
        args,
        str(directory / "model.onnx"),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}},
        dynamo=False,
    )
    ov_model = ov.convert_model(str(directory / "model.onnx"))
    ov.save_model(ov_model, str(directory / "openvino_model.xml"), compress_to_fp16=False)


def _hostile_onnx(path: Path, *, location: str | None = None, domain: str = "") -> None:
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    if location is not None:
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        entry = weight.external_data.add()
        entry.key, entry.value = "location", location
    node = helper.make_node("Add" if not domain else "Evil", ["x", "w"], ["logits"], domain=domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2])],
        [weight],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))


def submission(repo: Path, runtime: str, file: str | None, name: str) -> Path:
    model: dict = {"id": "./models/bert", "task": "text-classification", "runtime": runtime}
    if file:
        model["file"] = file
    doc = {
        "schema": 1,
        "team": "team",
        "model": model,
        "method": {"name": "FP32"},
        "evaluation": {"dataset": {"path": "json", "data_files": ["data/cls.jsonl"]}},
        "benchmark": {"input": {"tokens": 16}},
    }
    return write_submission(repo, "team", name, doc)


def validate(sub: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``mcval validate``: what the bot runs (exit 2 for the student's input errors)."""
    capsys.readouterr()
    rc = main(["validate", str(sub), "--device", "cpu"])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def measure_json(sub: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert main(["measure", str(sub), "--device", "cpu", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_shipped_onnx_and_ir_measure_like_the_checkpoint(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    reference = measure_json(submission(repo, "pytorch", None, "pt"), capsys)
    onnx = measure_json(submission(repo, "onnxruntime", "model.onnx", "ort"), capsys)
    ir = measure_json(submission(repo, "openvino", "openvino_model.xml", "ov"), capsys)
    for measured in (onnx, ir):
        assert measured["quality"] == pytest.approx(reference["quality"], rel=1e-4)
        assert measured["weights_mb"] > 0


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("outside", "outside the model directory"),
        ("custom_op", "custom operator"),
        ("zip", "archive"),
    ],
)
def test_hostile_onnx_is_refused_before_opening(
    repo: Path,
    kind: str,
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(repo)
    path = repo / "models" / "bert" / f"{kind}.onnx"
    if kind == "outside":
        _hostile_onnx(path, location="../../../../../../etc/passwd")
    elif kind == "custom_op":
        _hostile_onnx(path, domain="evil.ops")
    else:
        path.write_bytes(b"PK\x03\x04" + b"\0" * 64)  # a TorchScript archive is a zip

    import onnxruntime

    opened: list[str] = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: opened.append("x"))
    rc, out = validate(submission(repo, "onnxruntime", path.name, kind), capsys)
    assert rc == 2, out
    assert reason in out
    assert not opened


def test_oversized_onnx_is_refused(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(repo)
    (repo / "mcval.toml").write_text(POLICY + "max_download_gb = 0.0001\n", encoding="utf-8")
    try:
        rc, out = validate(submission(repo, "onnxruntime", "model.onnx", "big"), capsys)
    finally:
        (repo / "mcval.toml").write_text(POLICY, encoding="utf-8")
    assert rc == 2, out
    assert "over the limit" in out


def test_torchscript_archive_is_refused_by_check(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    sub = submission(repo, "torchscript", "model.pt", "ts")
    capsys.readouterr()
    assert main(["check", str(sub)]) == 2
    assert "TorchScript archive" in capsys.readouterr().out
