"""mcval.toml: defaults in code, overrides validated with line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcval.errors import InputError, InputErrors
from mcval.policy import DEFAULT_HEADING, Policy, load_policy


def test_missing_file_gives_documented_defaults(tmp_path: Path) -> None:
    policy = load_policy(tmp_path)
    assert policy == Policy()
    assert policy.tolerances.weights_mb.relative == 0.01
    assert policy.tolerances.quality["accuracy"].absolute == 0.01
    assert policy.tolerances.quality["perplexity"].relative == 0.02
    assert policy.tolerances.quality["bleu"].absolute == 1.0
    assert policy.table.heading == DEFAULT_HEADING
    assert policy.github.allowed_paths == ["submissions/**"]


def test_overrides_are_read(tmp_path: Path) -> None:
    (tmp_path / "mcval.toml").write_text(
        "[tolerances.weights_mb]\nrelative = 0.005\n\n[measure]\nmin_calls = 25\n\n"
        '[table]\nlanguage = "en"\ncolumns = ["model", "method", "quality"]\n',
        encoding="utf-8",
    )
    policy = load_policy(tmp_path)
    assert policy.tolerances.weights_mb.relative == 0.005
    assert policy.measure.min_calls == 25
    assert policy.measure.warmup_calls == 3
    assert policy.table.columns == ["model", "method", "quality"]


def test_unknown_setting_names_line_and_suggests(tmp_path: Path) -> None:
    (tmp_path / "mcval.toml").write_text(
        "[measure]\nwarmup_calls = 2\nmin_call = 5\n", encoding="utf-8"
    )
    with pytest.raises(InputErrors) as info:
        load_policy(tmp_path)
    assert [str(e) for e in info.value.errors] == [
        "mcval.toml:3: unknown setting 'measure.min_call'; did you mean 'min_calls'?"
    ]


def test_wrong_type_in_policy(tmp_path: Path) -> None:
    (tmp_path / "mcval.toml").write_text('[table]\nlanguage = "de"\n', encoding="utf-8")
    with pytest.raises(InputErrors) as info:
        load_policy(tmp_path)
    assert [str(e) for e in info.value.errors] == [
        "mcval.toml:2: table.language: Input should be 'ru' or 'en'"
    ]


def test_invalid_toml_syntax(tmp_path: Path) -> None:
    (tmp_path / "mcval.toml").write_text("[measure\nmin_calls = 5\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_policy(tmp_path)
    assert str(info.value).startswith("mcval.toml:1:")
    assert "invalid TOML" in str(info.value)
