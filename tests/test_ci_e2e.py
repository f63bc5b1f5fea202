"""The ``ci`` steps in workflow order, driven by a recorded ``pull_request`` event.

check.yml: changed → fetch → ``mcval check``; measure.yml: changed (re-plan from pr.json)
→ fetch (one matrix cell) → [validation output: written by the test, ``validate`` is not
this module's] → report → comment → status. Then the student pushes a fix and the run
repeats: still exactly one bot comment, edited; the student's fake marker comment stays.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_helpers import (
    INT8_MEASURED,
    INT8_YAML,
    RUNNER,
    ci_main,
    job,
    make_record,
    read_outputs,
    write_cell,
)
from fake_github import FakeGithub

from mcval.ci.plan import slug_of
from mcval.ci.rules import comment_body
from mcval.cli import main as mcval_main
from mcval.render.comment import MARKER, SubmissionReport, render_comment
from mcval.results import ResultRecord

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENT = Path(__file__).parent / "fixtures/events/pull_request_opened_fork.json"
BASE = "mlcourse/compression-table"
FORK = "petrov-a/compression-table"
BOT = "github-actions[bot]"
FP32 = "submissions/ml_masters/whisper-small-fp32.yaml"
INT8 = "submissions/ml_masters/whisper-small-int8.yaml"
INT8_ID = "ml_masters/whisper-small-int8"
POLICY = '[github]\nbot_login = "github-actions[bot]"\n[github.teams]\nml_masters = ["petrov-a"]\n'


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeGithub]:
    """GitHub as the recorded event saw it: the course repo, the student's fork, PR #42."""
    event = json.loads(EVENT.read_text())
    pr = event["pull_request"]
    with FakeGithub() as fake:
        fake.add_token("ro")
        fake.add_token("rw", "pull-requests:write", "statuses:write")
        base_files = {
            "README.md": "# Course\n",
            "mcval.toml": POLICY,
            FP32: (REPO_ROOT / FP32).read_bytes(),
        }
        fake.create_repo(BASE, base_files, sha=pr["base"]["sha"])
        fake.fork(BASE, FORK)
        fake.open_pull(
            BASE,
            FORK,
            {INT8: INT8_YAML},
            author=pr["user"]["login"],
            head_ref=pr["head"]["ref"],
            head_sha=pr["head"]["sha"],
            number=pr["number"],
        )
        # The base branch as actions/checkout leaves it (mcval's policy comes from here).
        checkout = tmp_path / "base"
        for path, content in base_files.items():
            (checkout / path).parent.mkdir(parents=True, exist_ok=True)
            data = content.encode() if isinstance(content, str) else content
            (checkout / path).write_bytes(data)
        monkeypatch.setenv("GITHUB_REPOSITORY", BASE)
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
        monkeypatch.setenv("GITHUB_RUN_ID", "7001")
        monkeypatch.chdir(tmp_path)
        yield fake


def run_check_workflow(mp: pytest.MonkeyPatch, tmp_path: Path, event: Path, tag: str) -> Path:
    """check.yml's steps; returns the folder holding its `pr` artifact."""
    mp.setenv("GITHUB_EVENT_PATH", str(event))
    folder = job(mp, tmp_path, f"check-{tag}", token="ro")
    artifact = folder / "pr"
    argv = ["ci", "changed", "--repo", "base", "--output", str(artifact / "plan.json")]
    assert ci_main([*argv, "--pr-info-out", str(artifact / "pr.json")]) == 0
    listing = folder / "changed.txt"
    assert ci_main(["ci", "fetch", "--repo", "base", "--dest", "base", "--list", str(listing)]) == 0
    paths = [f"base/{p}" for p in listing.read_text().splitlines()]
    assert mcval_main(["check", "--repo", "base", *paths]) == 0
    mp.delenv("GITHUB_EVENT_PATH")
    return artifact


def run_measure_workflow(
    mp: pytest.MonkeyPatch, tmp_path: Path, artifact: Path, workflow_run_head_sha: str, tag: str
) -> tuple[str, ResultRecord]:
    """measure.yml's plan, matrix cell and report jobs; returns the comment and the record."""
    plan = job(mp, tmp_path, f"plan-{tag}", token="ro")
    argv = ["ci", "changed", "--repo", "base", "--pr-info", str(artifact / "pr.json")]
    assert ci_main([*argv, "--head-sha", workflow_run_head_sha]) == 0
    outputs = read_outputs(plan / "output")
    assert outputs["stale"] == "false"
    matrix = json.loads(outputs["matrix"])["include"]
    assert matrix == [{"id": INT8_ID, "path": INT8, "slug": slug_of(INT8_ID)}]

    artifacts = tmp_path / f"artifacts-{tag}"
    for entry in matrix:  # one GPU job per cell
        job(mp, tmp_path, f"measure-{tag}-{entry['slug']}", token="ro")
        work = tmp_path / f"work-{tag}"
        (work / "submissions/ml_masters").mkdir(parents=True)
        (work / FP32).write_bytes((tmp_path / "base" / FP32).read_bytes())
        argv = ["ci", "fetch", "--repo", "base", "--dest", str(work), "--only", entry["id"]]
        argv += ["--pr", outputs["pr"], "--head-sha", outputs["head_sha"]]
        assert ci_main(argv) == 0
        assert (work / entry["path"]).read_bytes() == (tmp_path / "base" / INT8).read_bytes()
        # What `mcval validate --results OUT/results` + the upload step leave (validate is
        # the lead's; its record is built here by the same judge from fixed figures).
        record = make_record(work, entry["path"], INT8_MEASURED)
        write_cell(artifacts, entry["id"], "0\n" if record.verdict == "pass" else "1\n", record)

    report = job(mp, tmp_path, f"report-{tag}", token="rw")
    comment = report / "comment.md"
    argv = ["ci", "report", "--repo", "base", "--artifacts", str(artifacts)]
    argv += ["--matrix", outputs["matrix"], "--head-sha", outputs["head_sha"]]
    assert ci_main([*argv, "--output", str(comment)]) == 0
    result = read_outputs(report / "output")
    assert ci_main(["ci", "comment", "--pr", outputs["pr"], "--markdown", str(comment)]) == 0
    argv = ["ci", "status", "--sha", outputs["head_sha"], "--state", result["state"]]
    assert ci_main([*argv, "--description", result["description"]]) == 0
    return comment.read_text(), record


