"""Issue 20: the course's own flow, end to end against the fake GitHub.

A student forks the course repository, adds a row on ``lesson-1-intro`` and opens a pull
request INTO ``lesson-1-intro``. check.yml, measure.yml and, after the merge, publish.yml
run as their steps do (``mcval ci …`` in workflow order, each job with its own token and
checkout): the PR is planned, measured and reported against ``lesson-1-intro`` (its
baseline exists only there), the merge updates that branch's README and ``results/`` and
leaves ``main`` untouched; merges into two lessons publish side by side; a PR into a
branch the policy does not serve gets a neutral status and nothing else. Each branch's
README is a real 2025 course README, checked byte for byte outside its table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_helpers import (
    INT8_MEASURED,
    INT8_YAML,
    ci_main,
    job,
    local_submission,
    make_record,
    read_outputs,
    write_cell,
)
from fake_github import FakeGithub

from mcval.ci.plan import slug_of
from mcval.cli import main as mcval_main
from mcval.commands import table as table_command
from mcval.policy import DEFAULT_HEADING, Policy
from mcval.render.readme import current_block, locate_table, parse_markdown, split_lines
from mcval.results import ResultRecord, save_record

ROOT = Path(__file__).resolve().parents[1]
COURSE = Path(__file__).parent / "fixtures/course-2025"
BASE = "aitalents/model-compression-2025"
FORK = "petrov-a/model-compression-2025"
FORK2 = "ivanova-m/model-compression-2025"
LESSON1, LESSON2 = "lesson-1-intro", "lesson-2-quantization"
README = {
    "main": COURSE / "README-36b8cd1.md",  # the course's front page
    LESSON1: COURSE / "README-061a1c2.md",  # schedule, the table, presentations
    LESSON2: COURSE / "README-0c38655.md",  # "Домашнее задание 2", ends with the table
}
FP32 = "submissions/ml_masters/whisper-small-fp32.yaml"
INT8 = "submissions/ml_masters/whisper-small-int8.yaml"
INT8_ID = "ml_masters/whisper-small-int8"
SQUAD = "submissions/quant_squad/whisper-small-fp32.yaml"
SQUAD_ID = "quant_squad/whisper-small-fp32"
POLICY = (
    '[github]\nbot_login = "github-actions[bot]"\n'
    '[github.teams]\nml_masters = ["petrov-a"]\nquant_squad = ["ivanova-m"]\n'
)
PASSING_INT8 = INT8_YAML.replace('"431 MB"', "230.1")
FP32_MEASURED = INT8_MEASURED.model_copy(
    update={"weights_mb": 922.15, "quality": {"cer": 0.0134, "wer": 0.0383}}
)


def fake_plot(records: list[ResultRecord], policy: Policy) -> bytes:
    """Stands in for the slow SVG renderer (tested in test_table_plot.py)."""
    return ("\n".join(sorted(r.id for r in records)) + "\n").encode()


def outside(text: str) -> tuple[list[str], list[str]]:
    """The lines above and below the README's table (with their endings)."""
    where = locate_table(parse_markdown(text), DEFAULT_HEADING)
    lines = split_lines(text)
    return lines[: where.start], lines[where.end :]


def checkout(fake: FakeGithub, ref: str, dest: Path) -> Path:
    """What actions/checkout leaves: every file of ``ref`` (and a .git for the lock)."""
    with fake.lock:
        commit = fake._resolve(fake.repos[BASE], ref)
        assert commit is not None, ref
        tree = fake.trees[fake.commits[commit]["tree"]]
        files = {path: fake.blobs[blob] for path, blob in tree.items()}
    for path, data in files.items():
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        (dest / path).write_bytes(data)
    (dest / ".git").mkdir(exist_ok=True)
    return dest


