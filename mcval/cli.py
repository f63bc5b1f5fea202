"""The ``mcval`` command line: argparse, output set-up and exit codes, and nothing else.

Each verb is a plain function in ``mcval.commands`` (each ``mcval ci`` step one in
``mcval.ci``); here the command line becomes its keyword arguments, the consoles are set
up, and what it returns or raises becomes one ``ExitCode``: 0 everything passes, 1 a
submission fails its verdict, 2 a usage or input error (one ``path:line:col: message`` line
each), 3 the runner could not measure (an unstable machine, the hub unreachable): its
fault, not the submission's, so the answer is to re-run. This module stays torch-free:
a command's module is imported when that command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcval import __version__
from mcval.ci.actions import Connect, github_client, guarded_output
from mcval.errors import ExitCode, InputErrors, McvalError, RunnerError
from mcval.measure.devices import DEVICE_CHOICES

if TYPE_CHECKING:
    from rich.console import Console

Handler = Callable[[argparse.Namespace], int]


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _stdout(*, soft_wrap: bool = False) -> Console:
    """Rich output on stdout (rich decides colour and honours ``NO_COLOR``)."""
    from rich.console import Console

    return Console(soft_wrap=soft_wrap)


def _progress() -> Console:
    """Progress lines on stderr, so stdout stays the result (``measure --json``)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


# -- the commands: Namespace in, the command's keyword arguments out --------------------------


def _check(args: argparse.Namespace) -> int:
    from mcval.commands.check import check

    return check([Path(p) for p in args.paths], repo=_path(args.repo))


def _schema(args: argparse.Namespace) -> int:
    from mcval.commands.schema import schema

    return schema(output=_path(args.output))


def _measure(args: argparse.Namespace) -> int:
    from mcval.commands.measure import measure

    return measure(
        Path(args.path),
        device=args.device,
        skip_quality=args.skip_quality,
        as_json=args.json,
        repo=_path(args.repo),
        console=_stdout(),
        progress_console=_progress(),
    )


def _validate(args: argparse.Namespace) -> int:
    from mcval.commands.validate import validate

    return validate(
        [Path(p) for p in args.paths],
        device=args.device,
        results=_path(args.results),
        markdown=_path(args.markdown),
        force=args.force,
        skip_quality=args.skip_quality,
        repo=_path(args.repo),
        # In a CI log (not a terminal) rich would wrap at 80 columns; keep lines whole.
        console=_stdout(soft_wrap=not sys.stdout.isatty()),
    )


def _table(args: argparse.Namespace) -> int:
    from mcval.commands.table import table

    return table(
        readme=_path(args.readme),
        results=_path(args.results),
        check=args.check,
        repo=_path(args.repo),
        force=args.force,
    )


def _import_table(args: argparse.Namespace) -> int:
    from mcval.commands.import_table import import_table

    return import_table(
        Path(args.readme),
        out=_path(args.out),
        team_map=_path(args.team_map),
        default_team=args.default_team,
        force=args.force,
        repo=_path(args.repo),
    )


def _demo(args: argparse.Namespace) -> int:
    from mcval.commands.demo import demo

    return demo(out=_path(args.out), cache=_path(args.cache), console=_stdout())


def _doctor(args: argparse.Namespace) -> int:
    from mcval.commands.doctor import doctor

    return doctor(repo=_path(args.repo), require_gpu=args.require_gpu)


def _repo_option(parser: argparse.ArgumentParser, default_from: str = "the current dir") -> None:
    parser.add_argument("--repo", help=f"repository root (default: found from {default_from})")


