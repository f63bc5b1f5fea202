"""The repository's branches through the GitHub client (beside ``mcval.github``, which is
kept under 500 lines): ``mcval doctor`` lists the course branches it can see and whether
each one's README has the table."""

from __future__ import annotations

from mcval.ci.branches import served
from mcval.github import GithubClient
from mcval.policy import Policy

MAX_BRANCHES = 1000  # a course has a few dozen; a listing is bounded all the same
MAX_README_BYTES = 1024 * 1024  # the contents API inlines files up to 1 MiB


def list_branches(client: GithubClient) -> list[str]:
    """Every branch name of the client's repository, all pages, sorted."""

    def get() -> list[str]:
        names = []
        for branch in client._repo.get_branches():
            names.append(branch.name)
            if len(names) >= MAX_BRANCHES:
                break
        return sorted(names)

    return list(client._call(f"list the branches of {client.repository}", "contents: read", get))


def table_problem(client: GithubClient, branch: str, policy: Policy) -> str | None:
    """Why ``branch``'s README has no table mcval can regenerate, or None when it has one
    (the policy's README under its heading, located as ``mcval table`` locates it)."""
    from mcval.github import GithubError
    from mcval.render.readme import TableNotFound, locate_table, parse_markdown

    try:
        data = client.read_file(client.repository, policy.table.readme, branch, MAX_README_BYTES)
    except GithubError:
        return f"no {policy.table.readme}"
    try:
        locate_table(parse_markdown(data.decode("utf-8", errors="replace")), policy.table.heading)
    except TableNotFound:
        return f"no heading {policy.table.heading!r} in {policy.table.readme}"
    return None


def course_branches(client: GithubClient, policy: Policy) -> dict[str, str | None]:
    """The branches the policy serves that the repository has: name → table problem."""
    return {
        name: table_problem(client, name, policy)
        for name in list_branches(client)
        if served(name, policy)
    }
