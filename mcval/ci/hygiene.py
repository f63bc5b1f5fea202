"""Whether a GPU job's caches and configuration are its own (issue 15, item 10).

Why: a measuring job runs a stranger's model. Anything it can write that a later job
reads (the Hugging Face cache, pip's cache, a pip or user configuration, user
site-packages) would let one submission tamper with the next job's downloads or
installs. On an ephemeral runner that is moot; on a reused one each of these must live
under the job's own ``RUNNER_TEMP`` (which the runner empties per job) or be off.

``cache_problems`` is a plain function so that a runner self-check (``mcval doctor``)
can call it; the workflows set the variables it checks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PER_JOB_DIRS = ("HF_HOME", "PIP_CACHE_DIR")
"""Variables that must point into the job's ``RUNNER_TEMP``."""


def _inside(path: str, root: Path) -> bool:
    resolved = Path(path).resolve()
    return resolved == root or root in resolved.parents


def cache_problems(env: Mapping[str, str] | None = None) -> list[str]:
    """One sentence per cache or configuration a later job could inherit; [] when every
    one is per job (or the runner declares itself ephemeral with ``MCVAL_EPHEMERAL_RUNNER``)."""
    env = os.environ if env is None else env
    if env.get("MCVAL_EPHEMERAL_RUNNER") == "true":
        return []
    temp = env.get("RUNNER_TEMP")
    if not temp:
        return ["RUNNER_TEMP is not set: not running as a GitHub Actions job"]
    root = Path(temp).resolve()
    problems = []
    for name in PER_JOB_DIRS:
        value = env.get(name)
        if not value:
            problems.append(f"{name} is not set: the default cache in the home folder is shared")
        elif not _inside(value, root):
            problems.append(f"{name}={value} is outside this job's RUNNER_TEMP ({temp})")
    if env.get("PIP_CONFIG_FILE") != os.devnull:
        problems.append(
            f"PIP_CONFIG_FILE is not {os.devnull}: a pip.conf a model wrote could redirect "
            "the next job's installs"
        )
    if env.get("PYTHONNOUSERSITE") != "1":
        problems.append("PYTHONNOUSERSITE is not 1: user site-packages would be imported")
    return problems