def event_file(fake: FakeGithub, number: int, path: Path) -> Path:
    """The ``pull_request`` event payload GitHub writes for the PR as it stands."""
    pull = fake.pulls[(BASE, number)]
    pr = {
        "number": number,
        "head": {"sha": pull.head_sha, "ref": pull.head_ref, "repo": {"full_name": FORK}},
        "base": {"sha": pull.base_sha, "ref": pull.base_ref, "repo": {"full_name": BASE}},
    }
    path.write_text(json.dumps({"action": "opened", "number": number, "pull_request": pr}))
    return path


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeGithub]:
    """The course repository: ``main`` has no submission; each lesson branch was created
    by a maintainer with mcval.toml, its README (its table generated once) and, on
    lesson 1, the team's baseline."""
    monkeypatch.setattr(table_command, "render_plot", fake_plot)
    with FakeGithub() as fake:
        fake.add_token("ro")
        fake.add_token("rw", "pull-requests:write", "statuses:write")
        fake.add_token("publish", "contents:write")
        fake.create_repo(BASE, {"README.md": README["main"].read_bytes(), "mcval.toml": POLICY})
        for branch, extra in ((LESSON1, {FP32: (ROOT / FP32).read_bytes()}), (LESSON2, {})):
            start = tmp_path / f"create-{branch}"
            start.mkdir()
            (start / ".git").mkdir()
            (start / "README.md").write_bytes(README[branch].read_bytes())
            (start / "mcval.toml").write_text(POLICY)
            for path, data in extra.items():
                (start / path).parent.mkdir(parents=True, exist_ok=True)
                (start / path).write_bytes(data)
            # The maintainer replaces the hand-written table once (docs/maintainers.md).
            assert mcval_main(["table", "--repo", str(start), "--force"]) == 0
            fake.create_branch(BASE, branch, {"README.md": (start / "README.md").read_bytes(),
                                              **extra})  # fmt: skip
        fake.fork(BASE, FORK)
        fake.fork(BASE, FORK2)
        for name in ("GITHUB_EVENT_PATH", "GITHUB_ACTIONS"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("GITHUB_REPOSITORY", BASE)
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
        monkeypatch.setenv("GITHUB_RUN_ID", "7001")
        monkeypatch.chdir(tmp_path)
        yield fake


def run_check(mp: pytest.MonkeyPatch, tmp_path: Path, fake: FakeGithub, number: int) -> Path:
    """check.yml: the base SHA checked out, the PR's files fetched as data, `mcval check`."""
    folder = job(mp, tmp_path, f"check-{number}", token="ro")
    pull = fake.pulls[(BASE, number)]
    base = checkout(fake, pull.base_sha, folder / "base")
    mp.setenv("GITHUB_EVENT_PATH", str(event_file(fake, number, folder / "event.json")))
    artifact = folder / "pr"
    argv = ["ci", "changed", "--repo", str(base), "--output", str(artifact / "plan.json")]
    assert ci_main([*argv, "--pr-info-out", str(artifact / "pr.json")]) == 0
    listing = folder / "changed.txt"
    argv = ["ci", "fetch", "--repo", str(base), "--dest", str(base), "--list", str(listing)]
    assert ci_main(argv) == 0
    paths = [str(base / p) for p in listing.read_text().splitlines()]
    if paths:
        assert mcval_main(["check", "--repo", str(base), *paths]) == 0
    mp.delenv("GITHUB_EVENT_PATH")
    return artifact


def plan_job(mp: pytest.MonkeyPatch, tmp_path: Path, fake: FakeGithub, artifact: Path) -> Path:
    """measure.yml's plan job: the DEFAULT branch's policy says which base branch and
    whether it is served; that branch is checked out and the plan made on it."""
    folder = job(mp, tmp_path, "plan", token="ro")
    default = checkout(fake, "main", folder / "default")
    info = json.loads((artifact / "pr.json").read_text())
    argv = ["ci", "changed", "--pr-info", str(artifact / "pr.json"), "--head-sha", info["head_sha"]]
    assert ci_main([*argv, "--repo", str(default), "--base-only"]) == 0
    base = read_outputs(folder / "output")
    if base["served"] == "true":
        world = checkout(fake, base["base_ref"], folder / "world")
        assert ci_main([*argv, "--repo", str(world)]) == 0
    return folder / "output"


def test_a_pull_request_into_a_lesson_is_measured_and_published_on_that_lesson(
    world: FakeGithub,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    main_before = world.branch_sha(BASE, "main")
    lesson2_before = world.branch_sha(BASE, LESSON2)
    pull = world.open_pull(
        BASE, FORK, {INT8: PASSING_INT8}, author="petrov-a", base_ref=LESSON1,
        head_ref="hw-1", title="ml_masters HW-2",
    )  # fmt: skip

    # check.yml: the base branch's world has the baseline (main has none), so check passes.
    artifact = run_check(monkeypatch, tmp_path, world, pull.number)

    # measure.yml: plan on the default branch; the base branch is an output.
    outputs = read_outputs(plan_job(monkeypatch, tmp_path, world, artifact))
    assert (outputs["stale"], outputs["served"], outputs["base_ref"]) == ("false", "true", LESSON1)
    (entry,) = json.loads(outputs["matrix"])["include"]
    assert entry["id"] == INT8_ID

    # The GPU job: mcval from the default branch, the BASE branch checked out as its world.
    cell = job(monkeypatch, tmp_path, "measure", token="ro")
    world_dir = checkout(world, outputs["base_ref"], cell / "world")
    argv = ["ci", "fetch", "--repo", str(world_dir), "--dest", str(world_dir)]
    argv += ["--pr", outputs["pr"], "--head-sha", outputs["head_sha"], "--only", INT8_ID]
    assert ci_main(argv) == 0
    assert (world_dir / INT8).read_text() == PASSING_INT8
    record = make_record(world_dir, INT8, INT8_MEASURED)  # as `mcval validate` stores it
    assert record.verdict == "pass" and record.baseline == "ml_masters/whisper-small-fp32"
    artifacts = tmp_path / "artifacts"
    write_cell(artifacts, INT8_ID, "0\n", record)

    # The report job (default branch): the comment names the lesson and flags the title.
    report = job(monkeypatch, tmp_path, "report", token="rw")
    default = checkout(world, "main", report / "default")
    comment = report / "comment.md"
    argv = ["ci", "report", "--repo", str(default), "--artifacts", str(artifacts)]
    argv += ["--matrix", outputs["matrix"], "--head-sha", outputs["head_sha"]]
    assert ci_main([*argv, "--pr", outputs["pr"], "--output", str(comment)]) == 0
    assert ci_main(["ci", "comment", "--pr", outputs["pr"], "--markdown", str(comment)]) == 0
    result = read_outputs(report / "output")
    argv = ["ci", "status", "--sha", outputs["head_sha"], "--state", result["state"]]
    assert ci_main([*argv, "--description", result["description"]]) == 0
    (posted,) = world.bot_comments(BASE, pull.number, "github-actions[bot]")
    assert (
        "\n## mcval: results check\n\n"
        + (
            "Merging will update the table of `lesson-1-intro` (README.md on that branch).\n\n"
            "⚠️ **Title:** The title says HW-2, the branch `lesson-1-intro` holds homework 1."
            "\n\n1 submission(s): 1 pass.\n"
        )
        in posted.body
    )
    (status,) = world.statuses[(BASE, pull.head_sha)]
    assert (status["state"], status["description"]) == ("success", "1 submission(s): 1 passed")

    # The merge into lesson-1-intro, then publish.yml for that push.
    merged = world.push(BASE, {INT8: PASSING_INT8}, "Merge pull request #1", branch=LESSON1)
    runner = tmp_path / "runner-results"
    save_record(runner, record)  # what the publish runner's `mcval validate` leaves
    publish = job(monkeypatch, tmp_path, "publish", token="publish")
    repo = checkout(world, LESSON1, publish / "repo")
    assert ci_main(["ci", "results", "--repo", str(repo), "--from", str(runner)]) == 0
    assert mcval_main(["table", "--repo", str(repo)]) == 0
    argv = ["ci", "publish", "--repo", str(repo), "--branch", LESSON1, "--base-sha", merged]
    assert ci_main([*argv, "--missing-ok", "--files", "README.md", "results.svg", "results"]) == 0
    assert re.search(rf"published 3 file\(s\) in [0-9a-f]{{12}} on {LESSON1} \(attempt 1\)",
                     capsys.readouterr().out)  # fmt: skip

    # lesson-1-intro: its README's table has the verified row, every other line is the
    # real README's, byte for byte; its results/ holds the record; main is untouched.
    text = world.file_at(BASE, LESSON1, "README.md").decode()
    assert text.encode() == (repo / "README.md").read_bytes()
    assert outside(text) == outside(README[LESSON1].read_text(encoding="utf-8"))
    block = current_block(text, DEFAULT_HEADING)
    assert any(line.startswith("| openai/whisper-small | ml_masters | INT8 dynamic | 230.10 |")
               for line in block), block  # fmt: skip
    stored = world.file_at(BASE, LESSON1, f"results/{INT8_ID}.json")
    assert stored == (repo / f"results/{INT8_ID}.json").read_bytes()
    assert world.file_at(BASE, LESSON1, "results.svg") == f"{INT8_ID}\n".encode()
    assert world.branch_sha(BASE, "main") == main_before
    assert world.file_at(BASE, "main", "README.md") == README["main"].read_bytes()
    assert world.file_at(BASE, "main", f"results/{INT8_ID}.json") is None
    assert world.branch_sha(BASE, LESSON2) == lesson2_before


def test_merges_into_two_lessons_publish_side_by_side(
    world: FakeGithub,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two publish runs at once (one concurrency group per branch): lesson 2's run lands
    while lesson 1's is about to move its ref; both land at the first attempt, each table
    has its own row only, main is untouched."""
    main_before = world.branch_sha(BASE, "main")
    squad_yaml = (ROOT / FP32).read_text().replace("team: ml_masters", "team: quant_squad")
    merges = {
        LESSON1: (INT8, PASSING_INT8, INT8_ID, INT8_MEASURED),
        LESSON2: (SQUAD, squad_yaml, SQUAD_ID, FP32_MEASURED),
    }
    checkouts: dict[str, tuple[Path, str]] = {}
    for branch, (path, text, _, measured) in merges.items():
        sha = world.push(BASE, {path: text}, f"Merge into {branch}", branch=branch)
        repo = checkout(world, branch, tmp_path / f"publish-{branch}")
        runner = tmp_path / f"runner-{branch}"
        record = make_record(repo, path, measured)
        assert record.verdict == "pass", record.report
        save_record(runner, record)
        assert ci_main(["ci", "results", "--repo", str(repo), "--from", str(runner)]) == 0
        assert mcval_main(["table", "--repo", str(repo)]) == 0
        checkouts[branch] = (repo, sha)
    capsys.readouterr()
    job(monkeypatch, tmp_path, "publish", token="publish")

    def publish(branch: str) -> int:
        repo, sha = checkouts[branch]
        argv = ["ci", "publish", "--repo", str(repo), "--branch", branch, "--base-sha", sha]
        return ci_main([*argv, "--files", "README.md", "results.svg", "results"])

    codes: list[int] = []
    world.before_ref_update.append(lambda: codes.append(publish(LESSON2)))
    codes.append(publish(LESSON1))
    assert codes == [0, 0]
    out = capsys.readouterr().out
    for branch in (LESSON1, LESSON2):
        assert re.search(rf"published 3 file\(s\) in [0-9a-f]{{12}} on {branch} \(attempt 1\)",
                         out), out  # fmt: skip
    for branch, (_, _, sub_id, _) in merges.items():
        text = world.file_at(BASE, branch, "README.md").decode()
        assert text.encode() == (checkouts[branch][0] / "README.md").read_bytes()
        assert outside(text) == outside(README[branch].read_text(encoding="utf-8"))
        assert world.file_at(BASE, branch, f"results/{sub_id}.json") is not None
        other = SQUAD_ID if branch == LESSON1 else INT8_ID
        assert world.file_at(BASE, branch, f"results/{other}.json") is None
        assert world.file_at(BASE, branch, "results.svg") == f"{sub_id}\n".encode()
    assert world.branch_sha(BASE, "main") == main_before


def test_publish_refuses_a_branch_the_policy_does_not_serve(
    world: FakeGithub,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world.create_branch(BASE, "feature-x", {"README.md": "# not a lesson\n"})
    before = {b: world.branch_sha(BASE, b) for b in ("main", "feature-x", LESSON1)}
    job(monkeypatch, tmp_path, "publish", token="publish")
    repo = checkout(world, LESSON1, tmp_path / "repo")
    for branch, message in (
        ("feature-x", "error: mcval.toml: --branch: 'feature-x' is not a course branch "
                      "([github] branches = ['main', 'lesson-*']); add a pattern there to "
                      "serve it"),
        ("lesson-1/../main", "error: --branch: 'lesson-1/../main' is not a plain branch name"),
    ):  # fmt: skip
        argv = ["ci", "publish", "--repo", str(repo), "--branch", branch]
        assert ci_main([*argv, "--files", "README.md"]) == 2
        assert capsys.readouterr().err == message + "\n"
    assert {b: world.branch_sha(BASE, b) for b in before} == before
    assert not any(method != "GET" for method, _ in world.requests)


def test_a_pull_request_into_an_unserved_branch_gets_a_neutral_status_only(
    world: FakeGithub,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world.create_branch(BASE, "feature-x", {"mcval.toml": POLICY})
    pull = world.open_pull(
        BASE, FORK, {INT8: PASSING_INT8}, author="petrov-a", base_ref="feature-x",
        title="ml_masters HW-1",
    )  # fmt: skip
    artifact = run_check(monkeypatch, tmp_path, world, pull.number)
    assert json.loads((artifact / "pr.json").read_text()) == {
        "number": pull.number,
        "head_sha": pull.head_sha,
    }
    outputs = read_outputs(plan_job(monkeypatch, tmp_path, world, artifact))
    assert outputs == {
        "stale": "false",
        "served": "false",
        "count": "0",
        "pr": str(pull.number),
        "head_sha": pull.head_sha,
        "description": "not checked: mcval serves main, lesson-*, not feature-x",
    }
    out = capsys.readouterr().out
    notice = (
        f"notice: pull request #{pull.number} merges into 'feature-x', which mcval does not "
        "serve ([github] branches = ['main', 'lesson-*']); nothing is checked"
    )
    assert out.count(notice) == 3  # check: changed and fetch; measure: plan
    # measure.yml's `unserved` job: the neutral status, nothing measured, no comment.
    job(monkeypatch, tmp_path, "unserved", token="rw")
    argv = ["ci", "status", "--sha", outputs["head_sha"], "--state", "success"]
    assert ci_main([*argv, "--description", outputs["description"]]) == 0
    (status,) = world.statuses[(BASE, pull.head_sha)]
    assert (status["context"], status["state"], status["description"]) == (
        "mcval",
        "success",
        "not checked: mcval serves main, lesson-*, not feature-x",
    )
    assert world.comments[(BASE, pull.number)] == []
    assert not (tmp_path / f"check-{pull.number}/base" / INT8).exists()  # nothing fetched


LOCAL = local_submission("ml_masters")


def test_a_lesson_submission_reading_changed_data_is_planned_on_the_lesson(
    world: FakeGithub,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The submissions that decide what else a PR measures are the base branch's: a
    change to data only a lesson-1 submission reads measures that submission. Planned on
    the default branch's files (the control) nothing would measure it and it is refused."""
    data = "submissions/ml_masters/data/eval.jsonl"
    local = "submissions/ml_masters/local.yaml"
    lesson = {local: LOCAL, data: '{"text": "a", "label": 0}\n'}
    world.push(BASE, lesson, "a local submission on lesson 1", branch=LESSON1)
    pull = world.open_pull(
        BASE, FORK, {data: '{"text": "b", "label": 1}\n'}, author="petrov-a",
        base_ref=LESSON1, title="ml_masters HW-1",
    )  # fmt: skip
    artifact = tmp_path / "pr"
    artifact.mkdir()
    (artifact / "pr.json").write_text(
        json.dumps({"number": pull.number, "head_sha": pull.head_sha})
    )
    outputs = read_outputs(plan_job(monkeypatch, tmp_path, world, artifact))
    assert json.loads(outputs["matrix"])["include"] == [
        {"id": "ml_masters/local", "path": local, "slug": slug_of("ml_masters/local")}
    ]
    capsys.readouterr()
    job(monkeypatch, tmp_path, "control", token="ro")
    default = checkout(world, "main", tmp_path / "control/default")
    argv = ["ci", "changed", "--repo", str(default), "--pr", str(pull.number)]
    assert ci_main(argv) == 1
    assert capsys.readouterr().err == (
        f"error: {data}: is read by no submission, so nothing would measure this change; "
        "reference it from a submission's data_files or model.id, or leave it out\n"
    )