def _add_commands(sub: Any) -> None:
    check = sub.add_parser("check", help="check submission files (schema and cross-file rules)")
    check.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    _repo_option(check)
    check.set_defaults(handler=_check)

    schema = sub.add_parser("schema", help="print the JSON Schema of a submission file")
    schema.add_argument("--output", "-o", help="write to this file instead of stdout")
    schema.set_defaults(handler=_schema)

    measure = sub.add_parser("measure", help="measure one submission and print the figures")
    measure.add_argument("path", help="submission file (submissions/<team>/<name>.yaml)")
    measure.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="all",
        help="where to measure; 'all' = CPU plus CUDA when a GPU is present (default)",
    )
    measure.add_argument("--skip-quality", action="store_true", help="do not evaluate quality")
    measure.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _repo_option(measure, "the file")
    measure.set_defaults(handler=_measure)

    validate = sub.add_parser(
        "validate", help="measure, compare with the reported numbers and report the verdict"
    )
    validate.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    validate.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="all",
        help="where to measure (default: every device this machine has)",
    )
    validate.add_argument("--results", help="results directory (default: the policy's)")
    validate.add_argument("--markdown", help="also write the PR comment Markdown to this file")
    validate.add_argument(
        "--force", action="store_true", help="measure again even if a stored result matches"
    )
    validate.add_argument("--skip-quality", action="store_true", help="do not evaluate quality")
    _repo_option(validate)
    validate.set_defaults(handler=_validate)

    table = sub.add_parser("table", help="regenerate the README table and the results plot")
    table.add_argument("--readme", help="README file (default: the policy's table.readme)")
    table.add_argument("--results", help="results directory (default: the policy's)")
    table.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if README.md or the plot would change",
    )
    table.add_argument(
        "--force",
        action="store_true",
        help="replace a hand-written table even when the new one has fewer rows",
    )
    _repo_option(table)
    table.set_defaults(handler=_table)

    imp = sub.add_parser(
        "import-table", help="turn a hand-written README table into submission files"
    )
    imp.add_argument("readme", metavar="README")
    imp.add_argument("--out", help="output directory (default: the policy's submissions dir)")
    imp.add_argument("--team-map", help="YAML mapping 'model id: team'")
    imp.add_argument("--default-team", help="team for rows the table and the map do not name")
    imp.add_argument("--force", action="store_true", help="overwrite existing files")
    _repo_option(imp)
    imp.set_defaults(handler=_import_table)

    demo = sub.add_parser(
        "demo", help="run the whole pipeline on a real model, offline (a few minutes)"
    )
    demo.add_argument("--out", help="folder for the demo repository (default: a temporary one)")
    demo.add_argument("--cache", help="asset and result cache (default: ~/.cache/mcval)")
    demo.set_defaults(handler=_demo)

    doctor = sub.add_parser(
        "doctor", help="check this runner: torch, GPU, disk, caches, the measuring child"
    )
    doctor.add_argument(
        "--require-gpu", action="store_true", help="fail when no GPU is visible (the GPU runner)"
    )
    _repo_option(doctor)
    doctor.set_defaults(handler=_doctor)


# -- mcval ci <step>: the workflows' flags, mapped onto the step functions --------------------


def _ci_handlers(connect: Connect) -> dict[str, Handler]:
    """One adapter per step; step modules are imported when their step runs."""

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
            base_only=args.base_only,
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
            removed=args.removed,
            pr=args.pr,
            connect=connect,
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

    def results(args: argparse.Namespace) -> int:
        from mcval.ci.vet import run_accept_results

        return run_accept_results(Path(args.repo), source=Path(args.source))

    return {
        "changed": changed,
        "fetch": fetch,
        "comment": comment,
        "status": status,
        "report": report,
        "results": results,
        "publish": publish,
    }


def _add_ci(sub: Any, connect: Connect) -> None:
    """``mcval ci <step>``, with the flags the workflows in ``.github/workflows`` pass."""
    handlers = _ci_handlers(connect)
    ci = sub.add_parser("ci", help="steps of the GitHub Actions workflows")
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
    changed.add_argument(
        "--base-only", action="store_true", help="only say which base branch, and if served"
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
    report.add_argument("--removed", help="the plan's deleted submission paths (JSON list)")
    report.add_argument(
        "--pr", type=int, help="name the PR's base branch and check its title (via the API)"
    )

    results = step("results", "accept the runner's result records (vetted) into results/")
    results.add_argument(
        "--from", dest="source", required=True, help="the runner's results tree (untrusted)"
    )

    publish = step("publish", "commit README, plot and results to a course branch")
    publish.add_argument("--files", nargs="+", required=True, help="files or dirs, repo-relative")
    publish.add_argument("--message", default="mcval: update results table", help="commit message")
    publish.add_argument(
        "--branch", help="course branch to commit to ([github] branches; default: the default)"
    )
    publish.add_argument("--base-sha", help="commit the files were generated from (3-way check)")
    publish.add_argument(
        "--missing-ok", action="store_true", help="skip named files that do not exist"
    )


def build_parser(*, connect: Connect = github_client) -> argparse.ArgumentParser:
    """The whole command line. ``connect`` builds each ``mcval ci`` step's GitHub client
    (default: from the Actions variables; tests pass one with fast retries)."""
    parser = argparse.ArgumentParser(
        prog="mcval",
        description="Validate model-compression results submitted to the course table.",
    )
    parser.add_argument("--version", action="version", version=f"mcval {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_commands(sub)
    _add_ci(sub, connect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # In GitHub Actions nothing mcval prints may act as a workflow command (issue 15.4).
    with guarded_output():
        return dispatch(build_parser().parse_args(argv))


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command's handler; every error becomes one line and an exit code."""
    try:
        return int(args.handler(args))
    except InputErrors as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        return ExitCode.INPUT
    except RunnerError as exc:
        # The runner's fault (the hub unreachable): its sentence says so and asks for a re-run.
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.UNMEASURED
    except McvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INPUT
    except OSError as exc:
        # A full disk, a permission or a missing file: one line, never a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return ExitCode.INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
