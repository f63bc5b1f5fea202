"""Concurrency: two `mcval table` runs on one checkout, and publishers racing on GitHub.

The checkout lock (``mcval.lock``) makes read-compute-write of ``mcval table`` one unit,
so a run that read ``results/`` before another run's new row cannot write its older table
last; a control test shows that row really is lost without the lock. On GitHub, publishers
that race rebuild their commit on the new tip (``GithubClient.publish`` with a builder),
so every row of every publisher is in the final README.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ci_helpers import FAST_CLIENT, ci_main
from fake_github import FakeGithub
from fixtures.records import make_record
from tiny_models import write_submission

from mcval.cli import main as mcval_main
from mcval.commands import table as table_command
from mcval.errors import McvalError
from mcval.github import BranchView, GithubClient
from mcval.lock import checkout_lock, lock_path
from mcval.policy import DEFAULT_HEADING, Policy
from mcval.render.readme import GENERATED_MARKER, current_block, replace_table
from mcval.render.table import HEADERS, render_block
from mcval.results import ResultRecord, save_record

HEADER = "| " + HEADERS["ru"]["model"] + " |"


def add_row(root: Path, sub_id: str) -> ResultRecord:
    """A submission file and its passing result (what a merge plus `validate` leave)."""
    team, name = sub_id.split("/")
    write_submission(root, team, name, "schema: 1\n")
    record = make_record(sub_id, f"org/{name}", "fp32", weights_mb=10.0, latency_cpu_ms=5.0)
    save_record(root / "results", record)
    return record


README = f"# Course\n\nText before the table.\n\n## {DEFAULT_HEADING}\n"
"""A README with the table's heading (without it, `mcval table` refuses the file)."""


def table_rows(readme: str) -> list[str]:
    """Ids (model column) of the rows of the one mcval table in ``readme``."""
    assert readme.count(GENERATED_MARKER) == 1
    assert sum(1 for line in readme.splitlines() if line.startswith(HEADER)) == 1
    block = current_block(readme, DEFAULT_HEADING)
    return [line.split(" | ")[0].removeprefix("| ") for line in block[2:] if line.startswith("| ")]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "README.md").write_text(README, encoding="utf-8")
    add_row(root, "alpha/first")
    return root


def ids_plot(records: list[ResultRecord], policy: Policy) -> bytes:
    return ("\n".join(sorted(r.id for r in records)) + "\n").encode()


def race_two_table_runs(root: Path, monkeypatch: pytest.MonkeyPatch, a_waits_s: float) -> None:
    """Run A reads results/ and is slow to finish; meanwhile a new row lands and run B
    starts. A waits (up to ``a_waits_s``) for B to finish before it writes: without the
    lock B finishes first and A's older table lands last."""
    a_inside = threading.Event()
    b_done = threading.Event()

    def plot(records: list[ResultRecord], policy: Policy) -> bytes:
        if threading.current_thread().name == "table-A":
            a_inside.set()
            b_done.wait(timeout=a_waits_s)
        return ids_plot(records, policy)

    monkeypatch.setattr(table_command, "render_plot", plot)
    codes: dict[str, int] = {}

    def table(name: str) -> None:
        codes[name] = mcval_main(["table", "--repo", str(root)])
        if name == "table-B":
            b_done.set()

    first = threading.Thread(target=table, args=("table-A",), name="table-A")
    first.start()
    assert a_inside.wait(timeout=30)
    add_row(root, "beta/second")  # merged while run A works
    second = threading.Thread(target=table, args=("table-B",), name="table-B")
    second.start()
    first.join(timeout=60)
    second.join(timeout=60)
    assert codes == {"table-A": 0, "table-B": 0}


