"""``mcval check`` on speech and translation submissions (issue 19): local data files read
cheaply (file, columns, audio paths, with the row and the folder paths resolve from), the
language fields a model family needs, and the normaliser the policy fills in."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcval.cli import main
from mcval.errors import InputErrors
from mcval.policy import Policy
from mcval.submission import load_submission

FILE = "submissions/t1/row.yaml"
ASR_ROW = """\
schema: 1
team: t1
model: {{id: ./models/whisper, task: automatic-speech-recognition}}
method: {{name: fp32}}
evaluation:
  dataset: {{path: json, data_files: [{data}]}}
{extra}"""


def _repo(tmp_path: Path, config: dict | None = None, generation: dict | None = None) -> Path:
    (tmp_path / ".git").mkdir()
    model = tmp_path / "models" / "whisper"
    model.mkdir(parents=True)
    config = config or {"model_type": "whisper", "architectures": ["X"], "vocab_size": 51864}
    config.setdefault("is_encoder_decoder", True)
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if generation is not None:
        (model / "generation_config.json").write_text(json.dumps(generation), encoding="utf-8")
    return tmp_path


def _data(repo: Path, rows: list[dict], clips: list[str] = ()) -> None:
    (repo / "data").mkdir(exist_ok=True)
    (repo / "data" / "asr.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    for clip in clips:
        (repo / clip).parent.mkdir(parents=True, exist_ok=True)
        (repo / clip).write_bytes(b"RIFF")


def _errors(repo: Path, data: str = "data/asr.jsonl", extra: str = "") -> list[str]:
    path = repo / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ASR_ROW.format(data=data, extra=extra), encoding="utf-8")
    try:
        load_submission(path, repo)
    except InputErrors as exc:
        return [str(e) for e in exc.errors]
    return []


def test_missing_data_file_is_named_before_any_model_runs(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    assert _errors(repo, "data/nope.jsonl") == [
        f"{FILE}:6:38: data file 'data/nope.jsonl' does not exist (data_files are relative to "
        "the repository root); commit it or fix the path"
    ]


def test_missing_column_names_the_file_row_and_columns(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    _data(repo, [{"audio": "clips/a.wav", "transcript": "hi"}], ["data/clips/a.wav"])
    assert _errors(repo) == [
        f"{FILE}:6:38: data/asr.jsonl row 1: no column 'text' (role 'text'); its columns are "
        "audio, transcript. Rename it or map the role with evaluation.columns, e.g. "
        "{text: <column>}"
    ]
    assert _errors(repo, extra="  columns: {text: transcript}\n") == []


def test_missing_audio_names_row_and_the_folder_paths_resolve_from(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    rows = [
        {"audio": "clips/a.wav", "text": "one"},
        {"audio": "clips/b.wav", "text": "two"},
        {"audio": "data/clips/a.wav", "text": "three"},
    ]
    _data(repo, rows, ["data/clips/a.wav"])
    assert _errors(repo) == [
        f"{FILE}:6:38: data/asr.jsonl row 2: audio file 'clips/b.wav' does not exist (paths in a "
        "data file are resolved from its folder, data/)",
        f"{FILE}:6:38: data/asr.jsonl row 3: audio file 'data/clips/a.wav' does not exist (paths "
        "in a data file are resolved from its folder, data/); it exists from the repository "
        "root: write '../data/clips/a.wav'",
    ]


def test_data_mistakes_are_caught_fast_and_without_torch(tmp_path: Path) -> None:
    """The three acceptance mistakes through the CLI in a fresh interpreter: under a
    second each, and torch is never imported."""
    repo = _repo(tmp_path)
    _data(repo, [{"audio": "missing.wav", "txt": "x"}])
    (repo / "data" / "ok.jsonl").write_text('{"audio": "gone.wav", "text": "x"}\n')
    code = (
        "import sys, time; from mcval.cli import main; t = time.perf_counter(); "
        f"rc = main(['check', {str(repo / 'submissions')!r}, '--repo', {str(repo)!r}]); "
        "print('SECONDS', time.perf_counter() - t); "
        "print('TORCH', 'torch' in sys.modules); sys.exit(rc)"
    )
    for data, expected in (
        ("data/nope.jsonl", "data file 'data/nope.jsonl' does not exist"),
        ("data/asr.jsonl", "data/asr.jsonl row 1: no column 'text' (role 'text')"),
        (
            "data/ok.jsonl",
            "data/ok.jsonl row 1: audio file 'gone.wav' does not exist (paths in a data file "
            "are resolved from its folder, data/)",
        ),
    ):
        path = repo / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ASR_ROW.format(data=data, extra=""), encoding="utf-8")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert run.returncode == 2, run.stderr
        assert expected in run.stdout
        assert "TORCH False" in run.stdout
        seconds = float(run.stdout.split("SECONDS ")[1].split()[0])
        assert seconds < 1.0  # the check itself, not the interpreter start


def test_multilingual_whisper_needs_a_language(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path,
        {"model_type": "whisper", "architectures": ["X"], "vocab_size": 51865},
        {"is_multilingual": True, "lang_to_id": {"<|en|>": 50259, "<|de|>": 50261}},
    )
    _data(repo, [{"audio": "a.wav", "text": "hallo"}], ["data/a.wav"])
    assert _errors(repo) == [
        f"{FILE}:6:3: this Whisper is multilingual: without evaluation.language it detects "
        "the language clip by clip and may transcribe or translate into another one; add "
        "evaluation.language (the language spoken in the clips, e.g. 'language: en') and, to "
        "translate into English, 'task: translate'"
    ]
    assert _errors(repo, extra="  language: de\n  task: translate\n") == []
    assert _errors(repo, extra="  language: xx\n") == [
        f"{FILE}:7:13: evaluation.language: 'xx' is not a language of this Whisper; use its "
        "code (de, en, ...) or its English name"
    ]


def test_english_only_whisper_needs_none_and_refuses_translation(tmp_path: Path) -> None:
    repo = _repo(tmp_path)  # vocab 51864: a .en model
    _data(repo, [{"audio": "a.wav", "text": "hi"}], ["data/a.wav"])
    assert _errors(repo) == []
    assert _errors(repo, extra="  task: translate\n") == [
        f"{FILE}:7:9: evaluation.task: an English-only Whisper (.en) cannot translate; remove "
        "evaluation.task"
    ]


def test_nllb_needs_both_languages_and_speech_fields_are_refused(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"model_type": "m2m_100", "architectures": ["X"]})
    (repo / "models/whisper/tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "NllbTokenizer"}), encoding="utf-8"
    )
    (repo / "data").mkdir()
    (repo / "data/mt.jsonl").write_text('{"source": "hi", "target": "salut"}\n')
    row = ASR_ROW.replace("automatic-speech-recognition", "translation")
    path = repo / FILE
    path.parent.mkdir(parents=True)
    path.write_text(
        row.format(data="data/mt.jsonl", extra="  target_language: fra_Latn\n  language: en\n"),
        encoding="utf-8",
    )
    with pytest.raises(InputErrors) as info:
        load_submission(path, repo)
    assert [str(e) for e in info.value.errors] == [
        f"{FILE}:6:3: M2M100 / NLLB translates into the language its first generated token "
        "names: add evaluation.source_language (NLLB codes, e.g. source_language: eng_Latn, "
        "target_language: fra_Latn)",
        f"{FILE}:8:13: evaluation.language applies to automatic-speech-recognition only, not "
        "to translation; remove it",
    ]


def test_policy_normaliser_is_filled_in_and_can_be_chosen(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    _data(repo, [{"audio": "a.wav", "text": "hi"}], ["data/a.wav"])
    assert _errors(repo) == []
    path = repo / FILE
    assert load_submission(path, repo).submission.evaluation.normalizer == "basic"
    policy = Policy.model_validate({"measure": {"normalizer": "whisper-english"}})
    assert load_submission(path, repo, policy).submission.evaluation.normalizer == (
        "whisper-english"
    )
    _errors(repo, extra="  normalizer: basic\n")
    assert load_submission(path, repo, policy).submission.evaluation.normalizer == "basic"
    assert _errors(repo, extra="  normalizer: whisper\n") == [
        f"{FILE}:7:15: evaluation.normalizer: 'whisper' is not one of 'basic' or "
        "'whisper-english'; did you mean 'whisper-english'?"
    ]


def test_check_cli_reports_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _repo(tmp_path)
    _data(repo, [{"audio": "gone.wav", "text": "hi"}])
    _errors(repo)
    started = time.perf_counter()
    assert main(["check", str(repo / "submissions"), "--repo", str(repo)]) == 2
    assert time.perf_counter() - started >= 0  # no timing claim: the subprocess test has it
    assert (
        "data/asr.jsonl row 1: audio file 'gone.wav' does not exist (paths in a data file are "
        "resolved from its folder, data/)" in capsys.readouterr().out
    )
