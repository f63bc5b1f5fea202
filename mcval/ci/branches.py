"""The course's branches: which base branches the bot serves, and the PR title convention.

Why a module of its own: a course keeps one table per homework, each on its own branch
(``lesson-1-intro``, ``lesson-2-quantization``), and the branch a job writes to decides
which README changes. Which branches qualify is the policy's ``[github] branches`` (globs,
read from the default branch's ``mcval.toml`` by the jobs that decide), never something a
pull request's content can choose; these rules need no network and are tested alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase

from mcval.errors import InputError
from mcval.policy import POLICY_FILE, Policy
from mcval.render.markdown import code_span, escape_inline

BRANCH_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")
"""Branch names mcval works with: what git allows, narrowed to characters that are inert in
a log line, a Markdown code span and a URL path."""


def safe_branch(name: str) -> bool:
    """A plain branch name (no ``..``, ``//``, ``.lock`` or trailing ``/`` git refuses)."""
    return bool(
        BRANCH_PATTERN.fullmatch(name)
        and ".." not in name
        and "//" not in name
        and not name.endswith(("/", ".lock", "."))
    )


def served(branch: str, policy: Policy) -> bool:
    """Whether the bot serves ``branch``: a safe name matching one of the policy's globs."""
    return safe_branch(branch) and any(fnmatchcase(branch, p) for p in policy.github.branches)


def served_patterns(policy: Policy) -> str:
    return ", ".join(policy.github.branches)


def require_served(branch: str, policy: Policy, option: str = "--branch") -> str:
    """``branch`` when the policy serves it; otherwise one line saying how to fix it."""
    if not safe_branch(branch):
        raise InputError(f"{option}: {branch[:100]!r} is not a plain branch name")
    if not served(branch, policy):
        raise InputError(
            f"{option}: {branch!r} is not a course branch ([github] branches = "
            f"{policy.github.branches}); add a pattern there to serve it",
            POLICY_FILE,
        )
    return branch


def unserved_description(branch: str, policy: Policy) -> str:
    """The neutral status of a PR into a branch the bot does not serve."""
    shown = branch if safe_branch(branch) else "this branch"
    return f"not checked: mcval serves {served_patterns(policy)}, not {shown}"


def homework_number(branch: str) -> int | None:
    """The homework a branch holds: the first number in its name (``lesson-2-quant`` → 2)."""
    match = re.search(r"\d+", branch)
    return int(match[0]) if match else None


def _title_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(<team>|<n>)", pattern.strip())
    body = "".join(
        r"(?P<team>\S+?)" if p == "<team>" else r"(?P<n>\d+)" if p == "<n>" else re.escape(p)
        for p in parts
    )
    return re.compile(r"\s*" + re.sub(r"(\\ )+", r"\\s+", body) + r"\s*", re.IGNORECASE)


def title_warnings(title: str, teams: Iterable[str], branch: str, policy: Policy) -> list[str]:
    """Markdown warnings when the PR title does not follow ``[github] title_pattern``, names
    another team than the submissions' or another homework than the branch's. Warnings
    only: a title is easy to fix and never changes what is measured."""
    pattern = policy.github.title_pattern
    match = _title_regex(pattern).fullmatch(title)
    shown = code_span(title[:120])
    if match is None:
        return [f"The title {shown} does not follow {code_span(pattern)}."]
    warnings = []
    named = match.groupdict()
    team_set = sorted(set(teams))
    if (
        named.get("team")
        and team_set
        and named["team"].lower() not in {t.lower() for t in team_set}
    ):
        ours = ", ".join(code_span(t) for t in team_set)
        warnings.append(
            f"The title names team {code_span(named['team'])}, the submissions are {ours}."
        )
    expected = homework_number(branch)
    if named.get("n") and expected is not None and int(named["n"]) != expected:
        warnings.append(
            f"The title says HW-{int(named['n'])}, the branch {code_span(branch)} holds "
            f"homework {expected}."
        )
    return warnings


def branch_note(branch: str, policy: Policy) -> str:
    """The comment's line naming the table a merge changes."""
    readme = escape_inline(policy.table.readme)
    return f"Merging will update the table of {code_span(branch)} ({readme} on that branch)."
