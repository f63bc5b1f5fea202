"""`mcval check` / `mcval schema` as a student and CI meet them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from mcval.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "submissions/ml_masters/whisper-small-fp32.yaml"


def test_example_submissions_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(REPO / "submissions"), "--repo", str(REPO)]) == 0
    out = capsys.readouterr().out
    assert (
        "ok     submissions/ml_masters/whisper-small-fp32.yaml (ml_masters/whisper-small-fp32)"
        in out
    )
    assert out.rstrip().endswith("submission file(s) valid")


def test_bad_file_exits_2_with_located_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "submissions/team/x.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        EXAMPLE.read_text().replace("team: ml_masters", "team: team").replace("  task:", "  tsak:"),
        encoding="utf-8",
    )
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert main(["check", str(bad), "--repo", str(tmp_path)]) == 2
    assert capsys.readouterr().out.splitlines() == [
        "error  submissions/team/x.yaml:6:3: missing required field 'model.task'",
        "::error file=submissions/team/x.yaml,line=6,col=3::missing required field 'model.task'",
        "error  submissions/team/x.yaml:8:3: unknown field 'tsak' in model; did you mean 'task'?",
        "::error file=submissions/team/x.yaml,line=8,col=3::unknown field 'tsak' in model; "
        "did you mean 'task'?",
        "0 of 1 submission file(s) valid",
    ]


def test_missing_path_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nope"), "--repo", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: no such file or directory"
    )


def test_check_does_not_import_torch() -> None:
    code = (
        "import sys; from mcval.cli import main; rc = main(['check', 'submissions/']); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'numpy') "
        "if m in sys.modules); "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HEAVY []" in result.stdout


def test_schema_validates_example_and_is_published(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    jsonschema.validate(example, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "modle": {}}, schema)
    units = {**example, "reported": {**example["reported"], "weights_mb": "1.33 GB"}}
    jsonschema.validate(units, schema)
    published = json.loads((REPO / "docs/submission.schema.json").read_text(encoding="utf-8"))
    assert published == schema, "docs/submission.schema.json is stale: run `mcval schema -o ...`"
