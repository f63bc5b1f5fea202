"""``mcval doctor``: the runner self-test passes on this CPU machine with its GPU lines
saying "no GPU", and each check fails where results would be wrong."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mcval.cli import main
from mcval.errors import ExitCode
from mcval.measure import runner_checks
from mcval.policy import MeasurePolicy, Policy

NO_GPU = not __import__("torch").cuda.is_available()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose download limit any test machine's disk can hold: the default
    (20 GB, sized for the reference runner) failed CI on a machine with 14.4 GiB free."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "mcval.toml").write_text("[measure]\nmax_download_gb = 1\n", encoding="utf-8")
    return tmp_path


@pytest.mark.skipif(not NO_GPU, reason="checks the no-GPU machine")
def test_doctor_passes_on_this_cpu_machine_and_says_no_gpu(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)  # never the network from a test
    code = main(["doctor", "--repo", str(repo)])
    out = capsys.readouterr().out
    assert code == ExitCode.OK, out
    lines = out.splitlines()
    names = [line[6:].split("  ")[0].strip() for line in lines[:-1]]
    assert names == [
        "python", "torch", "gpu", "runtimes", "model cache", "dataset cache", "caches per job",
        "course branches", "child environment", "child directory", "peak memory", "time limit",
        "cpu governor", "clock", "cpu load",
    ]  # fmt: skip
    assert re.search(
        r"^info  gpu +no GPU visible to the measuring child: CPU figures only$", out, re.M
    )
    assert re.search(r"^ok    torch +2\.\d+\.\d+\S*, built for CUDA", out, re.M)
    cache = r"^ok    model cache +\S.*: [\d.]+ GiB free \(max_download_gb = 1\)$"
    assert re.search(cache, out, re.M)
    assert re.search(r"^info  course branches +not in a job / no token$", out, re.M)
    assert re.search(r"^ok    child environment +\d+ variables, tokens visible: none$", out, re.M)
    peak = re.search(r"read as ([\d.]+) MiB in the child \(vmhwm\) and ([\d.]+) MiB", out)
    assert peak and all(abs(float(v) / 256 - 1) <= 0.05 for v in peak.groups()), out
    assert re.search(r"^ok    time limit +a hung child was killed after [2-9]\.\d s", out, re.M)
    assert lines[-1].startswith("ready")


@pytest.mark.skipif(not NO_GPU, reason="checks the no-GPU machine")
def test_require_gpu_fails_without_one(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checks = runner_checks.check_torch_and_gpu(require_gpu=True)
    assert [(c.name, c.status) for c in checks] == [("torch", "ok"), ("gpu", "fail")]
    assert checks[1].detail == "no GPU visible to the measuring child (--require-gpu)"


def test_a_credential_that_reaches_the_child_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # CUDA_* passes the allow-list by prefix: a token hidden there must still be caught.
    monkeypatch.setenv("CUDA_LICENSE_TOKEN", "secret")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    env, cwd = runner_checks.check_child_sees(Policy())
    assert (env.status, env.detail) == (
        "fail",
        "credentials visible to the measuring child: CUDA_LICENSE_TOKEN",
    )
    assert cwd.status == "ok"
    monkeypatch.delenv("CUDA_LICENSE_TOKEN")
    gated = Policy(measure=MeasurePolicy(hf_token=True))
    env, _ = runner_checks.check_child_sees(gated)
    assert env.status == "ok" and env.detail.endswith(
        "tokens visible: HF_TOKEN ([measure] hf_token = true)"
    )


def test_too_little_disk_for_one_model_fails() -> None:
    huge = Policy(measure=MeasurePolicy(max_download_gb=10**9))
    checks = runner_checks.check_disk(huge)
    assert [c.status for c in checks] == ["fail", "fail"]
    assert re.fullmatch(r".*: [\d.]+ GiB free \(max_download_gb = 1e\+09\)", checks[0].detail)


def test_caches_must_be_per_job_in_actions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mcval.commands.doctor import check_caches_per_job

    job = tmp_path / "job"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("RUNNER_TEMP", str(job))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "shared" / "hf"))
    monkeypatch.setenv("PIP_CACHE_DIR", str(job / "pip"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")
    shared = check_caches_per_job()
    assert shared.status == "warn"
    assert shared.detail.startswith(f"HF_HOME={tmp_path / 'shared' / 'hf'} is outside this job's")
    monkeypatch.setenv("HF_HOME", str(job / "hf"))
    assert check_caches_per_job().status == "ok"


def test_course_branches_outside_a_job_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from mcval.commands.doctor import check_course_branches

    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    check = check_course_branches(Policy())
    assert (check.name, check.status, check.detail) == (
        "course branches",
        "info",
        "not in a job / no token",
    )


def test_course_branches_are_listed_with_whether_each_has_a_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 20.5: in a job, doctor lists the branches `[github] branches` serves and says
    which README lacks the table heading (a lesson branch created without it)."""
    from ci_helpers import FAST_CONNECT
    from fake_github import FakeGithub

    from mcval.commands.doctor import check_course_branches
    from mcval.policy import DEFAULT_HEADING

    table = f"# Course\n\n### {DEFAULT_HEADING}\n| a | b |\n| --- | --- |\n"
    with FakeGithub() as fake:
        fake.add_token("ro")
        fake.create_repo("course/table", {"README.md": table})
        fake.create_branch("course/table", "lesson-1-intro", {})
        fake.create_branch("course/table", "lesson-2-quantization", {"README.md": "# HW 2\n"})
        fake.create_branch("course/table", "lesson-3-pruning", {"README.md": None})
        fake.create_branch("course/table", "feature-x", {})
        monkeypatch.setenv("GITHUB_REPOSITORY", "course/table")
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        monkeypatch.setenv("GITHUB_TOKEN", "ro")
        check = check_course_branches(Policy(), FAST_CONNECT)
        assert (check.status, check.detail) == (
            "warn",
            "lesson-1-intro (table), lesson-2-quantization (no heading "
            f"{DEFAULT_HEADING!r} in README.md), lesson-3-pruning (no README.md), main (table)",
        )
        monkeypatch.setenv("GITHUB_TOKEN", "revoked")
        check = check_course_branches(Policy(), FAST_CONNECT)
        assert check.status == "warn"
        assert check.detail.startswith("GitHub answered 401 to list the branches of course/table")
