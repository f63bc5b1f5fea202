"""The per-task examples of submissions/README.md ("Local evaluation data") pass
``mcval check`` as written: every file they name is built from the README itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mcval.cli import main
from mcval.metrics import TASKS

README = Path(__file__).resolve().parents[1] / "submissions" / "README.md"
_BLOCK = re.compile(r"^```\w+ file=(\S+)\n(.*?)^```$", re.M | re.S)
_MEDIA = re.compile(r"^(?:Clips|Images): (.*)$", re.M)


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("## Local evaluation data", 1)[1].split("\n## ", 1)[0]


def test_there_is_one_example_per_task() -> None:
    section = _section()
    headings = re.findall(r"^### (\S+)$", section, re.M)
    assert sorted(headings) == sorted(TASKS)
    submissions = [p for p, _ in _BLOCK.findall(section) if p.startswith("submissions/")]
    assert len(submissions) == len(TASKS)


def test_every_example_passes_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    section = _section()
    (tmp_path / ".git").mkdir()
    for path, body in _BLOCK.findall(section):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body, encoding="utf-8")
    for line in _MEDIA.findall(section):
        for media in re.findall(r"`([^`]+)`", line):
            (tmp_path / media).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / media).write_bytes(b"\0")
    assert main(["check", str(tmp_path / "submissions"), "--repo", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{len(TASKS)} of {len(TASKS)} submission file(s) valid" in out
    # Without its media the ASR example is refused, naming the row and the folder.
    (tmp_path / "data/asr/clips/0002.wav").unlink()
    assert main(["check", str(tmp_path / "submissions"), "--repo", str(tmp_path)]) == 2
    assert (
        "data/asr/eval.jsonl row 2: audio file 'clips/0002.wav' does not exist (paths in a "
        "data file are resolved from its folder, data/asr/)" in capsys.readouterr().out
    )