def test_validation_runs_in_workflow_order(
    world: FakeGithub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    event = json.loads(EVENT.read_text())
    head_sha = event["pull_request"]["head"]["sha"]
    planted = world.add_comment(BASE, 42, "petrov-a", f"{MARKER}\n:white_check_mark: all pass")

    # Run 1: the PR as opened; reported 431 MB, the runner measures 230.1 MB: it fails.
    artifact = run_check_workflow(monkeypatch, tmp_path, EVENT, "1")
    assert json.loads((artifact / "pr.json").read_text()) == {"number": 42, "head_sha": head_sha}
    first, record = run_measure_workflow(monkeypatch, tmp_path, artifact, head_sha, "1")
    assert record.verdict == "fail"
    assert "### ❌ fail · ml_masters/whisper-small-int8 — INT8 dynamic" in first
    (status,) = world.statuses[(BASE, head_sha)]
    assert (status["context"], status["state"], status["description"]) == (
        "mcval",
        "failure",
        "1 submission(s): 0 passed, 1 failed",
    )
    assert status["target_url"] == f"https://github.com/{BASE}/actions/runs/7001"

    # Run 2: the student fixes the size and pushes (a `synchronize` event).
    fixed = INT8_YAML.replace('"431 MB"', "230.1")
    new_sha = world.update_pull(BASE, 42, {INT8: fixed})
    event["action"] = "synchronize"
    event["pull_request"]["head"]["sha"] = new_sha
    sync = tmp_path / "synchronize.json"
    sync.write_text(json.dumps(event))
    artifact = run_check_workflow(monkeypatch, tmp_path, sync, "2")
    assert (tmp_path / "base" / INT8).read_text() == fixed
    posted, record = run_measure_workflow(monkeypatch, tmp_path, artifact, new_sha, "2")
    assert record.verdict == "pass", record.model_dump_json(indent=1)

    bot = world.bot_comments(BASE, 42, BOT)
    assert len(bot) == 1 and bot[0].updated == 1
    rendered = render_comment([SubmissionReport(id=INT8_ID, path=INT8, record=record)])
    assert bot[0].body == comment_body(
        f"{rendered.rstrip()}\n\n<sub>mcval run for commit {new_sha[:7]}.</sub>\n"
    )
    assert bot[0].body.startswith(
        f"{MARKER}\n## mcval: results check\n\n1 submission(s): 1 pass.\n\n"
        "| Submission | Verdict |\n| :--- | :--- |\n"
        "| ml_masters/whisper-small-int8 | ✅ pass |\n\n"
        "<details><summary>✅ pass · ml_masters/whisper-small-int8 — INT8 dynamic · "
        "openai/whisper-small</summary>\n"
    )
    assert f"Runner: {RUNNER} · measured 2025-11-28 08:30 UTC" in bot[0].body
    assert bot[0].body.endswith(f"<sub>mcval run for commit {new_sha[:7]}.</sub>\n")
    assert posted.count(MARKER) == 1
    assert planted.body == f"{MARKER}\n:white_check_mark: all pass" and planted.updated == 0
    assert len(world.comments[(BASE, 42)]) == 2
    (status,) = world.statuses[(BASE, new_sha)]
    assert (status["context"], status["state"], status["description"]) == (
        "mcval",
        "success",
        "1 submission(s): 1 passed",
    )
    assert world.statuses[(BASE, head_sha)][0]["state"] == "failure"  # old commit keeps its own
    summary = (tmp_path / "report-2" / "summary.md").read_text()
    assert summary.rstrip("\n") == bot[0].body.rstrip("\n")


def test_a_hostile_method_name_cannot_ping_or_fake_the_marker(
    world: FakeGithub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    head_sha = world.update_pull(
        BASE,
        42,
        {INT8: INT8_YAML.replace("name: INT8 dynamic", f'name: "@everyone {MARKER} | x"')},
    )
    event = json.loads(EVENT.read_text())
    event["pull_request"]["head"]["sha"] = head_sha
    sync = tmp_path / "synchronize.json"
    sync.write_text(json.dumps(event))
    artifact = run_check_workflow(monkeypatch, tmp_path, sync, "1")
    run_measure_workflow(monkeypatch, tmp_path, artifact, head_sha, "1")
    (bot,) = world.bot_comments(BASE, 42, BOT)
    assert bot.body.count(MARKER) == 1 and bot.body.startswith(MARKER)
    assert "@everyone" not in bot.body
