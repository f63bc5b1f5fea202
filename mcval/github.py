"""The GitHub REST client, through PyGithub; the only module that imports ``github``.

What the client guarantees (see docs/maintainers.md):

- A pull request's files are read as *data* through the contents API at the PR's head
  SHA; nothing from the PR is checked out or executed.
- The bot's comment is found by a hidden marker *and* its author: only comments written by
  the configured bot login count, so a student who pastes the marker cannot make the bot
  edit their comment (with a workflow's ``GITHUB_TOKEN`` ``GET /user`` is 403, hence the
  login comes from the policy, not from the API).
- Transient failures (5xx, secondary rate limits) are retried with back-off; a 403/404
  becomes a message that names the token permission the workflow is missing.

The rules that need no network (allowed paths, team ownership, the comment's body) live
in ``mcval.ci.rules``; reading the Actions environment in ``mcval.ci.actions``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import quote

import github
from github import Auth, Github, GithubException, GithubRetry, InputGitTreeElement
from pydantic import BaseModel, ConfigDict, Field
from requests.exceptions import RequestException

from mcval.ci.rules import SHA_PATTERN, ChangedFile, comment_body
from mcval.errors import McvalError
from mcval.render.comment import MARKER

# PyGithub attaches a console handler to its logger on import and logs every retry at INFO
# ("Request GET ... failed with 403") straight to stderr. mcval reports each failure as one
# sentence through its own output (ci/actions.py prints untrusted text safely); drop it.
for _handler in list(logging.getLogger("github").handlers):
    if type(_handler) is logging.StreamHandler:
        logging.getLogger("github").removeHandler(_handler)

DEFAULT_API_URL = "https://api.github.com"
STATUS_CONTEXT = "mcval"
MAX_DESCRIPTION_CHARS = 140  # GitHub refuses longer commit-status descriptions
MAX_LISTED_FILES = 3000  # "List pull requests files" returns at most 3,000 files

StatusState = Literal["pending", "success", "failure", "error"]
Permission = Literal[
    "pull-requests: read",
    "pull-requests: write",
    "statuses: write",
    "contents: read",
    "contents: write",
]


class GithubError(McvalError):
    """A GitHub API call failed; the message says what was being done and why it failed."""


class GithubPermissionError(GithubError):
    """403/404 on a call: almost always a token without the needed ``permissions:`` entry."""


class PullTooLargeError(GithubError):
    """The PR changes more files than the API lists; unlisted files would go unchecked."""


class PublishConflictError(GithubError):
    """The default branch kept moving while publishing; nothing was lost, rerun publish."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PullInfo(_Model):
    """What mcval needs to know about a pull request (from the API, never from the PR)."""

    number: int
    state: str
    head_sha: str = Field(pattern=SHA_PATTERN)
    head_repo: str | None = Field(description="owner/name of the head (fork); None if deleted")
    base_repo: str
    base_ref: str
    base_sha: str
    author: str
    author_association: str = "NONE"
    title: str = ""


class CommentResult(_Model):
    id: int
    url: str
    created: bool


class PublishResult(_Model):
    commit_sha: str | None
    attempts: int
    changed: list[str]
    dropped: list[str] = Field(
        default_factory=list,
        description="Paths left out because the branch changed them meanwhile (3-way check).",
    )


# -- helpers of the client ---------------------------------------------------------------


