"""The ``mcval ci`` argparse tree: the workflows' flags, mapped onto the step functions.

The only place that knows the flags; the steps themselves (``mcval.ci.plan``, ``fetch``,
``report``, ``comment``, ``status``, ``publish``) take typed keyword arguments. Step
modules are imported when their step runs, so building the parser stays cheap.

Exit codes follow the CLI: 0 ok, 1 the pull request breaks a rule (paths, team), 2 a
usage, input or GitHub error (printed as one sentence by ``mcval.cli``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcval.ci.actions import Connect, github_client

Handler = Callable[[argparse.Namespace], int]


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _handlers(connect: Connect) -> dict[str, Handler]:
    """One adapter per step: Namespace in, the step's keyword arguments out."""

    def changed(args: argparse.Namespace) -> int:
        from mcval.ci.plan import run_changed

        return run_changed(
            Path(args.repo),
            connect=connect,
            pr=args.pr,
            pr_info=_path(args.pr_info),
            head_sha=args.head_sha,
            output=_path(args.output),
            pr_info_out=_path(args.pr_info_out),
        )

    def fetch(args: argparse.Namespace) -> int:
        from mcval.ci.fetch import run_fetch

        return run_fetch(
            Path(args.repo),
            connect=connect,
            dest=Path(args.dest),
            pr=args.pr,
            pr_info=_path(args.pr_info),
            head_sha=args.head_sha,
            only=args.only or (),
            listing=_path(args.list),
        )

    def comment(args: argparse.Namespace) -> int:
        from mcval.ci.comment import run_comment

        return run_comment(
            Path(args.repo), connect=connect, markdown=Path(args.markdown), pr=args.pr
        )

    def status(args: argparse.Namespace) -> int:
        from mcval.ci.status import run_status

        return run_status(
            Path(args.repo),
            connect=connect,
            state=args.state,
            description=args.description,
            sha=args.sha,
            target_url=args.target_url,
        )

    def report(args: argparse.Namespace) -> int:
        from mcval.ci.report import run_report

        return run_report(
            Path(args.repo),
            artifacts=Path(args.artifacts),
            matrix=args.matrix,
            output=Path(args.output),
            head_sha=args.head_sha,
        )

    def publish(args: argparse.Namespace) -> int:
        from mcval.ci.publish import run_publish

        return run_publish(
            Path(args.repo),
            connect=connect,
            files=args.files,
            message=args.message,
            branch=args.branch,
            base_sha=args.base_sha,
            missing_ok=args.missing_ok,
        )

    return {
        "changed": changed,
        "fetch": fetch,
        "comment": comment,
        "status": status,
        "report": report,
        "publish": publish,
    }


def register(subparsers: Any, *, connect: Connect = github_client) -> argparse.ArgumentParser:
    """Add ``mcval ci <step>`` to the main parser's subparsers (called by ``mcval.cli``).

    ``connect`` builds each step's GitHub client; the default reads the Actions variables.
    """
    handlers = _handlers(connect)
    ci = subparsers.add_parser("ci", help="steps of the GitHub Actions workflows")
    steps = ci.add_subparsers(dest="ci_step", required=True, metavar="STEP")

    def step(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = steps.add_parser(name, help=help_text, description=help_text)
        parser.add_argument(
            "--repo", default=".", help="repository root holding mcval.toml (default: .)"
        )
        parser.set_defaults(handler=handlers[name])
        return parser

    def pr_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--pr", type=int, help="pull request number (default: from event)")
        parser.add_argument(
            "--pr-info", help="pr.json from the check workflow (untrusted: only its number is used)"
        )
        parser.add_argument(
            "--head-sha", help="the head SHA this run is for; a PR that moved on is stale"
        )

    changed = step("changed", "list the PR's changed submissions and enforce path rules")
    pr_options(changed)
    changed.add_argument("--output", help="write the plan (JSON) to this file")
    changed.add_argument(
        "--pr-info-out", help="write pr.json (number, head SHA) for the measuring workflow"
    )

    fetch = step("fetch", "write the PR's submission files at its head SHA into a dir")
    pr_options(fetch)
    fetch.add_argument("--dest", required=True, help="work dir laid out as the repository")
    fetch.add_argument(
        "--only", action="append", metavar="ID", help="only this submission id (repeatable)"
    )
    fetch.add_argument("--list", help="write the fetched submission paths here, one a line")

    comment = step("comment", "create or update the one mcval comment on the PR")
    comment.add_argument("--pr", type=int, help="pull request number (default: from event)")
    comment.add_argument("--markdown", required=True, help="the comment's Markdown file")

    status = step("status", "set the 'mcval' commit status")
    status.add_argument("--sha", help="commit SHA (default: the event's PR head)")
    status.add_argument(
        "--state", required=True, choices=["pending", "success", "failure", "error"]
    )
    status.add_argument("--description", required=True, help="shown next to the status")
    status.add_argument("--target-url", help="link (default: this workflow run)")

    report = step("report", "re-validate measurement artifacts; build comment and state")
    report.add_argument("--artifacts", required=True, help="folder with the downloaded artifacts")
    report.add_argument("--matrix", required=True, help="the plan's matrix JSON (ci changed)")
    report.add_argument("--head-sha", help="the PR head the results are for")
    report.add_argument("--output", required=True, help="write the combined comment here")

    publish = step("publish", "commit README, plot and results to the default branch")
    publish.add_argument("--files", nargs="+", required=True, help="files or dirs, repo-relative")
    publish.add_argument("--message", default="mcval: update results table", help="commit message")
    publish.add_argument("--branch", help="target branch (default: the repository's default)")
    publish.add_argument("--base-sha", help="commit the files were generated from (3-way check)")
    publish.add_argument(
        "--missing-ok", action="store_true", help="skip named files that do not exist"
    )
    return ci
