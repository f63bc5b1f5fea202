"""Faults injected into the real pipeline: each hits one submission (or one step), which
errors with a clear reason while the others complete, and README.md and results/ stay
consistent afterwards (every record parses, no temporary file, the table matches).

The measuring children of the faulty models are forked from this process
(``LocalForkLauncher``) with the functions below in place of ``mcval.models.load_model`` and
``mcval.tasks.get_task``: a model that is OOM-killed, hangs, or raises inside forward; a hub
model is fetched with the network down through the real backend and launcher.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ci_helpers import ci_main
from fake_github import FakeGithub
from test_validate import ENV, measurement, write_row
from tiny_models import LOAD_TOLERANT_TOML, write_submission

import mcval.models
import mcval.tasks
from mcval.cli import main as mcval_main
from mcval.commands.table import submission_ids
from mcval.measure.launchers import LocalForkLauncher
from mcval.policy import Policy
from mcval.render.comment import MARKER
from mcval.render.readme import GENERATED_MARKER, current_block
from mcval.results import load_record

SHA = "0123456789abcdef0123456789abcdef01234567"
HANG_LIMIT_S = 12
"""Room for the child's torch import on a busy machine before the hang starts."""
FORWARD_ERROR = "mat1 and mat2 shapes cannot be multiplied (1x64 and 32x64)"


# -- test backend (patched in before the measuring child is forked) ----------------------------


def load_model(
    spec: Any, repo_root: Path, device: str, policy: Any, model_class: type, **kw: Any
) -> Any:
    import torch

    behaviour = spec.id.split("/")[-1]
    if behaviour == "oom-killed":
        block = bytearray(96 * 2**20)
        for i in range(0, len(block), 4096):  # really resident, as before an OOM kill
            block[i] = 1
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does
    if behaviour == "hang":
        time.sleep(3600)
    torch.manual_seed(0)
    model: torch.nn.Module = torch.nn.Linear(64, 64)
    if behaviour == "forward-raises":

        class Broken(torch.nn.Linear):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                raise RuntimeError(FORWARD_ERROR)

        model = Broken(64, 64)
    return SimpleNamespace(
        model=model, source=f"test:{behaviour}", files=[], files_bytes=0, warnings=[]
    )


class _Task:
    name = "text-classification"
    default_metrics = ("accuracy",)

    def model_class(self) -> type:
        return object

    def load_preprocessor(self, source: Any, revision: Any, gguf_file: Any) -> None:
        return None

    def benchmark_call(self, model: Any, pre: Any, benchmark: Any, device: str) -> Callable:
        import torch

        x = torch.ones(1, 64)
        return lambda: model(x)

    def evaluate(self, model: Any, pre: Any, evaluation: Any, root: Path, device: str) -> dict:
        import torch

        out = model(torch.eye(64))
        # "accuracy" of reproducing the argmax of its own weights: 1.0 for any Linear.
        expected = (model.weight.T + model.bias).argmax(dim=1)
        return {"accuracy": float((out.argmax(dim=1) == expected).float().mean())}


def get_task(name: str) -> _Task:
    return _Task()


# -- the repository --------------------------------------------------------------------------

LINEAR_MB = (64 * 64 + 64) * 4 / 2**20  # the Linear(64, 64) every healthy fake returns


def submission(model_id: str, weights: float = round(LINEAR_MB, 4)) -> str:
    return (
        "schema: 1\n"
        "team: alpha\n"
        "model:\n"
        f"  id: {model_id}\n"
        f"  revision: {SHA}\n"
        "  task: text-classification\n"
        "method:\n"
        "  name: fp32\n"
        "evaluation:\n"
        "  dataset: {path: json, data_files: [data/eval.jsonl]}\n"
        "  metrics: [accuracy]\n"
        "benchmark:\n"
        "  input: {tokens: 16}\n"
        "reported:\n"
        f"  weights_mb: {weights}\n"
        "  quality: {accuracy: 1.0}\n"
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "eval.jsonl").write_text('{"text": "a b", "label": "x"}\n')
    (root / "README.md").write_text(
        f"# Course\n\nIntro text stays byte for byte.\n\n## {Policy().table.heading}\n"
    )
    (root / "mcval.toml").write_text(
        "[measure]\nwarmup_calls = 1\nmin_calls = 2\nmin_seconds = 0.05\nmax_seconds = 5\n"
        "threads = 1\ntime_limit_s = 240\n" + LOAD_TOLERANT_TOML
    )
    monkeypatch.chdir(root)
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    return root


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    # `mcval ci` steps get a GitHub client with fast retries (ci_main); the rest the real CLI.
    code = ci_main(argv) if argv[:1] == ["ci"] else mcval_main(argv)
    out, err = capsys.readouterr()
    assert "Traceback (most recent call last)" not in out + err, out + err
    return code, out, err


