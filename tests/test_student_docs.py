"""submissions/README.md: its generated sections match the code, and what it shows passes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mcval.cli import main as mcval
from mcval.models.recipe_params import STEPS
from mcval.render.student_docs import README, SECTIONS, main, render
from mcval.tasks import get_task
from mcval.tasks.base import TASK_MODEL_CLASSES

REPO = Path(__file__).resolve().parents[1]


def test_generated_sections_are_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "run: python -m mcval.render.student_docs"
    assert main(["--check", str(README)]) == 0


def test_every_recipe_step_and_parameter_is_documented() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- generated: recipe-steps", 1)[1].split("<!-- end generated", 1)[0]
    for name, info in STEPS.items():
        assert f"**`{name}`**: {info.summary}." in section
        block = section.split(f"**`{name}`**", 1)[1].split("**`", 1)[0]
        assert [m for m in re.findall(r"^\| `(\w+)` \|", block, re.M)] == list(
            info.params.model_fields
        )
    assert "| `amount` | number 0–1 | required | Fraction of weights set to zero. |" in section


def test_task_model_classes_are_the_handlers() -> None:
    for task, auto_class in TASK_MODEL_CLASSES.items():
        assert get_task(task).auto_class == auto_class  # type: ignore[attr-defined]


def test_a_stale_section_is_found_and_rewritten(tmp_path: Path) -> None:
    copy = tmp_path / "README.md"
    text = README.read_text(encoding="utf-8")
    copy.write_text(text.replace("| `clusters` |", "| `n_clusters` |"), encoding="utf-8")
    assert main(["--check", str(copy)]) == 1
    assert main([str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == text
    copy.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no generated section 'recipe-steps'"):
        main([str(copy)])
    assert set(SECTIONS) == {"recipe-steps", "tasks", "runtimes"}


def test_the_docs_say_what_a_student_needs() -> None:
    text = README.read_text(encoding="utf-8")
    assert 'python -m pip install ".[measure]"' in text  # one command
    assert "git ls-remote https://huggingface.co/<org>/<model> HEAD" in text
    assert "git ls-remote https://huggingface.co/datasets/<org>/<dataset> HEAD" in text
    assert "must be **uploaded to the Hugging Face hub**" in text
    assert "reports **every** problem of every file at once" in text
    for field in ("weights_mb", "latency_cpu_ms", "ram_mb", "vram_mb", "quality", "hardware"):
        assert re.search(rf"^\| `{field}`", text, re.M), field
    assert "the **peak** resident memory (RSS) of the **measuring process**" in text


def test_the_example_in_the_docs_passes_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = README.read_text(encoding="utf-8")
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    team = tmp_path / "submissions/ml_masters"
    team.mkdir(parents=True)
    shutil.copy(REPO / "submissions/ml_masters/whisper-small-fp32.yaml", team)
    (team / "whisper-small-int8.yaml").write_text(example, encoding="utf-8")
    assert mcval(["check", str(tmp_path / "submissions"), "--repo", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 submission file(s) valid" in out
    assert "error" not in out
