"""The workflows' security properties, read from the YAML, plus zizmor (offline) on them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github/workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def test_the_expected_workflows_exist() -> None:
    assert [p.name for p in FILES] == ["check.yml", "lint.yml", "measure.yml", "publish.yml"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_least_privilege_timeouts_and_pinning(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"{name}: job-level permissions"
        assert isinstance(job.get("timeout-minutes"), int), f"{name}: timeout-minutes"
    text = path.read_text()
    for step in steps(workflow):
        if "uses" in step:
            assert PINNED.match(step["uses"]), step["uses"]
            line = next(line for line in text.splitlines() if step["uses"] in line)
            assert re.search(r"# v\d+\.\d+\.\d+$", line), line
            if step["uses"].startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
        if "run" in step:
            assert "${{" not in step["run"], f"expression inside run: {step['run']!r}"


def test_pinned_shas_are_the_known_releases() -> None:
    known = {
        "actions/checkout": "11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2",
        "actions/setup-python": "a26af69be951a213d495a4c3e4e4022e16d87065 # v5.6.0",
        "actions/upload-artifact": "ea165f8d65b6e75b540449e92b4886f43607fa02 # v4.6.2",
        "actions/download-artifact": "d3f86a106a0bac45b974a628896c90dbdf5c8093 # v4.3.0",
    }
    for path in FILES:
        for action, pin in re.findall(r"uses: ([\w/-]+)@(.+)$", path.read_text(), flags=re.M):
            assert known[action] == pin, f"{path.name}: {action}@{pin}"


def test_check_uses_the_base_branch_and_a_read_only_token() -> None:
    workflow = load(WORKFLOWS / "check.yml")
    assert list(workflow["on"]) == ["pull_request"]
    job = workflow["jobs"]["check"]
    assert job["runs-on"] == "ubuntu-latest"
    assert job["permissions"] == {"contents": "read", "pull-requests": "read"}
    checkout = job["steps"][0]
    assert checkout["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert any(r.startswith("python -m pip install") and "./base" in r for r in runs)
    assert any("mcval ci fetch" in r for r in runs) and any("mcval check" in r for r in runs)


def test_measure_is_gated_isolated_and_split_from_the_write_token() -> None:
    workflow = load(WORKFLOWS / "measure.yml")
    assert workflow["on"] == {
        "workflow_run": {"workflows": ["mcval check"], "types": ["completed"]}
    }
    assert workflow["concurrency"]["cancel-in-progress"] is True
    jobs = workflow["jobs"]
    measure = jobs["measure"]
    assert measure["runs-on"] == ["self-hosted", "gpu", "mcval"]
    assert measure["environment"] == "gpu-approval"
    assert measure["permissions"] == {"contents": "read", "pull-requests": "read"}
    assert measure["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert jobs["report"]["permissions"] == {"pull-requests": "write", "statuses": "write"}
    assert jobs["report"]["runs-on"] == "ubuntu-latest"
    downloads = [s for s in jobs["report"]["steps"] if "download-artifact" in s.get("uses", "")]
    assert [d["with"]["pattern"] for d in downloads] == ["results-*"]
    for name, job in jobs.items():
        refs = [s["with"]["ref"] for s in job["steps"] if "checkout" in s.get("uses", "")]
        # mcval and the workflow always come from the default branch; the measuring job
        # reads the PR's BASE branch (its baselines, results, README) as data, second.
        assert refs[0] == "${{ github.event.repository.default_branch }}", name
        second = {
            "plan": ["${{ steps.base.outputs.base_ref }}"],
            "measure": ["${{ needs.plan.outputs.base_ref }}"],
        }
        assert refs[1:] == second.get(name, []), name
    writers = [n for n, j in jobs.items() if any(v == "write" for v in j["permissions"].values())]
    assert sorted(writers) == ["pending", "report", "unserved"]
    assert jobs["unserved"]["permissions"] == {"statuses": "write"}
    assert "self-hosted" not in str(jobs["report"]["runs-on"])


def test_publish_is_serialized_and_commits_from_a_hosted_runner() -> None:
    workflow = load(WORKFLOWS / "publish.yml")
    assert workflow["concurrency"] == {
        "group": "mcval-publish-${{ github.ref_name }}",
        "cancel-in-progress": False,
    }
    jobs = workflow["jobs"]
    assert jobs["measure"]["permissions"] == {"contents": "read"}
    assert jobs["publish"]["permissions"] == {"contents": "write"}
    assert jobs["publish"]["runs-on"] == "ubuntu-latest"
    runs = " ".join(s.get("run", "") for s in jobs["publish"]["steps"])
    assert "mcval table" in runs and "mcval ci publish" in runs


def test_zizmor_offline_reports_no_findings() -> None:
    """SECURITY.md promises zizmor runs on the workflows: in CI (CI=true) a missing zizmor
    is a failure, never a skip; on a developer's machine without it, a skip."""
    if shutil.which("zizmor") is None and not (ROOT / ".venv/bin/zizmor").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("zizmor is not installed; CI must run it (pip install -e '.[test]')")
        pytest.skip("zizmor is not installed")
    out = subprocess.run(
        [str(ROOT / "scripts/lint_workflows.sh")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("zizmor: no findings in .github/workflows")
    assert "No findings to report" in out.stdout


def test_publish_gpu_job_is_gated_and_its_results_are_vetted() -> None:
    """Issue 15.1: the publish runner measures merged (possibly unpinned) models, so it is
    behind the approval environment, and its results tree lands outside the checkout and
    reaches results/ only through `mcval ci results` (vetted), before the table is built."""
    jobs = load(WORKFLOWS / "publish.yml")["jobs"]
    assert jobs["measure"]["environment"] == "gpu-approval"
    publish_steps = jobs["publish"]["steps"]
    download = next(s for s in publish_steps if "download-artifact" in s.get("uses", ""))
    assert download["with"]["path"] == "${{ runner.temp }}/measured"
    runs = [s.get("run", "") for s in publish_steps]
    vet = next(i for i, r in enumerate(runs) if r.startswith("mcval ci results"))
    table = next(i for i, r in enumerate(runs) if r.startswith("mcval table"))
    assert vet < table and '--from "$RUNNER_TEMP/measured"' in runs[vet]
    docs = " ".join((ROOT / "docs/maintainers.md").read_text().replace("**", "").split())
    assert "Create the environment `gpu-approval` (Settings → Environments) before enabling" in docs


GPU_JOBS = [("measure.yml", "measure"), ("publish.yml", "measure")]


@pytest.mark.parametrize(("name", "job"), GPU_JOBS)
def test_gpu_jobs_install_hashed_pins_with_per_job_caches(name: str, job: str) -> None:
    """Issue 15.10: nothing unpinned or unhashed is installed on the GPU runner, and no
    cache or pip configuration outlives the job."""
    spec = load(WORKFLOWS / name)["jobs"][job]
    assert spec["env"] == {
        "HF_HOME": "${{ runner.temp }}/hf-home",
        "PIP_CACHE_DIR": "${{ runner.temp }}/pip-cache",
        "PIP_CONFIG_FILE": "/dev/null",
        "PYTHONNOUSERSITE": "1",
    }
    runs = "\n".join(s.get("run", "") for s in spec["steps"])
    assert "install --require-hashes --no-deps -r repo/requirements/measure.txt" in runs
    assert "install --no-deps --no-build-isolation ./repo" in runs
    assert "[measure]" not in runs


def test_measure_requirements_are_all_pinned_and_hashed() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    text = (ROOT / "requirements/measure.txt").read_text()
    entries = re.findall(
        r"^([A-Za-z0-9][^\s\\]*(?: ; [^\\]+)?) \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
        text,
        re.M,
    )
    lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(entries) == len(lines) > 50
    pinned = {}
    for head, _hashes in entries:
        req = Requirement(head)
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", head
        pinned[canonicalize_name(req.name)] = str(req.specifier)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["measure"]
    for dep in map(Requirement, wanted):
        if dep.marker is None or dep.marker.evaluate({"python_version": "3.10"}):
            assert canonicalize_name(dep.name) in pinned, dep.name
    assert pinned["torch"] == "==2.13.0" and "setuptools" in pinned
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()  # the version tests run


def test_dependabot_keeps_actions_and_requirements_current() -> None:
    config = yaml.safe_load((ROOT / ".github/dependabot.yml").read_text())
    ecosystems = {u["package-ecosystem"]: u["directory"] for u in config["updates"]}
    assert ecosystems == {"github-actions": "/", "pip": "/requirements"}
    assert "dependabot" in (ROOT / "docs/maintainers.md").read_text().lower()


def test_workflows_serve_the_course_branches() -> None:
    """Issue 20: publish runs on a merge into any course branch (the policy's default
    `[github] branches`), reads and writes THAT branch, one run at a time per branch;
    check runs on pull requests into every branch (an unserved one gets a neutral
    status from measure.yml's `unserved` job), and no job gained a permission."""
    from mcval.policy import Policy

    publish = load(WORKFLOWS / "publish.yml")
    assert publish["on"]["push"]["branches"] == Policy().github.branches == ["main", "lesson-*"]
    assert publish["on"]["push"]["paths"] == ["submissions/**", "mcval.toml"]
    assert "branches" not in load(WORKFLOWS / "check.yml")["on"]["pull_request"]
    jobs = publish["jobs"]
    checkout = next(s for s in jobs["measure"]["steps"] if "checkout" in s.get("uses", ""))
    assert checkout["with"]["ref"] == "${{ github.ref_name }}"
    commit = next(s for s in jobs["publish"]["steps"] if "ci publish" in s.get("run", ""))
    assert commit["env"]["BRANCH"] == "${{ github.ref_name }}"
    assert '--branch "$BRANCH"' in commit["run"]
    measure = load(WORKFLOWS / "measure.yml")["jobs"]
    unserved = measure["unserved"]
    assert unserved["if"] == (
        "needs.plan.outputs.stale == 'false' && needs.plan.outputs.served == 'false'"
    )
    assert "--state success" in unserved["steps"][-1]["run"]
    for name in ("pending", "measure", "report"):
        assert "needs.plan.outputs.served == 'true'" in measure[name]["if"], name
    report = next(s for s in measure["report"]["steps"] if "ci report" in s.get("run", ""))
    assert '--pr "$PR_NUMBER"' in report["run"]
    permissions = {
        (path.name, name): job["permissions"]
        for path in FILES
        for name, job in load(path)["jobs"].items()
    }
    assert permissions == {
        ("check.yml", "check"): {"contents": "read", "pull-requests": "read"},
        ("lint.yml", "lint"): {"contents": "read"},
        ("measure.yml", "plan"): {
            "actions": "read",
            "contents": "read",
            "pull-requests": "read",
        },
        ("measure.yml", "unserved"): {"statuses": "write"},
        ("measure.yml", "pending"): {"statuses": "write"},
        ("measure.yml", "measure"): {"contents": "read", "pull-requests": "read"},
        ("measure.yml", "report"): {"pull-requests": "write", "statuses": "write"},
        ("publish.yml", "measure"): {"contents": "read"},
        ("publish.yml", "publish"): {"contents": "write"},
    }
