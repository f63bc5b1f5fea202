"""Issue 15, items 2, 3 and 9: who may change which files, and no PR goes green unmeasured.

Each test is an attack a student can make from a fork: edit another team's row (with no
teams table, or as an organisation ``MEMBER``), add a file directly under
``submissions/``, change only the data or weights a submission reads, delete a
submission, or hide files past the API's 3,000-file listing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_helpers import (
    actions_env,  # noqa: F401  (autouse fixture)
    ci_main,
    local_submission,
    read_outputs,
)
from fake_github import FakeGithub

from mcval.ci.plan import slug_of

BASE = "course/table"
FORK = "student/table"
TEAMS = '[github.teams]\nalpha = ["alice"]\nbeta = ["bob"]\n'
LOCAL = local_submission("alpha")
BASE_FILES = {
    "README.md": "# Course\n",
    "submissions/alpha/local.yaml": LOCAL,
    "submissions/alpha/data/eval.jsonl": '{"text": "a", "label": 0}\n',
    "submissions/alpha/model/config.json": "{}\n",
    "submissions/alpha/model/model.safetensors": "weights-v1",
    "submissions/beta/hub.yaml": "schema: 1\nteam: beta\nmodel: {id: org/name}\n",
}


def checkout(tmp_path: Path, policy: str | None = TEAMS) -> Path:
    """The base branch as the check workflow checks it out (its mcval.toml decides)."""
    base = tmp_path / "base"
    for path, text in BASE_FILES.items():
        (base / path).parent.mkdir(parents=True, exist_ok=True)
        (base / path).write_text(text)
    if policy is not None:
        (base / "mcval.toml").write_text(policy)
    return base


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGithub]:
    with FakeGithub() as server:
        server.add_token("ro")
        server.create_repo(BASE, dict(BASE_FILES))
        server.fork(BASE, FORK)
        monkeypatch.setenv("GITHUB_TOKEN", "ro")
        monkeypatch.setenv("GITHUB_REPOSITORY", BASE)
        monkeypatch.setenv("GITHUB_API_URL", server.url)
        yield server


def changed(pull_number: int, *extra: str) -> int:
    return ci_main(["ci", "changed", "--repo", "base", "--pr", str(pull_number), *extra])


# -- item 2: team ownership ----------------------------------------------------------------------


def test_without_a_teams_table_changed_refuses_to_run(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout(tmp_path, policy=None)
    pull = fake.open_pull(BASE, FORK, {"submissions/beta/hub.yaml": None}, author="mallory")
    assert changed(pull.number) == 2
    assert capsys.readouterr().err == (
        "error: mcval.toml: ownership of team directories is on but [github.teams] lists no "
        'team; add `team = ["login", ...]` lines under [github.teams], or set `ownership = '
        '"off"` under [github] to let any author change any team\'s files\n'
    )
    assert read_outputs(tmp_path / "output") == {}


def test_ownership_off_must_be_said_explicitly(fake: FakeGithub, tmp_path: Path) -> None:
    checkout(tmp_path, policy='[github]\nownership = "off"\n')
    pull = fake.open_pull(BASE, FORK, {"submissions/beta/hub.yaml": "x\n"}, author="mallory")
    assert changed(pull.number) == 0
    assert read_outputs(tmp_path / "output")["ids"] == '["beta/hub"]'


def test_member_association_does_not_make_a_maintainer(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a course organisation every student is a MEMBER: that must not skip the check."""
    checkout(tmp_path)
    files = {"submissions/beta/hub.yaml": None}
    pull = fake.open_pull(BASE, FORK, files, author="alice", author_association="MEMBER")
    assert changed(pull.number) == 1
    assert capsys.readouterr().err == (
        "error: submissions/beta/hub.yaml: belongs to team 'beta' and alice is not a member of "
        "it (your team is alpha)\n"
    )
    assert fake.count("GET", r"/collaborators/alice/permission$") == 1


@pytest.mark.parametrize(
    ("policy_extra", "role", "allowed"),
    [
        ('maintainers = ["Teacher"]\n', "read", True),  # listed (case-insensitive)
        ("", "maintain", True),  # repository role from the permission API
        ("", "admin", True),
        ("", "write", False),  # a collaborator with write is not a maintainer
        ("maintainers_from_permissions = false\n", "admin", False),
    ],
)
def test_maintainers_come_from_the_policy_or_the_repository_role(
    fake: FakeGithub, tmp_path: Path, policy_extra: str, role: str, allowed: bool
) -> None:
    checkout(tmp_path, policy="[github]\n" + policy_extra + TEAMS)
    fake.roles[(BASE, "teacher")] = role
    files = {"submissions/beta/hub.yaml": None, "submissions/README.md": "rules\n"}
    pull = fake.open_pull(BASE, FORK, files, author="teacher", author_association="NONE")
    assert changed(pull.number) == (0 if allowed else 1)