def assert_consistent(root: Path) -> list[str]:
    """results/ holds only complete records and no temporary file; README.md has exactly
    one table whose rows are the passing records of existing submissions; `mcval table
    --check` agrees."""
    results = root / "results"
    leftovers = [p.name for p in results.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    records = [load_record(p) for p in sorted(results.glob("*/*.json"))]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# Course\n\nIntro text stays byte for byte.\n")
    # One marker under the verified table, one more above the rows reported, not verified.
    assert readme.count(GENERATED_MARKER) == (2 if "**Заявлено командами" in readme else 1)
    block = current_block(readme, Policy().table.heading)
    verified = block[: block.index("")]  # the verified table ends at its first blank line
    rows = [line for line in verified if line.startswith("| ") and "| :---" not in line][1:]
    present = submission_ids(root, Policy())  # a deleted submission takes its row along
    passing = sorted(r.id for r in records if r.verdict == "pass" and r.id in present)
    assert len(rows) == len(passing)
    assert mcval_main(["table", "--check", "--repo", str(root)]) == 0
    return passing


# -- a measuring child that dies, hangs or raises; the hub unreachable ------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_each_failing_child_is_its_submissions_error_and_the_others_complete(
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mcval.measure import measurement as runner

    names = {
        "ok": "fault/ok",
        "oom": "fault/oom-killed",
        "hang": "fault/hang",
        "forward": "fault/forward-raises",
        "network": "org/remote-model",
    }
    for name, model_id in names.items():
        write_submission(repo, "alpha", name, submission(model_id))
    # Network down: the hub's address refuses connections and nothing is cached.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    real = runner.measure_submission

    def measure(loaded: Any, root: Path, policy: Policy, devices: Any, *args: Any) -> Any:
        behaviour = loaded.submission.model.id.split("/")[-1]
        if loaded.submission.model.id.startswith("org/"):
            return real(loaded, root, policy, devices, *args)  # the real loading code
        if behaviour == "hang":
            limits = policy.measure.model_copy(update={"time_limit_s": HANG_LIMIT_S})
            policy = policy.model_copy(update={"measure": limits})
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(mcval.models, "load_model", load_model)
            patch.setattr(mcval.tasks, "get_task", get_task)
            return real(loaded, root, policy, devices, *args, launcher=LocalForkLauncher())

    monkeypatch.setattr(runner, "measure_submission", measure)
    comment = tmp_path / "comment.md"
    code, out, _err = run(
        ["validate", "submissions", "--device", "cpu", "--markdown", str(comment)], capsys
    )
    # The children that failed decide (1); the unreachable hub is the runner's, not the file's.
    assert code == 1
    headers = [line for line in out.splitlines() if re.match(r"^[A-Z]+ alpha/", line)]
    assert headers == [
        "ERROR alpha/forward  submissions/alpha/forward.yaml",
        "ERROR alpha/hang  submissions/alpha/hang.yaml",
        "UNMEASURED alpha/network  submissions/alpha/network.yaml",
        "PASS alpha/ok  submissions/alpha/ok.yaml",
        "ERROR alpha/oom  submissions/alpha/oom.yaml",
    ]
    errors = [line for line in out.splitlines() if line.startswith("  error ")]
    patterns = [
        rf"  error cpu: raised RuntimeError: {re.escape(FORWARD_ERROR)} at .*test_faults\.py:"
        r"\d+ in forward; after \d+\.\d s; peak memory \d+ MB",
        rf"  error cpu: timed out: still running after {HANG_LIMIT_S}\.\d s \(time limit "
        rf"{HANG_LIMIT_S} s\), so it was killed( during '[^']+')?; peak memory so far \d+ MB",
        r"  error cpu: the measuring process was killed by SIGKILL \(most likely the "
        r"out-of-memory killer\) after \d+\.\d s; peak memory \d+ MB",
    ]
    assert len(errors) == len(patterns), out
    for line, pattern in zip(errors, patterns, strict=True):
        assert re.fullmatch(pattern, line), line
    (runner,) = [line for line in out.splitlines() if "the runner could not" in line]
    assert re.fullmatch(
        r"  the runner could not reach the Hugging Face Hub \(listing the files of "
        r"'org/remote-model' failed \(ConnectError: .*\); check the network\); this is not a "
        r"problem of the submission; re-run",
        runner,
    ), runner
    oom = load_record(repo / "results" / "alpha" / "oom.json")
    assert oom.verdict == "error" and oom.measured.weights_mb is None
    assert oom.measurement["details"]["errors"][0]["kind"] == "signal"
    ok = load_record(repo / "results" / "alpha" / "ok.json")
    assert ok.verdict == "pass"
    assert ok.measured.weights_mb == pytest.approx(LINEAR_MB)
    assert ok.measured.quality == {"accuracy": 1.0}
    assert not (repo / "results" / "alpha" / "network.json").exists()
    markdown = comment.read_text(encoding="utf-8")
    assert markdown.count(MARKER) == 1
    assert "5 submission(s): 1 pass, 3 error, 1 could not be measured." in markdown
    assert "⛔" not in markdown

    code, out, _err = run(["table"], capsys)
    assert code == 0
    assert assert_consistent(repo) == ["alpha/ok"]


# -- CUDA requested where there is none ----------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "measure"])
def test_cuda_requested_but_absent_is_one_line_and_exit_2(
    repo: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_submission(repo, "alpha", "ok", submission("fault/ok"))
    code, _out, err = run([command, "submissions/alpha/ok.yaml", "--device", "cuda"], capsys)
    assert code == 2
    line = (
        "error: --device cuda: no CUDA GPU is available on this machine "
        "(torch.cuda.is_available() is False); measure with --device cpu"
    )
    assert err.splitlines() == [line]
    assert not (repo / "results").exists()


# -- a full disk --------------------------------------------------------------------------------


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


@pytest.fixture
def two_rows(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """Two passing, stored and tabled submissions (the child replaced by a fixed figure)."""
    from mcval.measure import measurement as runner

    monkeypatch.setattr(runner, "measure_submission", lambda *a, **k: measurement())
    monkeypatch.setattr("mcval.validate.Validator.environment_class", ENV.environment_class)
    monkeypatch.setattr("mcval.commands.table.render_plot", lambda records, policy: b"<svg/>")
    write_row(repo, "a")
    write_row(repo, "b")
    assert run(["validate", "submissions", "--device", "cpu"], capsys)[0] == 0
    assert run(["table"], capsys)[0] == 0
    assert assert_consistent(repo) == ["alpha/a", "alpha/b"]
    return repo


def test_disk_full_while_storing_one_result(
    two_rows: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The write of b's new result fails at fsync (data half on disk): b's old result
    stays byte for byte, its temporary file is removed, b reports why, a completes."""
    repo = two_rows
    stored = repo / "results" / "alpha" / "b.json"
    old = stored.read_bytes()
    readme = (repo / "README.md").read_bytes()
    path = repo / "submissions" / "alpha" / "b.yaml"  # a new revision: b is measured again
    path.write_text(path.read_text().replace("0123456789abcdef0123", "fedcba98765432100123"))
    real_fsync = os.fsync
    failed: list[str] = []

    def fsync(fd: int) -> None:
        target = _fd_path(fd)
        if re.search(r"/results/alpha/\.b\.json\..*\.tmp$", target):
            failed.append(target)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, out, _err = run(["validate", "submissions", "--device", "cpu"], capsys)
    assert len(failed) == 1
    assert code == 1
    assert "PASS alpha/a  submissions/alpha/a.yaml" in out
    assert "ERROR alpha/b  submissions/alpha/b.yaml" in out
    assert (
        "  error the result could not be stored in results/alpha/b.json: No space left on "
        "device; the stored result (if any) is unchanged, run again once this is fixed"
    ) in out.splitlines()
    assert stored.read_bytes() == old
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert run(["table"], capsys)[0] == 0
    assert (repo / "README.md").read_bytes() == readme  # b's stored row is still the truth
    assert assert_consistent(repo) == ["alpha/a", "alpha/b"]


def test_disk_full_while_writing_the_readme(
    two_rows: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = two_rows
    readme = repo / "README.md"
    before = readme.read_bytes()
    (repo / "submissions" / "alpha" / "b.yaml").unlink()  # the table would lose b's row
    real_replace = os.replace

    def replace(src: Any, dst: Any, **kw: Any) -> None:
        if str(dst) == str(readme):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)
    code, _out, err = run(["table"], capsys)
    assert code == 2
    assert err.splitlines() == [
        f"error: cannot write {readme}: No space left on device; it is left as it was"
    ]
    assert readme.read_bytes() == before
    assert [p.name for p in repo.iterdir() if p.name.startswith(".README")] == []
    monkeypatch.setattr(os, "replace", real_replace)
    assert run(["table"], capsys)[0] == 0
    assert assert_consistent(repo) == ["alpha/a"]


# -- GitHub failing -----------------------------------------------------------------------------

BASE = "course/table"


@pytest.fixture
def github(repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeGithub]:
    with FakeGithub() as fake:
        fake.add_token("rw", "pull-requests:write", "statuses:write", "contents:write")
        fake.add_token("ro")
        fake.create_repo(BASE, {"README.md": "# Course\n"})
        fake.fork(BASE, "student/table")
        monkeypatch.setenv("GITHUB_TOKEN", "rw")
        monkeypatch.setenv("GITHUB_REPOSITORY", BASE)
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        for name in ("GITHUB_EVENT_PATH", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_RUN_ID"):
            monkeypatch.delenv(name, raising=False)
        yield fake


def test_publish_during_a_github_outage_writes_nothing_then_a_rerun_writes_all(
    github: FakeGithub, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # (Result records are vetted against the merged submissions: test_ci_publish_vetting.)
    (repo / "README.md").write_text("# Course\n| table |\n")
    (repo / "results.svg").write_text("<svg/>\n")
    tip = github.branch_sha(BASE)
    github.inject(503, count=20, message="Service Unavailable", method="POST")
    argv = ["ci", "publish", "--repo", str(repo), "--files", "README.md", "results.svg"]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert err.splitlines() == [
        "error: GitHub answered 503 to publish to main even after retries (Service "
        "Unavailable); GitHub may be having an outage, rerun the job later"
    ]
    assert github.branch_sha(BASE) == tip  # no half-made commit on the branch
    github.faults.clear()
    code, out, err = run(argv, capsys)
    assert code == 0 and out.startswith("published 2 file(s) in ")
    assert github.file_at(BASE, "main", "README.md") == b"# Course\n| table |\n"
    assert github.file_at(BASE, "main", "results.svg") == b"<svg/>\n"


def test_comment_survives_5xx_and_secondary_rate_limits(
    github: FakeGithub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pull = github.open_pull(BASE, "student/table", {"submissions/alpha/a.yaml": "x\n"}, "s")
    markdown = tmp_path / "comment.md"
    markdown.write_text("## mcval: results check\n")
    github.inject(502, count=1, message="Bad Gateway")
    github.inject_secondary_rate_limit(count=2, retry_after="30")
    argv = ["ci", "comment", "--pr", str(pull.number), "--markdown", str(markdown)]
    code, out, _err = run(argv, capsys)
    assert code == 0 and out.startswith("created comment ")
    markdown.write_text("## mcval: results check, run 2\n")
    github.inject(500, count=2)
    assert run(argv, capsys)[0] == 0
    (bot,) = github.bot_comments(BASE, pull.number, "github-actions[bot]")
    assert bot.body == f"{MARKER}\n## mcval: results check, run 2\n"


def test_rate_limit_that_never_ends_and_a_403_are_one_line_each(
    github: FakeGithub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pull = github.open_pull(BASE, "student/table", {"submissions/alpha/a.yaml": "x\n"}, "s")
    sha = pull.head_sha
    github.inject_secondary_rate_limit(count=20)
    argv = ["ci", "status", "--sha", sha, "--state", "success", "--description", "ok"]
    code, _out, err = run(argv, capsys)
    assert code == 2
    assert err.splitlines() == [
        f"error: GitHub kept rate-limiting set the 'mcval' status on {sha[:12]} after "
        "retries: You have exceeded a secondary rate limit. Please wait a few minutes before "
        "you try again. Rerun the job later"
    ]
    github.faults.clear()
    monkeypatch.setenv("GITHUB_TOKEN", "ro")
    code, _out, err = run(argv, capsys)
    assert code == 2
    assert err.splitlines() == [
        f"error: GitHub answered 403 to set the 'mcval' status on {sha[:12]}: Resource not "
        "accessible by integration. The workflow's token needs `statuses: write` (set it in "
        "the job's `permissions:` block); with a fine-grained or classic token check its "
        "repository access and scopes."
    ]
    assert github.statuses.get((BASE, sha)) is None