def test_two_table_runs_at_once_keep_every_row(
    checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    race_two_table_runs(checkout, monkeypatch, a_waits_s=1.0)  # B is blocked: A times out
    readme = (checkout / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# Course\n\nText before the table.\n")
    assert table_rows(readme) == ["org/first", "org/second"]
    assert (checkout / "results.svg").read_bytes() == b"alpha/first\nbeta/second\n"
    assert lock_path(checkout) == checkout / ".git" / "mcval.lock"
    assert not (checkout / ".mcval.lock").exists()  # the lock lives in .git/, not the tree
    assert "Traceback" not in capsys.readouterr().err


def test_without_the_lock_the_race_loses_a_row(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: the same interleaving with the lock disabled loses beta/second, so the test
    above passes because of the lock, not by luck."""
    monkeypatch.setattr(table_command, "checkout_lock", lambda root: contextlib.nullcontext())
    race_two_table_runs(checkout, monkeypatch, a_waits_s=30.0)  # B finishes: A goes on
    readme = (checkout / "README.md").read_text(encoding="utf-8")
    assert table_rows(readme) == ["org/first"]


def test_lock_waits_then_times_out_with_one_line(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        checkout_lock(checkout),  # held: a second acquire waits, even in the same process
        pytest.raises(McvalError) as info,
        checkout_lock(checkout, timeout_s=0.2),
    ):
        pass  # pragma: no cover - never acquired
    assert str(info.value) == (
        f"another mcval run has held the lock {checkout / '.git' / 'mcval.lock'} for over "
        "0.2 s; wait for it to finish and run again"
    )
    with checkout_lock(checkout, timeout_s=0.2):  # released: free again
        pass


def test_checkout_without_git_dir_locks_a_gitignored_file(tmp_path: Path) -> None:
    assert lock_path(tmp_path) == tmp_path / ".mcval.lock"
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().splitlines()
    assert ".mcval.lock" in ignored


@pytest.mark.slow
def test_two_table_processes_at_once(checkout: Path) -> None:
    """Two real `mcval table` processes (real plot) started together: both succeed, the
    lock orders them (one regenerates, the other finds it done), one table remains."""
    add_row(checkout, "beta/second")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mcval.cli", "table", "--repo", str(checkout)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("Traceback" not in err for _out, err in outputs)
    first_lines = sorted(out.splitlines()[0] for out, _err in outputs)
    readme = checkout / "README.md"
    assert first_lines == [
        f"{readme}: table regenerated (2 rows)",
        f"{readme}: unchanged (2 rows)",
    ]
    assert table_rows(readme.read_text(encoding="utf-8")) == ["org/first", "org/second"]
    assert mcval_main(["table", "--check", "--repo", str(checkout)]) == 0


# -- publishers racing on the default branch -----------------------------------------------------

BASE = "course/table"


@pytest.fixture
def fake() -> Iterator[FakeGithub]:
    with FakeGithub() as server:
        server.add_token("rw", "contents:write")
        server.create_repo(BASE, {"README.md": README, "submissions/alpha/first.yaml": "x\n"})
        yield server


def client(fake: FakeGithub) -> GithubClient:
    return GithubClient("rw", BASE, api_url=fake.url, **FAST_CLIENT)


def builder(record: ResultRecord, barrier: threading.Barrier) -> Callable[[BranchView], Any]:
    """What the publish job commits: its own result plus README regenerated (real renderer)
    from every result on the tip it is given; the first build waits for all publishers,
    so all of them start from the same tip and all but one must rebuild."""
    first = [True]
    mine = f"results/{record.id}.json"
    data = (json.dumps(record.model_dump(mode="json"), sort_keys=True, indent=2) + "\n").encode()

    def build(view: BranchView) -> dict[str, bytes]:
        stored = {p: view.read(p) for p in view.paths("results/") if p != mine}
        records = [ResultRecord.model_validate_json(raw or b"") for raw in stored.values()]
        records = sorted([*records, record], key=lambda r: r.id)
        readme = (view.read("README.md") or b"").decode()
        block = render_block(records, Policy(), "results.svg")
        new = replace_table(readme, DEFAULT_HEADING, block).encode()
        if first[0]:
            first[0] = False
            barrier.wait(timeout=30)
        return {mine: data, "README.md": new}

    return build


def test_parallel_publishers_lose_no_row(fake: FakeGithub) -> None:
    records = [
        make_record(f"team{i}/model{i}", f"org/model{i}", "fp32", weights_mb=float(i + 1))
        for i in range(3)
    ]
    barrier = threading.Barrier(len(records))
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def publish(record: ResultRecord) -> None:
        try:
            results[record.id] = client(fake).publish(
                builder(record, barrier), f"mcval: {record.id}"
            )
        except BaseException as exc:  # reported below, with the thread's own error
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(r,)) for r in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    # All built on the same tip, so exactly one commit landed first time; the others
    # were refused (not a fast-forward) and rebuilt on the new tip.
    attempts = sorted(r.attempts for r in results.values())
    assert attempts[0] == 1 and attempts[1] >= 2 and attempts[2] >= 2
    readme = (fake.file_at(BASE, "main", "README.md") or b"").decode()
    assert readme.startswith(README)
    assert table_rows(readme) == ["org/model0", "org/model1", "org/model2"]
    for record in records:
        assert fake.file_at(BASE, "main", f"results/{record.id}.json") is not None
    # One linear history: every publisher's commit is on the branch, one after another.
    sha = fake.branch_sha(BASE)
    messages = []
    while fake.commits[sha]["parents"]:
        messages.append(fake.commits[sha]["message"])
        sha = fake.commits[sha]["parents"][0]
    assert sorted(messages) == [f"mcval: {r.id}" for r in records]


def test_two_ci_publish_runs_at_once_keep_every_file(
    fake: FakeGithub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`mcval ci publish` from two checkouts made from the same commit (two merges close
    together, without the workflow's concurrency group): both succeed, both results land,
    and the README the branch changed meanwhile is left out with a warning, never
    overwritten with a table missing the other row. The next serialized run, from the
    tip, regenerates the README with both rows."""
    monkeypatch.setattr(table_command, "render_plot", ids_plot)
    monkeypatch.setenv("GITHUB_TOKEN", "rw")
    monkeypatch.setenv("GITHUB_REPOSITORY", BASE)
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    for name in ("GITHUB_EVENT_PATH", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    base_sha = fake.branch_sha(BASE)
    checkouts = []
    for name in ("first", "second"):
        root = tmp_path / name
        (root / ".git").mkdir(parents=True)
        (root / "README.md").write_text(README)
        add_row(root, f"alpha/{name}")
        assert mcval_main(["table", "--repo", str(root)]) == 0
        checkouts.append(root)
    capsys.readouterr()
    codes: list[int] = []

    def publish(root: Path) -> None:
        codes.append(
            ci_main(
                [
                    *("ci", "publish", "--repo", str(root), "--base-sha", base_sha),
                    *("--files", "README.md", "results"),
                ]
            )
        )

    threads = [threading.Thread(target=publish, args=(root,)) for root in checkouts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    out, err = capsys.readouterr()
    assert codes == [0, 0], out + err
    assert "Traceback" not in out + err
    assert err.splitlines() == [
        "warning: README.md changed on the branch while this run worked; left out, the run "
        "for that push regenerates it"
    ]
    for name in ("first", "second"):
        assert fake.file_at(BASE, "main", f"results/alpha/{name}.json") is not None
    # The next run (queued by the concurrency group) starts from the tip: both rows.
    tip = tmp_path / "tip"
    (tip / ".git").mkdir(parents=True)
    for path in ("README.md", "results/alpha/first.json", "results/alpha/second.json"):
        (tip / path).parent.mkdir(parents=True, exist_ok=True)
        (tip / path).write_bytes(fake.file_at(BASE, "main", path) or b"")
    for name in ("first", "second"):
        write_submission(tip, "alpha", name, "schema: 1\n")
    assert mcval_main(["table", "--repo", str(tip)]) == 0
    assert ci_main(["ci", "publish", "--repo", str(tip), "--files", "README.md"]) == 0
    readme = (fake.file_at(BASE, "main", "README.md") or b"").decode()
    assert table_rows(readme) == ["org/first", "org/second"]
