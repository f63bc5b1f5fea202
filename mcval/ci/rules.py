"""The pull-request rules that need no network: what a PR may touch, and the comment body.

Why apart from ``mcval.github``: these are the security rules of the bot (see
docs/maintainers.md), and they must be readable and testable without PyGithub or a server.

- A PR may only touch the paths the policy allows (default ``submissions/**``); ``mcval/``
  and ``.github/`` never; only its author's team directory (``[github.teams]``, required
  unless ``ownership = "off"``), files directly under ``submissions/`` only a maintainer.
  At most ``limits.max_submissions_per_pr`` submissions per PR.
- The bot's one comment carries the marker exactly once, first, and pings nobody.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from mcval.errors import InputError
from mcval.policy import Policy
from mcval.submission.schema import NAME_PATTERN
from mcval.submission.schema import SHA_PATTERN as SHA_PATTERN  # the contract's, for ci steps

PROTECTED_PREFIXES = ("mcval/", ".github/")
MAX_COMMENT_CHARS = 65_000  # GitHub refuses bodies over 65,536 characters


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChangedFile(_Model):
    """One entry of a PR's changed files; a rename touches both names."""

    path: str
    status: str
    previous_path: str | None = None

    @property
    def touched(self) -> list[str]:
        return [self.path] + ([self.previous_path] if self.previous_path else [])


class PathViolation(_Model):
    """A path the PR may not touch, and the sentence saying why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Path glob: ``**`` crosses directories, ``*`` and ``?`` stay within one."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        i += 1
    return re.compile("".join(out))


def path_allowed(path: str, patterns: list[str]) -> bool:
    return any(glob_to_regex(p).fullmatch(path) for p in patterns)


def check_paths_allowed(files: list[ChangedFile], policy: Policy) -> list[PathViolation]:
    """Every touched path must match ``policy.github.allowed_paths``.

    ``mcval/`` and ``.github/`` get their own sentence: they are the code and workflows
    that run with the bot's rights, so a PR touching them is refused whatever the glob
    says; maintainers change them in their own PRs (see docs/maintainers.md).
    """
    violations = []
    for changed in files:
        for path in changed.touched:
            if path.startswith(PROTECTED_PREFIXES):
                violations.append(
                    PathViolation(
                        path=path,
                        reason=(
                            f"changes {path.split('/')[0]}/, the validator's own code and "
                            "workflows; a submission PR may only add or change files under "
                            f"{', '.join(policy.github.allowed_paths)}"
                        ),
                    )
                )
            elif not path_allowed(path, policy.github.allowed_paths):
                violations.append(
                    PathViolation(
                        path=path,
                        reason=(
                            "is outside the paths a pull request may change ("
                            f"{', '.join(policy.github.allowed_paths)}); move it or ask a "
                            "maintainer"
                        ),
                    )
                )
    return violations


class OwnershipNotConfigured(InputError):
    """``ownership = "teams"`` (the default) without a ``[github.teams]`` table."""


MAINTAINER_ROLES = frozenset({"admin", "maintain"})
"""Repository roles (collaborator-permission API) that count as maintainers."""


def check_team_ownership(
    files: list[ChangedFile],
    author: str,
    policy: Policy,
    is_maintainer: bool | Callable[[], bool] = False,
) -> list[PathViolation]:
    """A student changes only their own team's directory; maintainers change anything.

    Refuses to run (``OwnershipNotConfigured``) when ownership is on and no team is listed:
    otherwise any student could edit or delete any team's rows. Files directly under
    ``submissions/`` are maintainers' only. ``is_maintainer`` comes from the configured
    list or the repository-permission API, never from the PR's author association (in a
    course organisation every student may be a ``MEMBER``); as a callable it is asked only
    when there is something to forgive.
    """
    github = policy.github
    teams = github.teams
    if github.ownership == "teams" and not teams:
        raise OwnershipNotConfigured(
            "ownership of team directories is on but [github.teams] lists no team; add "
            '`team = ["login", ...]` lines under [github.teams], or set `ownership = "off"` '
            "under [github] to let any author change any team's files",
            "mcval.toml",
        )
    own = sorted(team for team, logins in teams.items() if author.lower() in map(str.lower, logins))
    prefix = policy.submissions_dir.rstrip("/") + "/"
    violations = []
    for changed in files:
        for path in changed.touched:
            if not path.startswith(prefix):
                continue
            if "/" not in path[len(prefix) :]:
                reason = f"is directly under {prefix}; only a maintainer changes such files"
            elif github.ownership == "off":
                continue
            else:
                team = path[len(prefix) :].split("/", 1)[0]
                if team in own:
                    continue
                if team not in teams:
                    reason = (
                        f"team {team!r} is not listed in mcval.toml [github.teams]; a "
                        "maintainer adds the team and its members first"
                    )
                else:
                    mine = f"your team is {', '.join(own)}" if own else "you are in no team"
                    reason = f"belongs to team {team!r} and {author} is not a member of it ({mine})"
            violations.append(PathViolation(path=path, reason=reason))
    if violations and (is_maintainer() if callable(is_maintainer) else is_maintainer):
        return []
    return violations


def listed_maintainer(author: str, policy: Policy) -> bool:
    """Whether ``author`` is in ``[github] maintainers`` (case-insensitive, as GitHub is)."""
    return author.lower() in {login.lower() for login in policy.github.maintainers}


def check_submission_count(count: int, policy: Policy) -> list[PathViolation]:
    """A PR changes at most ``limits.max_submissions_per_pr`` submissions (each one is a
    measuring job on the GPU runner)."""
    limit = policy.limits.max_submissions_per_pr
    if count <= limit:
        return []
    reason = (
        f"the pull request changes {count} submissions; at most {limit} per pull request "
        "(mcval.toml limits.max_submissions_per_pr) — split it"
    )
    return [PathViolation(path=policy.submissions_dir.strip("/") + "/", reason=reason)]


def submission_path_pattern(policy: Policy) -> re.Pattern[str]:
    """``submissions/<team>/<name>.yaml`` with safe names only (no ``..``, no slashes)."""
    name = NAME_PATTERN.strip("^$")
    root = re.escape(policy.submissions_dir.strip("/"))
    return re.compile(rf"{root}/(?P<team>{name})/(?P<name>{name})\.ya?ml")


def data_path_pattern(policy: Policy) -> re.Pattern[str]:
    """Another file under a team's directory (a local dataset, a label map) whose every
    part is a plain name, so it can be written into a work directory as is."""
    root = re.escape(policy.submissions_dir.strip("/"))
    part = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
    return re.compile(rf"{root}/(?P<team>{part})(?:/{part})+")


def neutralize_mentions(text: str) -> str:
    """``@user``/``@org/team`` → ``@\u2060user``: shown the same, notifies nobody."""
    return re.sub(r"(?<![\w`/])@(?=[A-Za-z0-9])", "@\u2060", text)


def comment_body(markdown: str) -> str:
    """The one sticky comment: exactly one marker, first; no mentions; within GitHub's size."""
    from mcval.render.comment import MARKER

    text = neutralize_mentions(markdown.replace(MARKER, "").strip("\n"))
    if len(text) > MAX_COMMENT_CHARS:
        note = "\n\n… (truncated; the full report is in the workflow run's summary)"
        text = text[: MAX_COMMENT_CHARS - len(note)] + note
    return f"{MARKER}\n{text}\n"
