"""`mcval validate` on a real (tiny) model: an honest submission passes, a second run
reuses the stored result without starting any child process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny_models import LOAD_TOLERANT_TOML, TASK_CORPUS, build_tiny_bert_classifier

from mcval.cli import main

pytestmark = pytest.mark.slow


def _repo(root: Path) -> Path:
    (root / ".git").mkdir()
    (root / "mcval.toml").write_text(f"[measure]\n{LOAD_TOLERANT_TOML}", encoding="utf-8")
    build_tiny_bert_classifier(root / "models" / "tiny-bert")
    rows = [
        {"text": t, "label": ["negative", "neutral", "positive"][i % 3]}
        for i, t in enumerate(TASK_CORPUS)
    ]
    (root / "data").mkdir()
    (root / "data" / "eval.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    sub = root / "submissions" / "team" / "tiny.yaml"
    sub.parent.mkdir(parents=True)
    return sub


def _write(sub: Path, reported: dict[str, object] | None) -> None:
    doc: dict[str, object] = {
        "schema": 1,
        "team": "team",
        "model": {"id": "./models/tiny-bert", "task": "text-classification"},
        "method": {"name": "fp32"},
        "evaluation": {"dataset": {"path": "json", "data_files": ["data/eval.jsonl"]}},
        "benchmark": {"input": {"tokens": 16}},
    }
    if reported:
        doc["reported"] = reported
    sub.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def test_honest_submission_passes_then_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = _repo(tmp_path)
    _write(sub, None)
    monkeypatch.chdir(tmp_path)
    # A student measures, then reports exactly what mcval measured.
    assert main(["measure", str(sub), "--device", "cpu", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    _write(
        sub,
        {
            "weights_mb": round(measured["weights_mb"], 2),
            "quality": {k: round(v, 4) for k, v in measured["quality"].items()},
        },
    )

    markdown = tmp_path / "comment.md"
    assert main(["validate", str(sub), "--device", "cpu", "--markdown", str(markdown)]) == 0
    record = json.loads((tmp_path / "results/team/tiny.json").read_text())
    assert record["verdict"] == "pass"
    assert record["measured"]["weights_mb"] == pytest.approx(measured["weights_mb"])
    assert "✅ pass · team/tiny" in markdown.read_text(encoding="utf-8")

    # The second run of the unchanged submission must not start a measuring child (forked
    # or exec'd: every child goes through run_isolated).
    from mcval.measure import measurement

    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("a measuring child process was started")

    monkeypatch.setattr(measurement, "run_isolated", no_child)
    capsys.readouterr()
    assert main(["validate", str(sub), "--device", "cpu"]) == 0
    assert "result reused" in capsys.readouterr().out
