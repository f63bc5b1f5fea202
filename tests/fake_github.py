"""A small GitHub REST server on 127.0.0.1 for testing mcval's GitHub code with real HTTP.

Why a real server rather than mocks: PyGithub's pagination (``Link`` headers), retry
(urllib3 ``Retry`` inside ``requests``) and error mapping only run against real responses.
The server keeps a tiny git object store shared by a repository and its forks (as GitHub's
fork network does), so a pull request's head commit lives in the fork, the contents API
answers differently at the base and head SHAs, and the git data API (blobs → trees →
commits → refs) behaves like GitHub's, including the 422 on a non-fast-forward ref update.

Only the endpoints mcval uses are served; the JSON carries the fields PyGithub reads.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

WRITE_PERMISSIONS = frozenset({"pull-requests:write", "statuses:write", "contents:write"})
NOT_ACCESSIBLE = "Resource not accessible by integration"
SECONDARY_RATE_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
_TIMESTAMP = "2025-11-28T08:00:00Z"


def git_blob_sha(data: bytes) -> str:
    """The SHA-1 git gives a blob (the same formula GitHub uses)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _object_sha(kind: str, payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha1(kind.encode() + b" " + text).hexdigest()


@dataclass
class Fault:
    """One canned error response, served instead of the real one."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    method: str | None = None
    path_contains: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


@dataclass
class Comment:
    id: int
    login: str
    body: str
    user_type: str = "Bot"
    updated: int = 0


@dataclass
class Pull:
    number: int
    base_repo: str
    head_repo: str
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    author: str
    author_association: str = "CONTRIBUTOR"
    state: str = "open"
    files: list[dict[str, Any]] = field(default_factory=list)
    title: str | None = None


@dataclass
class Repo:
    full_name: str
    default_branch: str
    refs: dict[str, str] = field(default_factory=dict)  # "heads/main" → commit sha
    fork_of: str | None = None
    id: int = 0


class FakeGithub:
    """The state and the server. Use as a context manager or call ``close()``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[str, dict[str, str]] = {}  # tree sha → {path: blob sha} (flat)
        self.commits: dict[str, dict[str, Any]] = {}
        self.pulls: dict[tuple[str, int], Pull] = {}
        self.comments: dict[tuple[str, int], list[Comment]] = {}
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.tokens: dict[str, set[str]] = {}
        self.token_logins: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path?query) as received
        self.faults: list[Fault] = []
        self.max_listed_files = 3000  # GitHub lists at most 3,000 files of a pull request
        self.roles: dict[tuple[str, str], str] = {}  # (repo, login) → admin/maintain/write/...
        # callables run once each, before the next ref update is applied (a racing push)
        self.before_ref_update: list[Any] = []
        self._ids = itertools.count(1001)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> FakeGithub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- setting up a world ----------------------------------------------------------------
    def add_token(self, token: str, *permissions: str, login: str = "github-actions[bot]") -> str:
        """A token acting as ``login``; writes need the named permissions (``"statuses:write"``)."""
        unknown = set(permissions) - WRITE_PERMISSIONS
        assert not unknown, unknown
        self.tokens[token] = set(permissions)
        self.token_logins[token] = login
        return token

    def create_repo(
        self,
        full_name: str,
        files: dict[str, bytes | str],
        default_branch: str = "main",
        fork_of: str | None = None,
        sha: str | None = None,
    ) -> str:
        """A repository with one commit holding ``files``; returns that commit's sha."""
        with self.lock:
            repo = Repo(full_name, default_branch, fork_of=fork_of, id=next(self._ids))
            self.repos[full_name] = repo
            sha = self.make_commit(files, parents=[], message="initial", sha=sha)
            repo.refs[f"heads/{default_branch}"] = sha
            return sha

    def fork(self, source: str, full_name: str) -> None:
        """A fork shares the source's objects and starts at its default branch."""
        with self.lock:
            base = self.repos[source]
            repo = Repo(full_name, base.default_branch, fork_of=source, id=next(self._ids))
            repo.refs = dict(base.refs)
            self.repos[full_name] = repo

    def make_commit(
        self,
        files: dict[str, bytes | str | None],
        parents: list[str],
        message: str,
        base_tree: str | None = None,
        sha: str | None = None,
    ) -> str:
        """A commit whose tree is ``base_tree`` (or the first parent's) changed by ``files``.

        ``sha`` forces the commit's id (to match a recorded event payload)."""
        with self.lock:
            entries: dict[str, str] = {}
            if base_tree is not None:
                entries = dict(self.trees[base_tree])
            elif parents:
                entries = dict(self.trees[self.commits[parents[0]]["tree"]])
            for path, content in files.items():
                if content is None:
                    entries.pop(path, None)
                    continue
                data = content.encode() if isinstance(content, str) else content
                blob = git_blob_sha(data)
                self.blobs[blob] = data
                entries[path] = blob
            tree = self._store_tree(entries)
            return self._store_commit(tree, parents, message, sha)

    def _store_tree(self, entries: dict[str, str]) -> str:
        sha = _object_sha("tree", entries)
        self.trees[sha] = entries
        return sha

    def _store_commit(
        self, tree: str, parents: list[str], message: str, sha: str | None = None
    ) -> str:
        payload = {"tree": tree, "parents": parents, "message": message, "n": next(self._ids)}
        sha = sha or _object_sha("commit", payload)
        self.commits[sha] = {"tree": tree, "parents": parents, "message": message}
        return sha

    def push(
        self,
        repo: str,
        files: dict[str, bytes | str | None],
        message: str,
        branch: str | None = None,
    ) -> str:
        """A commit on ``branch`` (default: the default branch; what a merge does)."""
        with self.lock:
            r = self.repos[repo]
            ref = f"heads/{branch or r.default_branch}"
            sha = self.make_commit(files, [r.refs[ref]], message)
            r.refs[ref] = sha
            return sha

    def create_branch(
        self, repo: str, branch: str, files: dict[str, bytes | str | None], source: str = ""
    ) -> str:
        """A branch started from ``source`` (default: the default branch) with ``files``
        changed in one commit, as a maintainer creates a lesson branch; returns its sha."""
        with self.lock:
            r = self.repos[repo]
            parent = r.refs[f"heads/{source or r.default_branch}"]
            sha = self.make_commit(files, [parent], f"create {branch}")
            r.refs[f"heads/{branch}"] = sha
            return sha

    def open_pull(
        self,
        base_repo: str,
        head_repo: str,
        files: dict[str, bytes | str | None],
        author: str,
        head_ref: str = "feature",
        author_association: str = "CONTRIBUTOR",
        head_sha: str | None = None,
        number: int | None = None,
        base_ref: str | None = None,
        title: str | None = None,
    ) -> Pull:
        """A pull request whose head commit (in ``head_repo``) changes ``files`` on the
        base branch ``base_ref`` (default: the default branch)."""
        with self.lock:
            base = self.repos[base_repo]
            base_ref = base_ref or base.default_branch
            base_sha = base.refs[f"heads/{base_ref}"]
            head_sha = self.make_commit(files, [base_sha], f"change by {author}", sha=head_sha)
            self.repos[head_repo].refs[f"heads/{head_ref}"] = head_sha
            number = number or 1 + max((n for (r, n) in self.pulls if r == base_repo), default=0)
            pull = Pull(
                number=number,
                base_repo=base_repo,
                head_repo=head_repo,
                head_ref=head_ref,
                head_sha=head_sha,
                base_ref=base_ref,
                base_sha=base_sha,
                author=author,
                author_association=author_association,
                title=title,
            )
            pull.files = self._diff(base_sha, head_sha)
            self.pulls[(base_repo, number)] = pull
            self.comments[(base_repo, number)] = []
            return pull

    def update_pull(self, base_repo: str, number: int, files: dict[str, bytes | str | None]) -> str:
        """A new push to the pull request's branch; returns the new head sha."""
        with self.lock:
            pull = self.pulls[(base_repo, number)]
            pull.head_sha = self.make_commit(files, [pull.head_sha], "another push")
            self.repos[pull.head_repo].refs[f"heads/{pull.head_ref}"] = pull.head_sha
            pull.files = self._diff(pull.base_sha, pull.head_sha)
            return pull.head_sha

    def _diff(self, base_sha: str, head_sha: str) -> list[dict[str, Any]]:
        old = self.trees[self.commits[base_sha]["tree"]]
        new = self.trees[self.commits[head_sha]["tree"]]
        files = []
        for path in sorted(set(old) | set(new)):
            if old.get(path) == new.get(path):
                continue
            status = "added" if path not in old else "removed" if path not in new else "modified"
            files.append({"filename": path, "status": status, "sha": new.get(path, old.get(path))})
        return files

    def add_comment(self, repo: str, number: int, login: str, body: str) -> Comment:
        with self.lock:
            user_type = "Bot" if login.endswith("[bot]") else "User"
            comment = Comment(next(self._ids), login, body, user_type)
            self.comments[(repo, number)].append(comment)
            return comment

    def inject(
        self,
        status: int,
        count: int = 1,
        *,
        message: str = "Server Error",
        headers: dict[str, str] | None = None,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """The next ``count`` matching requests get ``status`` instead of their answer."""
        with self.lock:
            for _ in range(count):
                self.faults.append(
                    Fault(status, {"message": message}, headers or {}, method, path_contains)
                )

    def inject_secondary_rate_limit(self, count: int = 1, retry_after: str = "1") -> None:
        self.inject(403, count, message=SECONDARY_RATE_LIMIT, headers={"Retry-After": retry_after})

    # -- reading the state back ------------------------------------------------------------
    def file_at(self, repo: str, ref: str, path: str) -> bytes | None:
        with self.lock:
            commit = self._resolve(self.repos[repo], ref)
            blob = self.trees[self.commits[commit]["tree"]].get(path) if commit else None
            return self.blobs[blob] if blob else None

    def branch_sha(self, repo: str, branch: str | None = None) -> str:
        r = self.repos[repo]
        return r.refs[f"heads/{branch or r.default_branch}"]

    def bot_comments(self, repo: str, number: int, login: str) -> list[Comment]:
        return [c for c in self.comments[(repo, number)] if c.login == login]

    def count(self, method: str, path_pattern: str) -> int:
        """How many requests matched ``method`` and the regular expression on the path."""
        return sum(1 for m, p in self.requests if m == method and re.search(path_pattern, p))

    def _resolve(self, repo: Repo, ref: str) -> str | None:
        if ref in self.commits:
            return ref
        for candidate in (ref, f"heads/{ref}", ref.removeprefix("refs/")):
            if candidate in repo.refs:
                return repo.refs[candidate]
        return None

    # -- JSON shapes ------------------------------------------------------------------------
    def repo_json(self, repo: Repo) -> dict[str, Any]:
        owner, name = repo.full_name.split("/")
        api = f"{self.url}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": name,
            "full_name": repo.full_name,
            "owner": self.user_json(owner, "Organization"),
            "private": False,
            "fork": repo.fork_of is not None,
            "url": api,
            "html_url": f"https://github.com/{repo.full_name}",
            "default_branch": repo.default_branch,
            "permissions": {"admin": False, "push": False, "pull": True},
        }

    def user_json(self, login: str, user_type: str = "User") -> dict[str, Any]:
        uid = int(hashlib.sha1(login.encode()).hexdigest()[:6], 16)
        return {
            "login": login,
            "id": uid,
            "type": user_type,
            "url": f"{self.url}/users/{login}",
            "html_url": f"https://github.com/{login}",
            "site_admin": False,
        }

    def pull_json(self, pull: Pull) -> dict[str, Any]:
        api = f"{self.url}/repos/{pull.base_repo}"
        head_repo = self.repos.get(pull.head_repo)
        return {
            "id": 5000 + pull.number,
            "number": pull.number,
            "state": pull.state,
            "title": pull.title or f"Submission by {pull.author}",
            "url": f"{api}/pulls/{pull.number}",
            "html_url": f"https://github.com/{pull.base_repo}/pull/{pull.number}",
            "issue_url": f"{api}/issues/{pull.number}",
            "comments_url": f"{api}/issues/{pull.number}/comments",
            "statuses_url": f"{api}/statuses/{pull.head_sha}",
            "user": self.user_json(pull.author),
            "author_association": pull.author_association,
            "changed_files": len(pull.files),
            "head": {
                "label": f"{pull.head_repo.split('/')[0]}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "repo": self.repo_json(head_repo) if head_repo else None,
                "user": self.user_json(pull.head_repo.split("/")[0]),
            },
            "base": {
                "label": f"{pull.base_repo.split('/')[0]}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": pull.base_sha,
                "repo": self.repo_json(self.repos[pull.base_repo]),
                "user": self.user_json(pull.base_repo.split("/")[0]),
            },
            "merged": False,
            "draft": False,
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
        }

    def comment_json(self, repo: str, number: int, comment: Comment) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo}"
        return {
            "id": comment.id,
            "node_id": f"IC_{comment.id}",
            "url": f"{api}/issues/comments/{comment.id}",
            "html_url": f"https://github.com/{repo}/pull/{number}#issuecomment-{comment.id}",
            "issue_url": f"{api}/issues/{number}",
            "body": comment.body,
            "user": self.user_json(comment.login, comment.user_type),
            "author_association": "NONE",
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
        }

    def commit_json(self, repo: str, sha: str) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo}/git"
        commit = self.commits[sha]
        person = {"name": "github-actions[bot]", "email": "bot@example", "date": _TIMESTAMP}
        return {
            "sha": sha,
            "node_id": f"C_{sha[:8]}",
            "url": f"{api}/commits/{sha}",
            "html_url": f"https://github.com/{repo}/commit/{sha}",
            "message": commit["message"],
            "tree": {"sha": commit["tree"], "url": f"{api}/trees/{commit['tree']}"},
            "parents": [{"sha": p, "url": f"{api}/commits/{p}"} for p in commit["parents"]],
            "author": person,
            "committer": person,
        }

    def tree_json(self, repo: str, sha: str) -> dict[str, Any]:
        api = f"{self.url}/repos/{repo}/git"
        entries = []
        dirs: set[str] = set()
        for path, blob in sorted(self.trees[sha].items()):
            parts = path.split("/")
            for i in range(1, len(parts)):
                dirs.add("/".join(parts[:i]))
            entries.append(
                {
                    "path": path,
                    "mode": "100644",
                    "type": "blob",
                    "sha": blob,
                    "size": len(self.blobs[blob]),
                    "url": f"{api}/blobs/{blob}",
                }
            )
        for d in sorted(dirs):
            entries.append(
                {"path": d, "mode": "040000", "type": "tree", "sha": _object_sha("dir", d)}
            )
        return {"sha": sha, "url": f"{api}/trees/{sha}", "tree": entries, "truncated": False}


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


