"""Issue 20: the course's branches (``[github] branches``) and the PR title convention,
as rules without a network (the end-to-end flow is tests/test_ci_lessons.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcval.ci.branches import (
    branch_note,
    homework_number,
    require_served,
    safe_branch,
    served,
    title_warnings,
    unserved_description,
)
from mcval.errors import InputError, InputErrors
from mcval.policy import GithubPolicy, Policy, load_policy

POLICY = Policy()


def test_default_policy_serves_main_and_the_lesson_branches() -> None:
    assert POLICY.github.branches == ["main", "lesson-*"]
    assert POLICY.github.title_pattern == "<team> HW-<n>"
    for branch in ("main", "lesson-1-intro", "lesson-2-quantization", "lesson-10"):
        assert served(branch, POLICY), branch
    for branch in ("master", "feature/x", "Lesson-1", "main2", "hw-1", ""):
        assert not served(branch, POLICY), branch


def test_a_glob_never_lets_an_unsafe_name_through() -> None:
    anything = Policy(github=GithubPolicy(branches=["*"]))
    assert served("feature/x", anything)
    for name in ("a..b", "lesson-1/", "x.lock", "-rf", "a b", "a\nb", "l`x`", "x//y", "::set"):
        assert not safe_branch(name) and not served(name, anything), name


def test_require_served_names_the_setting_to_change() -> None:
    assert require_served("lesson-3-pruning", POLICY) == "lesson-3-pruning"
    with pytest.raises(InputError) as info:
        require_served("master", POLICY)
    assert str(info.value) == (
        "mcval.toml: --branch: 'master' is not a course branch ([github] branches = "
        "['main', 'lesson-*']); add a pattern there to serve it"
    )
    with pytest.raises(InputError, match=r"^--branch: 'a\.\.b' is not a plain branch name$"):
        require_served("a..b", POLICY)


def test_unserved_description_fits_a_status_and_hides_an_odd_name() -> None:
    assert unserved_description("feature-x", POLICY) == (
        "not checked: mcval serves main, lesson-*, not feature-x"
    )
    assert unserved_description("a\nb::x", POLICY).endswith("not this branch")


def test_branches_setting_is_validated_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "mcval.toml").write_text('[github]\nbranches = []\nownership = "off"\n')
    with pytest.raises(InputErrors) as info:
        load_policy(tmp_path)
    (error,) = info.value.errors
    assert str(error).startswith("mcval.toml:2: github.branches: List should have at least 1")
    (tmp_path / "mcval.toml").write_text('[github]\nbranches = ["main", "hw-*"]\n')
    assert load_policy(tmp_path).github.branches == ["main", "hw-*"]


def test_homework_number_is_the_first_number_of_the_branch() -> None:
    assert homework_number("lesson-1-intro") == 1
    assert homework_number("lesson-12-distill-v2") == 12
    assert homework_number("main") is None


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("ml_masters HW-1", []),
        ("  ML_Masters   hw-1 ", []),  # case and spacing do not matter
        (
            "quant_squad HW-1",
            ["The title names team `quant_squad`, the submissions are `ml_masters`."],
        ),
        (
            "ml_masters HW-2",
            ["The title says HW-2, the branch `lesson-1-intro` holds homework 1."],
        ),
        (
            "quant_squad HW-3",
            [
                "The title names team `quant_squad`, the submissions are `ml_masters`.",
                "The title says HW-3, the branch `lesson-1-intro` holds homework 1.",
            ],
        ),
        ("Add my results", ["The title `Add my results` does not follow `<team> HW-<n>`."]),
        ("@all HW `1`", ["The title `` @all HW `1` `` does not follow `<team> HW-<n>`."]),
    ],
)
def test_title_warnings(title: str, expected: list[str]) -> None:
    assert title_warnings(title, ["ml_masters"], "lesson-1-intro", POLICY) == expected


def test_title_on_a_branch_without_a_number_checks_the_team_only() -> None:
    assert title_warnings("ml_masters HW-7", ["ml_masters"], "main", POLICY) == []
    custom = Policy(github=GithubPolicy(title_pattern="[<team>] homework <n>"))
    assert title_warnings("[ml_masters] homework 2", ["ml_masters"], "lesson-2-q", custom) == []
    assert title_warnings("ml_masters HW-2", ["ml_masters"], "lesson-2-q", custom) == [
        "The title `ml_masters HW-2` does not follow `[<team>] homework <n>`."
    ]


def test_branch_note_names_the_branch_and_its_readme() -> None:
    assert branch_note("lesson-2-quantization", POLICY) == (
        "Merging will update the table of `lesson-2-quantization` (README.md on that branch)."
    )
