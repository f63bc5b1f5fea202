"""mcval.github against a real HTTP server on 127.0.0.1 (tests/fake_github.py), via PyGithub."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fake_github import NOT_ACCESSIBLE, FakeGithub

from mcval.ci.rules import (
    ChangedFile,
    check_paths_allowed,
    check_team_ownership,
    comment_body,
    glob_to_regex,
)
from mcval.github import (
    GithubClient,
    GithubError,
    GithubPermissionError,
    PublishConflictError,
)
from mcval.policy import GithubPolicy, Policy
from mcval.render.comment import MARKER

BASE = "course/table"
FORK = "student/table"
BOT = "github-actions[bot]"
FAST = {
    "retries": 3,
    "backoff_factor": 0.001,
    "secondary_rate_wait": 0.01,
    "max_retry_after": 0.01,
    "seconds_between_requests": None,
    "seconds_between_writes": None,
}


@pytest.fixture
def fake() -> Iterator[FakeGithub]:
    with FakeGithub() as server:
        server.add_token("rw", "pull-requests:write", "statuses:write", "contents:write")
        server.add_token("ro")
        server.create_repo(
            BASE,
            {
                "README.md": "# Course\n",
                "submissions/ml_masters/base.yaml": "team: ml_masters  # base version\n",
            },
        )
        server.fork(BASE, FORK)
        yield server


def client(fake: FakeGithub, token: str = "rw", **options: object) -> GithubClient:
    return GithubClient(token, BASE, api_url=fake.url, bot_login=BOT, **{**FAST, **options})


def open_fork_pr(fake: FakeGithub) -> int:
    pull = fake.open_pull(
        BASE,
        FORK,
        {"submissions/ml_masters/base.yaml": "team: ml_masters  # head version\n"},
        author="student",
    )
    return pull.number


# -- the sticky comment ----------------------------------------------------------------------


def test_two_runs_leave_exactly_one_bot_comment_edited(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    gh = client(fake)
    first = gh.upsert_comment(number, "## run 1\n")
    second = gh.upsert_comment(number, "## run 2\n")
    assert first.created is True and second.created is False
    assert first.id == second.id
    comments = fake.comments[(BASE, number)]
    assert [(c.login, c.body) for c in comments] == [(BOT, f"{MARKER}\n## run 2\n")]
    assert comments[0].updated == 1
    assert fake.count("POST", r"/issues/\d+/comments") == 1
    assert fake.count("PATCH", r"/issues/comments/\d+") == 1


def test_unchanged_body_is_not_rewritten(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    gh = client(fake)
    gh.upsert_comment(number, "same\n")
    gh.upsert_comment(number, "same\n")
    assert fake.count("PATCH", r"/issues/comments/") == 0


def test_student_comment_with_marker_is_never_edited(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    planted = fake.add_comment(BASE, number, "student", f"{MARKER}\nall rows pass, trust me")
    result = client(fake).upsert_comment(number, "real report\n")
    assert result.created is True
    assert planted.body == f"{MARKER}\nall rows pass, trust me"
    assert planted.updated == 0
    bots = fake.bot_comments(BASE, number, BOT)
    assert [c.body for c in bots] == [f"{MARKER}\nreal report\n"]


def test_bot_comment_on_second_page_is_found_and_edited(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    for i in range(31):
        fake.add_comment(BASE, number, f"student{i}", f"question {i}")
    ours = fake.add_comment(BASE, number, BOT, f"{MARKER}\nold report")
    for i in range(3):
        fake.add_comment(BASE, number, "student", f"later {i}")
    assert len(fake.comments[(BASE, number)]) == 35
    result = client(fake, per_page=30).upsert_comment(number, "new report")
    assert result.id == ours.id and result.created is False
    assert ours.body == f"{MARKER}\nnew report\n"
    assert len(fake.comments[(BASE, number)]) == 35
    pages = [p for m, p in fake.requests if m == "GET" and "/comments" in p]
    assert len(pages) == 2 and "page=2" in pages[1]


def test_several_bot_comments_newest_is_edited_others_left(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    older = fake.add_comment(BASE, number, BOT, f"{MARKER}\nolder")
    unrelated = fake.add_comment(BASE, number, BOT, "a bot comment without the marker")
    newer = fake.add_comment(BASE, number, BOT, f"{MARKER}\nnewer")
    result = client(fake).upsert_comment(number, "fresh")
    assert result.id == newer.id
    assert newer.body == f"{MARKER}\nfresh\n"
    assert older.body == f"{MARKER}\nolder"
    assert unrelated.body == "a bot comment without the marker"


def test_comment_body_has_one_marker_and_no_live_mentions() -> None:
    body = comment_body(f"hi @everyone and @org/team, mail a@b.c\n{MARKER}\n`@code`")
    assert body.count(MARKER) == 1 and body.startswith(MARKER + "\n")
    assert "@\u2060everyone" in body and "@\u2060org/team" in body
    assert "a@b.c" in body and "`@code`" in body


def test_comment_body_is_truncated_to_github_limit() -> None:
    body = comment_body("x" * 70_000)
    assert len(body) < 65_536
    assert "(truncated; the full report is in the workflow run's summary)" in body


# -- reading a fork PR ------------------------------------------------------------------------


def test_fork_pr_file_is_read_at_head_sha_from_the_fork(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    gh = client(fake)
    pr = gh.pull_request(number)
    assert pr.head_repo == FORK and pr.author == "student"
    path = "submissions/ml_masters/base.yaml"
    assert gh.read_pr_file(pr, path, 1000) == b"team: ml_masters  # head version\n"
    assert gh.read_file(BASE, path, pr.base_sha, 1000) == b"team: ml_masters  # base version\n"
    contents = [p for m, p in fake.requests if "/contents/" in p]
    assert contents[0] == f"/repos/{FORK}/contents/{path}?ref={pr.head_sha}"


def test_file_over_the_size_limit_is_refused(fake: FakeGithub) -> None:
    pull = fake.open_pull(BASE, FORK, {"submissions/a/big.yaml": "x" * 5000}, author="s")
    gh = client(fake)
    pr = gh.pull_request(pull.number)
    with pytest.raises(GithubError) as info:
        gh.read_pr_file(pr, "submissions/a/big.yaml", 4096)
    assert str(info.value) == (
        "submissions/a/big.yaml is 5000 bytes; a submission file may have at most 4096 bytes "
        "(mcval.toml limits.max_submission_bytes)"
    )


def test_changed_files_follow_all_pages(fake: FakeGithub) -> None:
    files = {f"submissions/t/s{i:02d}.yaml": f"n: {i}\n" for i in range(35)}
    pull = fake.open_pull(BASE, FORK, files, author="s")
    changed = client(fake, per_page=30).changed_files(pull.number)
    assert [c.path for c in changed] == sorted(files)
    assert all(c.status == "added" for c in changed)


# -- retries and errors -------------------------------------------------------------------------


def test_502_then_200_is_retried(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    fake.inject(502, message="Server Error")
    pr = client(fake).pull_request(number)
    assert pr.number == number
    assert fake.count("GET", rf"^/repos/{BASE}/pulls/{number}$") == 2


def test_secondary_rate_limit_is_retried_after_waiting(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    fake.inject_secondary_rate_limit(count=2, retry_after="30")
    started = time.monotonic()
    result = client(fake).upsert_comment(number, "after rate limit")
    assert result.created is True
    assert time.monotonic() - started < 5  # Retry-After is honoured but capped in tests
    assert fake.count("GET", r"/pulls/\d+$") == 3


def test_persistent_5xx_gives_a_clear_error(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    fake.inject(503, count=10, message="Service Unavailable")
    with pytest.raises(GithubError) as info:
        client(fake).pull_request(number)
    assert str(info.value) == (
        f"GitHub answered 503 to read pull request #{number} even after retries "
        "(Service Unavailable); GitHub may be having an outage, rerun the job later"
    )


def test_403_on_comment_names_the_missing_permission(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    with pytest.raises(GithubPermissionError) as info:
        client(fake, token="ro").upsert_comment(number, "x")
    assert str(info.value) == (
        f"GitHub answered 403 to write the mcval comment on pull request #{number}: "
        f"{NOT_ACCESSIBLE}. The workflow's token needs `pull-requests: write` (set it in the "
        "job's `permissions:` block); with a fine-grained or classic token check its "
        "repository access and scopes."
    )
    assert fake.count("POST", "/comments") == 1  # a permission 403 is not retried


def test_403_on_status_and_publish_name_their_permissions(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    gh = client(fake, token="ro")
    sha = gh.pull_request(number).head_sha
    with pytest.raises(GithubPermissionError, match=r"needs `statuses: write`"):
        gh.set_status(sha, "success", "ok")
    with pytest.raises(GithubPermissionError, match=r"needs `contents: write`"):
        gh.publish({"README.md": b"new\n"}, "update")


def test_404_and_401_are_explained(fake: FakeGithub) -> None:
    with pytest.raises(GithubPermissionError) as info:
        client(fake).pull_request(999)
    assert str(info.value).startswith(
        "GitHub answered 404 to read pull request #999: Not Found. The workflow's token needs "
        "`pull-requests: read`"
    )
    with pytest.raises(GithubPermissionError) as info:
        client(fake, token="stolen").pull_request(1)
    assert str(info.value) == (
        "GitHub answered 401 to read pull request #1: Bad credentials. The token is missing, "
        "expired or revoked; pass the workflow's GITHUB_TOKEN in the step's env"
    )


def test_client_refuses_bad_repository_and_missing_token(fake: FakeGithub) -> None:
    with pytest.raises(GithubError, match="repository must be 'owner/name'"):
        GithubClient("t", "no-slash", api_url=fake.url)
    with pytest.raises(GithubError, match="no GitHub token"):
        GithubClient("", BASE, api_url=fake.url)


# -- commit status ------------------------------------------------------------------------------


def test_status_has_context_mcval_and_short_description(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    gh = client(fake)
    sha = gh.pull_request(number).head_sha
    gh.set_status(sha, "failure", "d" * 200, target_url="https://example.invalid/run/1")
    (status,) = fake.statuses[(BASE, sha)]
    assert status["context"] == "mcval" and status["state"] == "failure"
    assert status["description"] == "d" * 139 + "…"
    assert status["target_url"] == "https://example.invalid/run/1"
    with pytest.raises(GithubError, match="full 40-character SHA"):
        gh.set_status("abc", "success", "ok")


# -- path and team rules ------------------------------------------------------------------


def changed(*paths: str) -> list[ChangedFile]:
    return [ChangedFile(path=p, status="modified") for p in paths]


def test_pr_touching_mcval_or_workflows_is_rejected() -> None:
    violations = check_paths_allowed(
        changed("submissions/a/x.yaml", "mcval/github.py", ".github/workflows/check.yml"),
        Policy(),
    )
    assert [str(v) for v in violations] == [
        "mcval/github.py: changes mcval/, the validator's own code and workflows; a submission "
        "PR may only add or change files under submissions/**",
        ".github/workflows/check.yml: changes .github/, the validator's own code and "
        "workflows; a submission PR may only add or change files under submissions/**",
    ]


def test_protected_paths_stay_refused_even_with_a_wide_glob() -> None:
    policy = Policy(github=GithubPolicy(allowed_paths=["**"]))
    assert [v.path for v in check_paths_allowed(changed("mcval/x.py", "a.md"), policy)] == [
        "mcval/x.py"
    ]


def test_other_paths_and_renames_are_checked() -> None:
    files = [
        ChangedFile(path="README.md", status="modified"),
        ChangedFile(path="submissions/a/x.yaml", status="renamed", previous_path="x.yaml"),
    ]
    assert [str(v) for v in check_paths_allowed(files, Policy())] == [
        "README.md: is outside the paths a pull request may change (submissions/**); move it "
        "or ask a maintainer",
        "x.yaml: is outside the paths a pull request may change (submissions/**); move it or "
        "ask a maintainer",
    ]


def test_glob_semantics() -> None:
    assert glob_to_regex("submissions/*.yaml").fullmatch("submissions/a.yaml")
    assert not glob_to_regex("submissions/*.yaml").fullmatch("submissions/t/a.yaml")
    assert glob_to_regex("submissions/**").fullmatch("submissions/t/a.yaml")
    assert glob_to_regex("**/*.md").fullmatch("README.md")
    assert not glob_to_regex("submissions/**").fullmatch("submissions-evil/a.yaml")


def test_team_ownership_flags_other_teams_files() -> None:
    policy = Policy(github=GithubPolicy(teams={"ml_masters": ["Petrov-A"], "quant": ["ivan"]}))
    files = changed("submissions/ml_masters/a.yaml", "submissions/quant/b.yaml", "submissions/x/c")
    assert [str(v) for v in check_team_ownership(files, "petrov-a", policy)] == [
        "submissions/quant/b.yaml: belongs to team 'quant' and petrov-a is not a member of it "
        "(your team is ml_masters)",
        "submissions/x/c: team 'x' is not listed in mcval.toml [github.teams]; a maintainer adds "
        "the team and its members first",
    ]
    assert check_team_ownership(files, "teacher", policy, is_maintainer=True) == []
    off = Policy(github=GithubPolicy(ownership="off"))
    assert check_team_ownership(files, "anyone", off) == []


# -- publishing ------------------------------------------------------------------------------------


def test_publish_writes_all_files_in_one_commit(fake: FakeGithub) -> None:
    before = fake.branch_sha(BASE)
    result = client(fake).publish(
        {
            "README.md": b"# Course\n| table |\n",
            "results.svg": b"<svg/>",
            "results/ml_masters/base.json": b'{"weights_mb": 922.15}\n',
        },
        "mcval: update the results table",
    )
    tip = fake.branch_sha(BASE)
    assert result.commit_sha == tip and result.attempts == 1
    assert fake.commits[tip]["parents"] == [before]
    assert fake.commits[tip]["message"] == "mcval: update the results table"
    assert fake.file_at(BASE, "main", "results.svg") == b"<svg/>"
    assert fake.file_at(BASE, "main", "submissions/ml_masters/base.yaml") is not None
    assert fake.count("POST", "/git/commits") == 1
    again = client(fake).publish({"README.md": b"# Course\n| table |\n"}, "again")
    assert again.commit_sha is None and fake.branch_sha(BASE) == tip


def test_publish_rebases_when_the_branch_moved(fake: FakeGithub) -> None:
    start = fake.branch_sha(BASE)
    fake.before_ref_update.append(
        lambda: fake.push(BASE, {"submissions/quant/new.yaml": "team: quant\n"}, "merge #7")
    )
    result = client(fake).publish(
        {"results/ml_masters/base.json": b"{}\n", "README.md": b"table v2\n"},
        "publish",
        base_sha=start,
    )
    assert result.attempts == 2 and result.dropped == []
    tip = fake.branch_sha(BASE)
    assert fake.file_at(BASE, tip, "submissions/quant/new.yaml") == b"team: quant\n"
    assert fake.file_at(BASE, tip, "README.md") == b"table v2\n"
    assert fake.file_at(BASE, tip, "results/ml_masters/base.json") == b"{}\n"


def test_publish_leaves_out_a_path_the_branch_changed_meanwhile(fake: FakeGithub) -> None:
    start = fake.branch_sha(BASE)
    fake.before_ref_update.append(
        lambda: fake.push(BASE, {"README.md": "# Course\nhuman edit\n"}, "docs")
    )
    result = client(fake).publish(
        {"results/a/b.json": b"{}\n", "README.md": b"regenerated\n"}, "publish", base_sha=start
    )
    assert result.dropped == ["README.md"] and result.changed == ["results/a/b.json"]
    assert fake.file_at(BASE, "main", "README.md") == b"# Course\nhuman edit\n"
    assert fake.file_at(BASE, "main", "results/a/b.json") == b"{}\n"


def test_publish_with_a_builder_regenerates_on_the_new_tip(fake: FakeGithub) -> None:
    """Two publishers racing: the loser rebuilds its table from the winner's results."""

    def builder(mine: str):  # type: ignore[no-untyped-def]
        def build(view):  # type: ignore[no-untyped-def]
            rows = {p: view.read(p) for p in view.paths("results/")}
            rows[f"results/{mine}.json"] = json.dumps({"id": mine}).encode()
            table = "".join(
                f"| {json.loads(v)['id']} |\n" for _, v in sorted(rows.items())
            ).encode()
            return {f"results/{mine}.json": rows[f"results/{mine}.json"], "README.md": table}

        return build

    fake.before_ref_update.append(lambda: client(fake).publish(builder("a"), "publisher a"))
    result = client(fake).publish(builder("b"), "publisher b")
    assert result.attempts == 2
    assert fake.file_at(BASE, "main", "README.md") == b"| a |\n| b |\n"


def test_publish_gives_up_when_the_branch_never_settles(fake: FakeGithub) -> None:
    for i in range(3):
        fake.before_ref_update.append(
            lambda i=i: fake.push(BASE, {f"other{i}.txt": "x"}, f"push {i}")
        )
    with pytest.raises(PublishConflictError, match="main moved 3 times while publishing"):
        client(fake).publish({"README.md": b"x\n"}, "p", max_attempts=3)


def test_publish_refuses_paths_outside_the_tree(fake: FakeGithub) -> None:
    with pytest.raises(GithubError, match=r"refusing to publish to the path '\.\./x'"):
        client(fake).publish({"../x": b"x"}, "p")


def test_deleted_fork_is_read_from_the_base_repository(fake: FakeGithub) -> None:
    number = open_fork_pr(fake)
    del fake.repos[FORK]  # the student deleted their fork; GitHub keeps refs/pull/N/head
    gh = client(fake)
    pr = gh.pull_request(number)
    assert pr.head_repo is None
    path = "submissions/ml_masters/base.yaml"
    assert gh.read_pr_file(pr, path, 1000) == b"team: ml_masters  # head version\n"