def git_blob_sha(data: bytes) -> str:
    """Git's id of a blob, to tell whether the branch already holds exactly this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# -- the client ------------------------------------------------------------------------------


class _Retry(GithubRetry):
    """GithubRetry whose ``Retry-After`` sleep is capped (keeps tests fast, CI bounded)."""

    def __init__(self, max_retry_after: float = 120.0, **kwargs: Any) -> None:
        self.max_retry_after = max_retry_after
        super().__init__(**kwargs)

    def new(self, **kw: Any) -> _Retry:
        kw["max_retry_after"] = self.max_retry_after
        return super().new(**kw)  # type: ignore[return-value]

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.max_retry_after)


_PERMISSION_HELP = (
    "GitHub answered {status} to {action}: {message}. The workflow's token needs "
    "`{permission}` (set it in the job's `permissions:` block); with a fine-grained or "
    "classic token check its repository access and scopes."
)


class GithubClient:
    """One repository, one token; every call retried and every error turned into a sentence."""

    def __init__(
        self,
        token: str,
        repository: str,
        *,
        api_url: str = DEFAULT_API_URL,
        bot_login: str = "github-actions[bot]",
        retries: int = 5,
        backoff_factor: float = 1.0,
        secondary_rate_wait: float = 60.0,
        max_retry_after: float = 120.0,
        seconds_between_requests: float | None = 0.25,
        seconds_between_writes: float | None = 1.0,
        per_page: int = 100,
        timeout: int = 30,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repository):
            raise GithubError(f"repository must be 'owner/name', got {repository!r}")
        if not token:
            raise GithubError("no GitHub token: set GITHUB_TOKEN (the workflow's token)")
        self.repository = repository
        self.bot_login = bot_login
        retry = _Retry(
            total=retries,
            backoff_factor=backoff_factor,
            secondary_rate_wait=secondary_rate_wait,
            max_retry_after=max_retry_after,
            raise_on_status=False,
            allowed_methods=frozenset({"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"}),
        )
        self.gh = Github(
            auth=Auth.Token(token),
            base_url=api_url.rstrip("/"),
            retry=retry,
            per_page=per_page,
            timeout=timeout,
            seconds_between_requests=seconds_between_requests,
            seconds_between_writes=seconds_between_writes,
            user_agent="mcval",
            lazy=True,
        )
        self._repo = self.gh.get_repo(repository)

    # -- error mapping ---------------------------------------------------------------------
    def _call(self, action: str, permission: Permission, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except GithubException as exc:
            raise self._explain(exc, action, permission) from None
        except RequestException as exc:
            raise GithubError(f"could not reach GitHub while trying to {action}: {exc}") from None

    def _explain(self, exc: GithubException, action: str, permission: Permission) -> GithubError:
        data = exc.data if isinstance(exc.data, dict) else {}
        message = str(data.get("message") or exc.data or "no message").strip().rstrip(".")
        if exc.status == 401:
            return GithubPermissionError(
                f"GitHub answered 401 to {action}: {message}. The token is missing, expired or "
                "revoked; pass the workflow's GITHUB_TOKEN in the step's env"
            )
        if exc.status in (403, 404) and not github.Requester.Requester.isRateLimitError(message):
            return GithubPermissionError(
                _PERMISSION_HELP.format(
                    status=exc.status, action=action, message=message, permission=permission
                )
            )
        if exc.status == 403:
            return GithubError(
                f"GitHub kept rate-limiting {action} after retries: {message}. Rerun the job later"
            )
        if exc.status >= 500:
            return GithubError(
                f"GitHub answered {exc.status} to {action} even after retries ({message}); "
                "GitHub may be having an outage, rerun the job later"
            )
        return GithubError(f"GitHub answered {exc.status} to {action}: {message}")

    # -- pull requests ---------------------------------------------------------------------
    def pull_request(self, number: int) -> PullInfo:
        """The PR as GitHub sees it now (head SHA, fork, author) — the trusted source."""

        def get() -> PullInfo:
            pr = self._repo.get_pull(number)
            head_repo = pr.head.repo.full_name if pr.head.repo is not None else None
            return PullInfo(
                number=pr.number,
                state=pr.state,
                head_sha=pr.head.sha,
                head_repo=head_repo,
                base_repo=self.repository,
                base_ref=pr.base.ref,
                base_sha=pr.base.sha,
                author=pr.user.login,
                author_association=str(pr.raw_data.get("author_association") or "NONE"),
                title=str(pr.title or ""),
            )

        return self._call(f"read pull request #{number}", "pull-requests: read", get)

    def changed_files(self, number: int) -> list[ChangedFile]:
        """All files the PR changes, following every page (``Link: rel="next"``).

        The listing stops at 3,000 files whatever the PR holds; a file past that cap would
        never be checked, so a listing shorter than the PR's ``changed_files`` is refused.
        """

        def get() -> list[ChangedFile]:
            pr = self._repo.get_pull(number)
            listed = [
                ChangedFile(path=f.filename, status=f.status, previous_path=f.previous_filename)
                for f in pr.get_files()
            ]
            total = pr.raw_data.get("changed_files")
            if not isinstance(total, int) or total != len(listed) or total > MAX_LISTED_FILES:
                raise PullTooLargeError(
                    f"pull request #{number} changes {total} files but GitHub listed "
                    f"{len(listed)} (the API lists at most {MAX_LISTED_FILES}); files past "
                    "the listing could not be checked, so the pull request is refused: split it"
                )
            return listed

        return self._call(f"list the files of pull request #{number}", "pull-requests: read", get)

    def repository_role(self, login: str) -> str:
        """``login``'s role on the repository (``admin``, ``maintain``, ``write``, ``triage``,
        ``read`` or ``none``), from the collaborator-permission API: who is a maintainer is
        decided here or in the policy, never from a PR's ``author_association``."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}(\[bot\])?", login):
            return "none"
        url = f"{self._repo.url}/collaborators/{quote(login)}/permission"

        def get() -> str:
            try:
                _, data = self.gh.requester.requestJsonAndCheck("GET", url)
            except GithubException as exc:
                if exc.status == 404:  # not a collaborator (or no such user)
                    return "none"
                raise
            role = data.get("role_name") or data.get("permission") or "none"
            return str(role)

        return str(
            self._call(f"read {login}'s permission on {self.repository}", "contents: read", get)
        )

    def read_file(self, repository: str, path: str, ref: str, max_bytes: int) -> bytes:
        """One file's bytes at ``ref`` via the contents API (data only; never checked out)."""

        def get() -> bytes:
            repo = self.gh.get_repo(repository)
            content = repo.get_contents(path, ref=ref)
            if isinstance(content, list) or content.type != "file":
                raise GithubError(f"{path} at {ref[:12]} is not a regular file")
            if content.size > max_bytes:
                raise GithubError(
                    f"{path} is {content.size} bytes; a submission file may have at most "
                    f"{max_bytes} bytes (mcval.toml limits.max_submission_bytes)"
                )
            data = base64.b64decode(content.content or "")
            if len(data) != content.size:
                raise GithubError(f"{path}: GitHub sent {len(data)} of {content.size} bytes")
            return data

        return self._call(f"read {path} at {ref[:12]} from {repository}", "contents: read", get)

    def read_pr_file(self, pr: PullInfo, path: str, max_bytes: int) -> bytes:
        """A file at the PR's head SHA, from the fork; from the base repository when the
        fork was deleted (GitHub keeps the head commit under ``refs/pull/N/head``)."""
        return self.read_file(pr.head_repo or pr.base_repo, path, pr.head_sha, max_bytes)

    # -- the sticky comment ------------------------------------------------------------------
    def upsert_comment(self, number: int, markdown: str) -> CommentResult:
        """Create the bot's one comment on the PR, or edit it in place.

        Only comments by ``bot_login`` that carry the marker count; every page is read.
        With several (a past race), the newest is edited and the others are left alone.
        """
        body = comment_body(markdown)

        def upsert() -> CommentResult:
            pr = self._repo.get_pull(number)
            ours = [
                c
                for c in pr.get_issue_comments()
                if c.user is not None
                and c.user.login == self.bot_login
                and MARKER in (c.body or "")
            ]
            if ours:
                newest = max(ours, key=lambda c: (c.created_at, c.id))
                if newest.body != body:
                    newest.edit(body)
                return CommentResult(id=newest.id, url=newest.html_url, created=False)
            created = pr.create_issue_comment(body)
            return CommentResult(id=created.id, url=created.html_url, created=True)

        return self._call(
            f"write the mcval comment on pull request #{number}", "pull-requests: write", upsert
        )

    # -- commit status -------------------------------------------------------------------------
    def set_status(
        self,
        sha: str,
        state: StatusState,
        description: str,
        target_url: str | None = None,
        context: str = STATUS_CONTEXT,
    ) -> None:
        """The ``mcval`` commit status that branch protection requires."""
        if not re.fullmatch(SHA_PATTERN, sha):
            raise GithubError(f"a commit status needs a full 40-character SHA, got {sha!r}")
        if len(description) > MAX_DESCRIPTION_CHARS:
            description = description[: MAX_DESCRIPTION_CHARS - 1] + "…"
        payload: dict[str, Any] = {"state": state, "description": description, "context": context}
        if target_url:
            payload["target_url"] = target_url
        url = f"{self._repo.url}/statuses/{sha}"
        self._call(
            f"set the {context!r} status on {sha[:12]}",
            "statuses: write",
            lambda: self.gh.requester.requestJsonAndCheck("POST", url, input=payload),
        )

    # -- publishing on a course branch --------------------------------------------------------
    def default_branch(self) -> str:
        return str(
            self._call(
                f"read {self.repository}",
                "contents: read",
                lambda: self.gh.get_repo(self.repository).default_branch,
            )
        )

    def branch_view(self, commit_sha: str) -> BranchView:
        """Read access to the files of one commit (for rebuilding files on a new base)."""
        return self._call(
            f"read the files of commit {commit_sha[:12]}",
            "contents: read",
            lambda: BranchView(self, commit_sha),
        )

    def publish(
        self,
        files: Mapping[str, bytes | None] | Callable[[BranchView], Mapping[str, bytes | None]],
        message: str,
        *,
        branch: str | None = None,
        base_sha: str | None = None,
        max_attempts: int = 5,
    ) -> PublishResult:
        """Commit ``files`` (``None`` deletes) to ``branch`` in ONE commit via the git data API.

        When the branch moved under us the update is not a fast-forward: re-read the tip
        and reapply. With a callable, ``files`` is rebuilt from the new tip (so a table
        regenerated from ``results/`` keeps everyone's rows); with a mapping, a path the
        branch changed since ``base_sha`` (the commit the files were made from) is left
        out rather than overwritten, and reported in ``dropped``.
        """
        branch = branch or self.default_branch()
        action = f"publish to {branch}"
        repo = self._repo

        def attempt_all() -> PublishResult:
            ref = repo.get_git_ref(f"heads/{branch}")
            view = self.branch_view(ref.object.sha)
            origin = view if base_sha in (None, view.commit_sha) else self.branch_view(base_sha)
            blob_cache: dict[str, str] = {}
            for attempt in range(1, max_attempts + 1):
                wanted = dict(files(view) if callable(files) else files)
                elements: list[InputGitTreeElement] = []
                changed: list[str] = []
                dropped: list[str] = []
                for path, data in sorted(wanted.items()):
                    _check_repo_path(path)
                    current = view.entries.get(path)
                    new_sha = git_blob_sha(data) if data is not None else None
                    if current == new_sha:
                        continue
                    if not callable(files) and current != origin.entries.get(path):
                        dropped.append(path)
                        continue
                    if data is None:
                        elements.append(InputGitTreeElement(path, "100644", "blob", sha=None))
                    else:
                        assert new_sha is not None
                        if new_sha not in blob_cache:
                            encoded = base64.b64encode(data).decode()
                            blob_cache[new_sha] = repo.create_git_blob(encoded, "base64").sha
                        elements.append(
                            InputGitTreeElement(path, "100644", "blob", sha=blob_cache[new_sha])
                        )
                    changed.append(path)
                if not elements:
                    return PublishResult(
                        commit_sha=None, attempts=attempt, changed=[], dropped=dropped
                    )
                tree = repo.create_git_tree(elements, base_tree=view.tree)
                commit = repo.create_git_commit(message, tree, [view.commit])
                try:
                    ref.edit(commit.sha, force=False)
                except GithubException as exc:
                    if exc.status != 422:
                        raise
                    ref = repo.get_git_ref(f"heads/{branch}")
                    view = self.branch_view(ref.object.sha)
                    continue
                return PublishResult(
                    commit_sha=commit.sha, attempts=attempt, changed=changed, dropped=dropped
                )
            raise PublishConflictError(
                f"{branch} moved {max_attempts} times while publishing; nothing was written. "
                "Rerun the publish job"
            )

        return self._call(action, "contents: write", attempt_all)


class BranchView:
    """The files of one commit, read lazily through the git data API."""

    def __init__(self, client: GithubClient, commit_sha: str) -> None:
        self.client = client
        self.commit_sha = commit_sha
        repo = client._repo
        self.commit = repo.get_git_commit(commit_sha)
        self.tree = repo.get_git_tree(self.commit.tree.sha, recursive=True)
        if self.tree.raw_data.get("truncated"):
            raise GithubError("the repository tree is too large to read in one request")
        self.entries: dict[str, str] = {e.path: e.sha for e in self.tree.tree if e.type == "blob"}

    def paths(self, prefix: str = "") -> list[str]:
        return sorted(p for p in self.entries if p.startswith(prefix))

    def read(self, path: str) -> bytes | None:
        sha = self.entries.get(path)
        if sha is None:
            return None
        blob = self.client._call(
            f"read {path}", "contents: read", lambda: self.client._repo.get_git_blob(sha)
        )
        return base64.b64decode(blob.content)


def _check_repo_path(path: str) -> None:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("", ".", "..", ".git") for p in parts):
        raise GithubError(f"refusing to publish to the path {path!r}")