def test_files_directly_under_submissions_are_maintainers_only(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout(tmp_path, policy='[github]\nownership = "off"\n')
    pull = fake.open_pull(BASE, FORK, {"submissions/evil.yaml": "x\n"}, author="alice")
    assert changed(pull.number) == 1
    assert capsys.readouterr().err == (
        "error: submissions/evil.yaml: is directly under submissions/; only a maintainer "
        "changes such files\n"
    )


# -- item 3: nothing unmeasured goes green -------------------------------------------------------


def plan_of(tmp_path: Path) -> dict[str, object]:
    return json.loads((tmp_path / "plan.json").read_text())


@pytest.mark.parametrize(
    "files",
    [
        {"submissions/alpha/data/eval.jsonl": '{"text": "b", "label": 1}\n'},
        {"submissions/alpha/model/model.safetensors": "weights-v2"},
        {"submissions/alpha/data/eval.jsonl": None},
    ],
    ids=["changed-data", "changed-weights", "deleted-data"],
)
def test_a_change_to_data_or_weights_measures_the_submission_reading_them(
    fake: FakeGithub, tmp_path: Path, files: dict[str, str | None]
) -> None:
    checkout(tmp_path)
    pull = fake.open_pull(BASE, FORK, files, author="alice")
    assert changed(pull.number, "--output", "plan.json") == 0
    outputs = read_outputs(tmp_path / "output")
    assert outputs["count"] == "1"
    entry = {"id": "alpha/local", "path": "submissions/alpha/local.yaml"}
    assert json.loads(outputs["matrix"]) == {"include": [{**entry, "slug": slug_of("alpha/local")}]}


def test_fetch_removes_a_deleted_data_file_so_the_base_copy_is_not_measured(
    fake: FakeGithub, tmp_path: Path
) -> None:
    base = checkout(tmp_path)
    pull = fake.open_pull(BASE, FORK, {"submissions/alpha/data/eval.jsonl": None}, author="alice")
    argv = ["ci", "fetch", "--repo", "base", "--dest", "base", "--pr", str(pull.number)]
    assert ci_main([*argv, "--only", "alpha/local"]) == 0
    assert not (base / "submissions/alpha/data/eval.jsonl").exists()
    assert (base / "submissions/alpha/local.yaml").read_text() == LOCAL


def test_a_file_no_submission_reads_is_refused(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout(tmp_path)
    pull = fake.open_pull(BASE, FORK, {"submissions/alpha/notes/x.bin": "?"}, author="alice")
    assert changed(pull.number) == 1
    assert capsys.readouterr().err == (
        "error: submissions/alpha/notes/x.bin: is read by no submission, so nothing would "
        "measure this change; reference it from a submission's data_files or model.id, or "
        "leave it out\n"
    )


def test_a_new_submission_with_its_data_is_measured(fake: FakeGithub, tmp_path: Path) -> None:
    checkout(tmp_path)
    files = {"submissions/alpha/new.yaml": LOCAL, "submissions/alpha/data/new.jsonl": "{}\n"}
    pull = fake.open_pull(BASE, FORK, files, author="alice")
    assert changed(pull.number) == 0
    assert read_outputs(tmp_path / "output")["ids"] == '["alpha/new"]'


def test_a_deletion_is_reported_never_as_no_change(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout(tmp_path)
    pull = fake.open_pull(BASE, FORK, {"submissions/alpha/local.yaml": None}, author="alice")
    assert changed(pull.number) == 0
    outputs = read_outputs(tmp_path / "output")
    assert (outputs["count"], outputs["removed"]) == ("0", '["submissions/alpha/local.yaml"]')
    (tmp_path / "output").unlink()
    argv = ["ci", "report", "--repo", "base", "--artifacts", str(tmp_path), "--output", "c.md"]
    argv += ["--matrix", outputs["matrix"], "--removed", outputs["removed"]]
    assert ci_main(argv) == 0
    report = read_outputs(tmp_path / "output")
    assert report["description"] == "removes 1 submission(s)"
    assert "no submission changed" not in report["description"]
    assert "**Removed submissions**" in (tmp_path / "c.md").read_text()
    assert "`alpha/local`" in (tmp_path / "c.md").read_text()


def test_report_refuses_a_forged_removed_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout(tmp_path)
    argv = ["ci", "report", "--repo", "base", "--artifacts", str(tmp_path), "--output", "c.md"]
    argv += ["--matrix", '{"include": []}', "--removed", '["README.md"]']
    assert ci_main(argv) == 2
    assert capsys.readouterr().err == (
        "error: --removed names a path that is not a submission: 'README.md'\n"
    )


# -- item 9: files past the API's listing cap --------------------------------------------------


def test_a_pr_with_more_files_than_the_listing_is_refused(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GitHub lists at most 3,000 files; the fake lists 3 here to keep the test small."""
    checkout(tmp_path)
    fake.max_listed_files = 3
    files = {f"submissions/alpha/data/{i}.jsonl": "{}\n" for i in range(3)}
    files["submissions/beta/hub.yaml"] = None  # sorted last: past the listing
    pull = fake.open_pull(BASE, FORK, files, author="alice")
    assert changed(pull.number) == 2
    assert capsys.readouterr().err == (
        "error: pull request #1 changes 4 files but GitHub listed 3 (the API lists at most "
        "3000); files past the listing could not be checked, so the pull request is refused: "
        "split it\n"
    )