def _not_found() -> _Reply:
    return _Reply(
        404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
    )


def _make_handler(fake: FakeGithub) -> type[BaseHTTPRequestHandler]:
    routes: list[tuple[str, re.Pattern[str], str]] = [
        ("GET", r"/repos/(?P<repo>[^/]+/[^/]+)", "get_repo"),
        ("GET", r"/repos/(?P<repo>[^/]+/[^/]+)/pulls/(?P<n>\d+)", "get_pull"),
        ("GET", r"/repos/(?P<repo>[^/]+/[^/]+)/branches", "list_branches"),
        ("GET", r"/repos/(?P<repo>[^/]+/[^/]+)/pulls/(?P<n>\d+)/files", "pull_files"),
        ("GET", r"/repos/(?P<repo>[^/]+/[^/]+)/contents/(?P<path>.+)", "contents"),
        (
            "GET",
            r"/repos/(?P<repo>[^/]+/[^/]+)/collaborators/(?P<login>[^/]+)/permission",
            "permission",
        ),
        ("GET", r"/repos/(?P<repo>[^/]+/[^/]+)/issues/(?P<n>\d+)/comments", "list_comments"),
        ("POST", r"/repos/(?P<repo>[^/]+/[^/]+)/issues/(?P<n>\d+)/comments", "create_comment"),
        ("PATCH", r"/repos/(?P<repo>[^/]+/[^/]+)/issues/comments/(?P<id>\d+)", "edit_comment"),
        ("POST", r"/repos/(?P<repo>[^/]+/[^/]+)/statuses/(?P<sha>[0-9a-f]{40})", "status"),
        ("GET", r"/repos/(?P<repo>[^/]+/[^/]+)/git/ref/(?P<ref>.+)", "get_ref"),
        ("PATCH", r"/repos/(?P<repo>[^/]+/[^/]+)/git/refs/(?P<ref>.+)", "update_ref"),
        ("GET", r"/repos/(?P<repo>[^/]+/[^/]+)/git/commits/(?P<sha>[0-9a-f]{40})", "get_commit"),
        ("GET", r"/repos/(?P<repo>[^/]+/[^/]+)/git/trees/(?P<sha>[0-9a-f]{40})", "get_tree"),
        ("GET", r"/repos/(?P<repo>[^/]+/[^/]+)/git/blobs/(?P<sha>[0-9a-f]{40})", "get_blob"),
        ("POST", r"/repos/(?P<repo>[^/]+/[^/]+)/git/blobs", "create_blob"),
        ("POST", r"/repos/(?P<repo>[^/]+/[^/]+)/git/trees", "create_tree"),
        ("POST", r"/repos/(?P<repo>[^/]+/[^/]+)/git/commits", "create_commit"),
    ]
    compiled = [(m, re.compile(p + r"/?"), name) for m, p, name in routes]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()  # no Nagle delay between a response's header and body writes
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PATCH(self) -> None:
            self._dispatch("PATCH")

        # -- plumbing ---------------------------------------------------------------------
        def _dispatch(self, method: str) -> None:
            split = urlsplit(self.path)
            path = unquote(split.path)
            self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with fake.lock:
                fake.requests.append((method, self.path))
                fault = next((f for f in fake.faults if f.matches(method, path)), None)
                if fault is not None:
                    fake.faults.remove(fault)
            try:
                if fault is not None:
                    raise _Reply(fault.status, fault.body, fault.headers)
                self.token_permissions = self._authenticate()
                self.payload = json.loads(raw) if raw else {}
                if method == "PATCH" and "/git/refs/" in path:
                    with fake.lock:
                        hook = fake.before_ref_update.pop(0) if fake.before_ref_update else None
                    if hook is not None:  # outside the lock: a hook may call the server itself
                        hook()
                for m, pattern, name in compiled:
                    match = pattern.fullmatch(path)
                    if m == method and match:
                        with fake.lock:
                            status, body, headers = getattr(self, name)(**match.groupdict())
                        break
                else:
                    raise _not_found()
            except _Reply as reply:
                status, body, headers = reply.status, reply.body, reply.headers
            self._send(status, body, headers)

        def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-RateLimit-Limit", "5000")
            self.send_header("X-RateLimit-Remaining", "4999")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _authenticate(self) -> set[str]:
            header = self.headers.get("Authorization", "")
            token = header.split(" ", 1)[1] if " " in header else ""
            if token not in fake.tokens:
                raise _Reply(401, {"message": "Bad credentials"})
            return fake.tokens[token]

        def _need(self, permission: str) -> None:
            if permission not in self.token_permissions:
                raise _Reply(
                    403,
                    {
                        "message": NOT_ACCESSIBLE,
                        "documentation_url": "https://docs.github.com/rest",
                        "status": "403",
                    },
                )

        def _repo(self, repo: str) -> Repo:
            if repo not in fake.repos:
                raise _not_found()
            return fake.repos[repo]

        def _page(self, items: list[Any]) -> tuple[int, list[Any], dict[str, str]]:
            per_page = min(int(self.query.get("per_page", 30)), 100)
            page = max(int(self.query.get("page", 1)), 1)
            last = max(1, -(-len(items) // per_page))
            chunk = items[(page - 1) * per_page : page * per_page]
            base = f"{fake.url}{urlsplit(self.path).path}"

            def link(p: int) -> str:
                return f"<{base}?per_page={per_page}&page={p}>"

            links = []
            if page < last:
                links += [f'{link(page + 1)}; rel="next"', f'{link(last)}; rel="last"']
            if page > 1:
                links += [f'{link(1)}; rel="first"', f'{link(page - 1)}; rel="prev"']
            return 200, chunk, ({"Link": ", ".join(links)} if links else {})

        def _pull(self, repo: str, n: str) -> Pull:
            self._repo(repo)
            pull = fake.pulls.get((repo, int(n)))
            if pull is None:
                raise _not_found()
            return pull

        # -- endpoints --------------------------------------------------------------------
        def get_repo(self, repo: str) -> tuple[int, Any, dict[str, str]]:
            return 200, fake.repo_json(self._repo(repo)), {}

        def get_pull(self, repo: str, n: str) -> tuple[int, Any, dict[str, str]]:
            return 200, fake.pull_json(self._pull(repo, n)), {}

        def pull_files(self, repo: str, n: str) -> tuple[int, Any, dict[str, str]]:
            pull = self._pull(repo, n)
            files = [
                {
                    **f,
                    "additions": 1,
                    "deletions": 0,
                    "changes": 1,
                    "blob_url": f"https://github.com/{repo}/blob/{pull.head_sha}/{f['filename']}",
                    "raw_url": f"https://github.com/{repo}/raw/{pull.head_sha}/{f['filename']}",
                    "contents_url": f"{fake.url}/repos/{repo}/contents/{f['filename']}",
                }
                for f in pull.files[: fake.max_listed_files]
            ]
            return self._page(files)

        def permission(self, repo: str, login: str) -> tuple[int, Any, dict[str, str]]:
            self._repo(repo)
            role = fake.roles.get((repo, login.lower()), "read")
            legacy = {"maintain": "write", "triage": "read"}.get(role, role)
            body = {"permission": legacy, "role_name": role, "user": fake.user_json(login)}
            return 200, body, {}

        def contents(self, repo: str, path: str) -> tuple[int, Any, dict[str, str]]:
            r = self._repo(repo)
            commit = fake._resolve(r, self.query.get("ref", r.default_branch))
            if commit is None:
                raise _Reply(404, {"message": f"No commit found for the ref {self.query['ref']}"})
            blob = fake.trees[fake.commits[commit]["tree"]].get(path)
            if blob is None:
                raise _not_found()
            data = fake.blobs[blob]
            big = len(data) > 1024 * 1024
            return (
                200,
                {
                    "type": "file",
                    "encoding": "none" if big else "base64",
                    "size": len(data),
                    "name": path.rsplit("/", 1)[-1],
                    "path": path,
                    "content": "" if big else base64.encodebytes(data).decode(),
                    "sha": blob,
                    "url": f"{fake.url}/repos/{repo}/contents/{path}?ref={commit}",
                    "git_url": f"{fake.url}/repos/{repo}/git/blobs/{blob}",
                    "html_url": f"https://github.com/{repo}/blob/{commit}/{path}",
                    "download_url": f"https://raw.githubusercontent.com/{repo}/{commit}/{path}",
                },
                {},
            )

        def list_comments(self, repo: str, n: str) -> tuple[int, Any, dict[str, str]]:
            self._pull(repo, n)
            items = [fake.comment_json(repo, int(n), c) for c in fake.comments[(repo, int(n))]]
            return self._page(items)

        def _login(self) -> str:
            header = self.headers.get("Authorization", "")
            return fake.token_logins[header.split(" ", 1)[1]]

        def create_comment(self, repo: str, n: str) -> tuple[int, Any, dict[str, str]]:
            self._pull(repo, n)
            self._need("pull-requests:write")
            comment = fake.add_comment(repo, int(n), self._login(), str(self.payload["body"]))
            return 201, fake.comment_json(repo, int(n), comment), {}

        def edit_comment(self, repo: str, id: str) -> tuple[int, Any, dict[str, str]]:
            self._repo(repo)
            for (r, n), comments in fake.comments.items():
                for comment in comments:
                    if r == repo and comment.id == int(id):
                        self._need("pull-requests:write")
                        if comment.login != self._login():
                            raise _Reply(403, {"message": NOT_ACCESSIBLE})
                        comment.body = str(self.payload["body"])
                        comment.updated += 1
                        return 200, fake.comment_json(repo, n, comment), {}
            raise _not_found()

        def status(self, repo: str, sha: str) -> tuple[int, Any, dict[str, str]]:
            self._repo(repo)
            self._need("statuses:write")
            if sha not in fake.commits:
                raise _Reply(422, {"message": f"No commit found for SHA: {sha}"})
            body = self.payload
            if body.get("state") not in {"pending", "success", "failure", "error"}:
                raise _Reply(422, {"message": "Validation Failed"})
            if len(body.get("description") or "") > 140:
                raise _Reply(
                    422, {"message": "description is too long (maximum is 140 characters)"}
                )
            record = {
                "id": next(fake._ids),
                "url": f"{fake.url}/repos/{repo}/statuses/{sha}",
                "state": body["state"],
                "description": body.get("description"),
                "target_url": body.get("target_url"),
                "context": body.get("context", "default"),
                "creator": fake.user_json(self._login(), "Bot"),
                "created_at": _TIMESTAMP,
                "updated_at": _TIMESTAMP,
            }
            fake.statuses.setdefault((repo, sha), []).append(record)
            return 201, record, {}

        def list_branches(self, repo: str) -> tuple[int, Any, dict[str, str]]:
            r = self._repo(repo)
            api = f"{fake.url}/repos/{repo}"
            items = [
                {
                    "name": ref.removeprefix("heads/"),
                    "commit": {"sha": sha, "url": f"{api}/commits/{sha}"},
                    "protected": False,
                }
                for ref, sha in sorted(r.refs.items())
                if ref.startswith("heads/")
            ]
            return self._page(items)

        def get_ref(self, repo: str, ref: str) -> tuple[int, Any, dict[str, str]]:
            r = self._repo(repo)
            if ref not in r.refs:
                raise _not_found()
            return 200, self._ref_json(repo, ref, r.refs[ref]), {}

        def _ref_json(self, repo: str, ref: str, sha: str) -> dict[str, Any]:
            api = f"{fake.url}/repos/{repo}/git"
            return {
                "ref": f"refs/{ref}",
                "node_id": f"REF_{ref}",
                "url": f"{api}/refs/{ref}",
                "object": {"sha": sha, "type": "commit", "url": f"{api}/commits/{sha}"},
            }

        def update_ref(self, repo: str, ref: str) -> tuple[int, Any, dict[str, str]]:
            r = self._repo(repo)
            self._need("contents:write")
            if ref not in r.refs:
                raise _Reply(422, {"message": "Reference does not exist"})
            new = str(self.payload["sha"])
            if new not in fake.commits:
                raise _Reply(422, {"message": "Object does not exist"})
            if not self.payload.get("force") and not _is_ancestor(fake, r.refs[ref], new):
                raise _Reply(422, {"message": "Update is not a fast forward"})
            r.refs[ref] = new
            return 200, self._ref_json(repo, ref, new), {}

        def get_commit(self, repo: str, sha: str) -> tuple[int, Any, dict[str, str]]:
            self._repo(repo)
            if sha not in fake.commits:
                raise _not_found()
            return 200, fake.commit_json(repo, sha), {}

        def get_tree(self, repo: str, sha: str) -> tuple[int, Any, dict[str, str]]:
            self._repo(repo)
            if sha not in fake.trees:
                raise _not_found()
            return 200, fake.tree_json(repo, sha), {}

        def get_blob(self, repo: str, sha: str) -> tuple[int, Any, dict[str, str]]:
            self._repo(repo)
            if sha not in fake.blobs:
                raise _not_found()
            data = fake.blobs[sha]
            return (
                200,
                {
                    "sha": sha,
                    "size": len(data),
                    "url": f"{fake.url}/repos/{repo}/git/blobs/{sha}",
                    "content": base64.encodebytes(data).decode(),
                    "encoding": "base64",
                },
                {},
            )

        def create_blob(self, repo: str) -> tuple[int, Any, dict[str, str]]:
            self._repo(repo)
            self._need("contents:write")
            content = str(self.payload["content"])
            encoding = self.payload.get("encoding", "utf-8")
            data = base64.b64decode(content) if encoding == "base64" else content.encode()
            sha = git_blob_sha(data)
            fake.blobs[sha] = data
            return 201, {"sha": sha, "url": f"{fake.url}/repos/{repo}/git/blobs/{sha}"}, {}

        def create_tree(self, repo: str) -> tuple[int, Any, dict[str, str]]:
            self._repo(repo)
            self._need("contents:write")
            base_tree = self.payload.get("base_tree")
            entries = dict(fake.trees[base_tree]) if base_tree else {}
            for element in self.payload["tree"]:
                if element.get("sha") is None and "content" not in element:
                    entries.pop(element["path"], None)
                elif "content" in element:
                    data = str(element["content"]).encode()
                    fake.blobs[git_blob_sha(data)] = data
                    entries[element["path"]] = git_blob_sha(data)
                else:
                    if element["sha"] not in fake.blobs:
                        raise _Reply(422, {"message": "GitRPC::BadObjectState"})
                    entries[element["path"]] = element["sha"]
            sha = fake._store_tree(entries)
            return 201, fake.tree_json(repo, sha), {}

        def create_commit(self, repo: str) -> tuple[int, Any, dict[str, str]]:
            self._repo(repo)
            self._need("contents:write")
            tree = str(self.payload["tree"])
            parents = [str(p) for p in self.payload.get("parents", [])]
            if tree not in fake.trees or any(p not in fake.commits for p in parents):
                raise _Reply(422, {"message": "Tree SHA does not exist"})
            sha = fake._store_commit(tree, parents, str(self.payload["message"]))
            return 201, fake.commit_json(repo, sha), {}

    return Handler


def _is_ancestor(fake: FakeGithub, ancestor: str, sha: str) -> bool:
    seen: set[str] = set()
    todo = [sha]
    while todo:
        current = todo.pop()
        if current == ancestor:
            return True
        if current not in seen:
            seen.add(current)
            todo.extend(fake.commits[current]["parents"])
    return False
