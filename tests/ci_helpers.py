"""Shared helpers for the ``mcval ci`` tests: run steps as the CLI would, read step outputs."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import pytest

from mcval.ci.actions import github_client
from mcval.ci.plan import slug_of
from mcval.cli import build_parser, dispatch
from mcval.policy import Policy
from mcval.results import RecordEnvironment, ResultRecord, save_record
from mcval.submission import load_submission
from mcval.verdict import MeasuredFigures, judge

RUNNER = "AMD EPYC 9654 · NVIDIA H100 80GB · torch 2.13"
INT8_YAML = """\
schema: 1
team: ml_masters
model:
  id: openai/whisper-small
  revision: 973afd24965f72e36ca33b3055d56a652f456b46
  task: automatic-speech-recognition
method:
  name: INT8 dynamic
  baseline: ml_masters/whisper-small-fp32
  recipe:
    - quantize_dynamic: {dtype: qint8}
evaluation:
  dataset:
    path: openslr/librispeech_asr
    name: clean
    split: test
    revision: 71cacbfb7e2354c4226d01e70d77d5fca3d04ba1
    samples: 200
    seed: 0
  metrics: [cer, wer]
  max_new_tokens: 128
benchmark:
  batch_size: 1
  input: {seconds: 30}
reported:
  weights_mb: "431 MB"
  latency_cpu_ms: 301.2
  ram_mb: 610.4
  quality: {cer: 0.0141, wer: 0.0397}
  hardware: {cpu: Intel i7-12700H}
"""
INT8_MEASURED = MeasuredFigures(
    weights_mb=230.1,
    latency_cpu_ms=254.3,
    latency_gpu_ms=61.2,
    ram_mb=598.0,
    vram_mb=260.4,
    quality={"cer": 0.0143, "wer": 0.0399},
    cpu="AMD EPYC 9654",
    gpu="NVIDIA H100 80GB",
)

FAST_CLIENT = {
    "retries": 3,
    "backoff_factor": 0.001,
    "secondary_rate_wait": 0.01,
    "max_retry_after": 0.01,
    "seconds_between_requests": None,
    "seconds_between_writes": None,
}
FAST_CONNECT = partial(github_client, **FAST_CLIENT)
"""The steps' GitHub client from the Actions variables, with fast retries and no throttle."""


def ci_main(argv: list[str]) -> int:
    """``mcval <argv>`` with the ``ci`` tree built around ``FAST_CONNECT``, errors handled by
    ``mcval.cli.dispatch`` exactly as ``mcval.cli.main`` handles them."""
    return dispatch(build_parser(connect=FAST_CONNECT).parse_args(argv))


def job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, token: str) -> Path:
    """A fresh job: its own output/summary files and token, like a runner gives it."""
    folder = tmp_path / name
    folder.mkdir()
    monkeypatch.setenv("GITHUB_TOKEN", token)
    monkeypatch.setenv("GITHUB_OUTPUT", str(folder / "output"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(folder / "summary.md"))
    return folder


def local_submission(team: str) -> str:
    """A submission whose model and evaluation data are files under its team's directory
    (a change to them must measure it)."""
    return f"""\
schema: 1
team: {team}
model:
  id: ./submissions/{team}/model
  task: text-classification
method: {{name: fp32}}
evaluation:
  dataset:
    path: json
    split: train
    data_files: [submissions/{team}/data/eval.jsonl]
"""


def read_outputs(path: Path) -> dict[str, str]:
    """Parse a ``$GITHUB_OUTPUT`` file written in heredoc form (last value wins)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    values: dict[str, str] = {}
    for match in re.finditer(r"^(\w+)<<(\S+)\n(.*?)\n\2$", text, flags=re.M | re.S):
        values[match[1]] = match[3]
    return values


def make_record(repo_root: Path, relpath: str, measured: MeasuredFigures) -> ResultRecord:
    """The record ``mcval validate`` stores for these figures (verdict by the real judge)."""
    policy = Policy()
    loaded = load_submission(repo_root / relpath, repo_root, policy)
    verdict = judge(loaded, measured, policy)
    sub = loaded.submission
    return ResultRecord(
        id=loaded.id,
        team=sub.team,
        model_id=sub.model.id,
        task=sub.model.task,
        method_name=sub.method.name,
        baseline=sub.method.baseline,
        submission_fingerprint="0" * 64,
        measured_at=datetime(2025, 11, 28, 8, 30, tzinfo=timezone.utc),
        measured=measured,
        environment=RecordEnvironment(summary=RUNNER, environment_class="epyc9654-h100"),
        verdict=verdict.status,
        report=verdict,
    )


def write_cell(
    artifacts: Path, entry_id: str, exit_code: str, record: ResultRecord | None, log: str = ""
) -> Path:
    """What one measuring job uploads: ``exit_code``, ``results/<team>/<name>.json``, log."""
    folder = artifacts / slug_of(entry_id)
    folder.mkdir(parents=True)
    (folder / "exit_code").write_text(exit_code)
    (folder / "log.txt").write_text(log)
    if record is not None:
        save_record(folder / "results", record)
    return folder


@pytest.fixture(autouse=True)
def actions_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Autouse where imported: a step's Actions files in tmp_path, no event, cwd there."""
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    for name in ("GITHUB_EVENT_PATH", "GITHUB_RUN_ID", "GITHUB_SERVER_URL", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
