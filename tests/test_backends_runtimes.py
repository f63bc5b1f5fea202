"""The same tiny models measured on PyTorch, TorchScript, ONNX Runtime and OpenVINO:
identical quality in fp32, sizes equal to an independent count of each runtime's weights,
and the runtime steps (ORT dynamic/static int8, NNCF int8) shrinking what they claim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny_models import (
    LOAD_TOLERANT_TOML,
    NER_LABELS,
    TASK_CORPUS,
    build_tiny_bert_classifier,
    build_tiny_bert_token_classifier,
    build_tiny_llama,
)

from mcval.cli import main

pytestmark = pytest.mark.slow
RUNTIMES = ("pytorch", "torchscript", "onnxruntime", "openvino")
MIB = 2**20
POLICY = f"""\
[measure]
warmup_calls = 1
min_calls = 2
min_seconds = 0.05
threads = 1
{LOAD_TOLERANT_TOML}"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runtimes")
    (root / ".git").mkdir()
    (root / "mcval.toml").write_text(POLICY, encoding="utf-8")
    build_tiny_bert_classifier(root / "models" / "bert")
    build_tiny_bert_token_classifier(root / "models" / "ner")
    build_tiny_llama(root / "models" / "llama")
    (root / "data").mkdir()
    rows = [
        {"text": t, "label": ["negative", "neutral", "positive"][i % 3]}
        for i, t in enumerate(TASK_CORPUS)
    ]
    (root / "data" / "cls.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ner = [
        {
            "tokens": t.split(),
            "ner_tags": [NER_LABELS[(i + j) % 3] for j, _ in enumerate(t.split())],
        }
        for i, t in enumerate(TASK_CORPUS)
    ]
    (root / "data" / "ner.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ner))
    (root / "data" / "lm.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in TASK_CORPUS)
    )
    return root


_TASKS = {
    "text-classification": ("bert", "cls.jsonl", 16),
    "token-classification": ("ner", "ner.jsonl", 16),
    "causal-lm": ("llama", "lm.jsonl", 16),
}


def measure(
    repo: Path, task: str, runtime: str, recipe: list[dict] | None = None, name: str = "row"
) -> dict:
    model, data, tokens = _TASKS[task]
    doc = {
        "schema": 1,
        "team": "team",
        "model": {"id": f"./models/{model}", "task": task, "runtime": runtime},
        "method": {"name": "FP32", "recipe": recipe or []},
        "evaluation": {
            "dataset": {"path": "json", "data_files": [f"data/{data}"]},
            "batch_size": 3,
        },
        "benchmark": {"input": {"tokens": tokens}},
    }
    sub = repo / "submissions" / "team" / f"{name}-{runtime}-{task}.yaml"
    sub.parent.mkdir(parents=True, exist_ok=True)
    sub.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return sub


def run_json(sub: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    rc = main(["measure", str(sub), "--device", "cpu", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    return json.loads(out)


@pytest.mark.parametrize("task", list(_TASKS))
def test_quality_is_identical_on_every_runtime(
    repo: Path, task: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    results = {r: run_json(measure(repo, task, r), capsys) for r in RUNTIMES}
    reference = results["pytorch"]["quality"]
    for runtime, measured in results.items():
        assert measured["quality"].keys() == reference.keys()
        for metric, value in measured["quality"].items():
            assert value == pytest.approx(reference[metric], rel=1e-4), (runtime, metric)
        assert measured["latency_cpu_ms"] > 0
        assert measured["weights_mb"] > 0
