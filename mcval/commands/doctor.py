"""``mcval doctor``: check a runner before the gates open (see measure/runner_checks.py).

Prints one line per check and exits 1 when anything would make published figures wrong;
on a machine without a GPU the GPU line says so and fails only with ``--require-gpu``
(the reference runner's workflow passes it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mcval.errors import ExitCode
from mcval.measure.runner_checks import Check

if TYPE_CHECKING:
    from mcval.ci.actions import Connect
    from mcval.policy import Policy

MARKS = {"ok": "ok", "info": "info", "warn": "WARN", "fail": "FAIL"}


def check_caches_per_job() -> Check:
    """A cache or configuration a later job reads lets one PR's model tamper with the next
    job (ci/hygiene.py says which)."""
    from mcval.ci.actions import running_in_actions
    from mcval.ci.hygiene import cache_problems

    if not running_in_actions():
        return Check(name="caches per job", status="info", detail="not in an Actions job")
    problems = cache_problems()
    if not problems:
        return Check(name="caches per job", status="ok", detail="ephemeral runner or per-job")
    return Check(
        name="caches per job",
        status="warn",
        detail="; ".join(problems) + " (docs/maintainers.md, Runner hygiene)",
    )


def check_course_branches(policy: Policy, connect: Connect | None = None) -> Check:
    """The course branches (``[github] branches``) the repository has, and whether each
    README carries the table, so a lesson branch created without it is seen before its
    first merge. Needs the job's repository and token; elsewhere it says so."""
    from mcval.ci.actions import github_client, github_job_available
    from mcval.errors import McvalError
    from mcval.github_branches import course_branches

    name = "course branches"
    if not github_job_available():
        return Check(name=name, status="info", detail="not in a job / no token")
    try:
        found = course_branches((connect or github_client)(policy), policy)
    except McvalError as exc:
        return Check(name=name, status="warn", detail=str(exc))
    if not found:
        patterns = ", ".join(policy.github.branches)
        return Check(name=name, status="warn", detail=f"no branch matches {patterns}")
    parts = [f"{b} (table)" if p is None else f"{b} ({p})" for b, p in found.items()]
    missing = any(problem is not None for problem in found.values())
    return Check(name=name, status="warn" if missing else "ok", detail=", ".join(parts))


def doctor(
    *, repo: Path | None = None, require_gpu: bool = False, connect: Connect | None = None
) -> ExitCode:
    from mcval.measure.runner_checks import run_checks
    from mcval.policy import load_policy
    from mcval.submission.check import find_repo_root

    repo_root = repo if repo is not None else find_repo_root(Path.cwd())
    policy = load_policy(repo_root)
    checks = run_checks(policy, require_gpu=require_gpu)
    at = next(i for i, c in enumerate(checks) if c.name == "dataset cache") + 1
    checks[at:at] = [check_caches_per_job(), check_course_branches(policy, connect)]
    width = max(len(check.name) for check in checks)
    for check in checks:
        print(f"{MARKS[check.status]:<5} {check.name:<{width}}  {check.detail}")
    failed = [check.name for check in checks if check.status == "fail"]
    warned = [check.name for check in checks if check.status == "warn"]
    if failed:
        print(f"not ready: {', '.join(failed)} would make results wrong")
        return ExitCode.FAIL
    print("ready" + (f", with warnings: {', '.join(warned)}" if warned else ""))
    return ExitCode.OK
