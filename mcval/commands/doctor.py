"""``mcval doctor``: check a runner before the gates open (see measure/runner_checks.py).

Prints one line per check and exits 1 when anything would make published figures wrong;
on a machine without a GPU the GPU line says so and fails only with ``--require-gpu``
(the reference runner's workflow passes it).
"""

from __future__ import annotations

from pathlib import Path

from mcval.errors import ExitCode
from mcval.measure.runner_checks import Check

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


def doctor(*, repo: Path | None = None, require_gpu: bool = False) -> ExitCode:
    from mcval.measure.runner_checks import run_checks
    from mcval.policy import load_policy
    from mcval.submission.check import find_repo_root

    repo_root = repo if repo is not None else find_repo_root(Path.cwd())
    checks = run_checks(load_policy(repo_root), require_gpu=require_gpu)
    checks.insert(
        next(i for i, c in enumerate(checks) if c.name == "dataset cache") + 1,
        check_caches_per_job(),
    )
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
