"""The ``mcval`` command line.

Exit codes are a contract with CI: 0 everything passes, 1 a submission fails its
verdict, 2 a usage or input error (printed as one ``path:line:col: message`` line each),
3 the runner could not measure (an unstable machine): its fault, not the submission's,
so the answer is to re-run. This module stays torch-free: subcommands that measure import
their code when they run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mcval import __version__
from mcval.ci.actions import Level, annotation, running_in_actions
from mcval.errors import InputError, InputErrors, McvalError

if TYPE_CHECKING:
    from mcval.verdict import VerdictStatus

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_INPUT = 2
EXIT_UNMEASURED = 3

VERDICT_EXIT_CODES: dict[VerdictStatus, int] = {
    "pass": EXIT_OK,
    "fail": EXIT_FAIL,
    "error": EXIT_FAIL,  # the submission's own child crashed, hung or ran out of memory
    "unmeasured": EXIT_UNMEASURED,
}
"""The exit code of a run whose submissions all end with this verdict (see
``mcval.validate.exit_code`` for a mixed run); ``ci report`` checks cells against it."""


def _annotation(level: Level, error: InputError) -> str:
    """A GitHub Actions workflow command pointing at the error's file and line."""
    return annotation(level, error.message, error.path, error.line, error.col)


def cmd_check(args: argparse.Namespace) -> int:
    """Schema and cross-file rules for submission files; no model is loaded."""
    from mcval.policy import load_policy
    from mcval.submission.check import check_paths, find_repo_root

    repo_root = Path(args.repo) if args.repo else find_repo_root(Path.cwd())
    policy = load_policy(repo_root)
    report = check_paths([Path(p) for p in args.paths], repo_root, policy)
    annotate = running_in_actions()
    for result in report.files:
        if result.loaded is not None and result.ok:
            loaded = result.loaded
            print(f"ok     {loaded.relpath} ({loaded.id})")
            for conversion in loaded.conversions:
                print(f"  note: {conversion.describe()}")
        for warning in result.loaded.warnings if result.loaded else []:
            print(f"  warning: {warning}")
            if annotate:
                print(_annotation("warning", warning))
        for error in result.errors:
            print(f"error  {error}")
            if annotate:
                print(_annotation("error", error))
    total = len(report.files)
    bad = sum(1 for f in report.files if not f.ok)
    if total == 0:
        print("no submission files found", file=sys.stderr)
        return EXIT_INPUT
    print(f"{total - bad} of {total} submission file(s) valid")
    return EXIT_OK if report.ok else EXIT_INPUT


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the submission file (for editors and other tools)."""
    from mcval.submission.schema import Submission

    schema = Submission.model_json_schema(by_alias=True, mode="validation")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://mcval.invalid/schema/submission-1.json",
        **schema,
    }
    text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _lazy(module: str, attr: str = "run") -> Callable[[argparse.Namespace], int]:
    """A handler imported only when its subcommand runs (keeps torch out of `check`)."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), attr)(args))

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcval",
        description="Validate model-compression results submitted to the course table.",
    )
    parser.add_argument("--version", action="version", version=f"mcval {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="check submission files (schema and cross-file rules)")
    check.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    check.add_argument("--repo", help="repository root (default: found from the current dir)")
    check.set_defaults(handler=cmd_check)

    schema = sub.add_parser("schema", help="print the JSON Schema of a submission file")
    schema.add_argument("--output", "-o", help="write to this file instead of stdout")
    schema.set_defaults(handler=cmd_schema)

    from mcval.measure.command import add_arguments as measure_arguments

    measure = sub.add_parser("measure", help="measure one submission and print the figures")
    measure_arguments(measure)
    measure.set_defaults(handler=_lazy("mcval.measure.command"))

    validate = sub.add_parser(
        "validate", help="measure, compare with the reported numbers and report the verdict"
    )
    validate.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    validate.add_argument(
        "--device",
        choices=("cpu", "cuda", "all"),
        default="all",
        help="where to measure (default: every device this machine has)",
    )
    validate.add_argument("--results", help="results directory (default: the policy's)")
    validate.add_argument("--markdown", help="also write the PR comment Markdown to this file")
    validate.add_argument(
        "--force", action="store_true", help="measure again even if a stored result matches"
    )
    validate.add_argument("--skip-quality", action="store_true", help="do not evaluate quality")
    validate.add_argument("--repo", help="repository root (default: found from the current dir)")
    validate.set_defaults(handler=_lazy("mcval.validate"))

    table = sub.add_parser("table", help="regenerate the README table and the results plot")
    table.add_argument("--readme", help="README file (default: the policy's table.readme)")
    table.add_argument("--results", help="results directory (default: the policy's)")
    table.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if README.md or the plot would change",
    )
    table.add_argument("--repo", help="repository root (default: found from the current dir)")
    table.set_defaults(handler=_lazy("mcval.render.table_command"))

    imp = sub.add_parser(
        "import-table", help="turn a hand-written README table into submission files"
    )
    imp.add_argument("readme", metavar="README")
    imp.add_argument("--out", help="output directory (default: the policy's submissions dir)")
    imp.add_argument("--team-map", help="YAML mapping 'model id: team'")
    imp.add_argument("--default-team", help="team for rows the table and the map do not name")
    imp.add_argument("--force", action="store_true", help="overwrite existing files")
    imp.add_argument("--repo", help="repository root (default: found from the current dir)")
    imp.set_defaults(handler=_lazy("mcval.importer"))

    demo = sub.add_parser(
        "demo", help="run the whole pipeline on a real model, offline (a few minutes)"
    )
    demo.add_argument("--out", help="folder for the demo repository (default: a temporary one)")
    demo.add_argument("--cache", help="asset and result cache (default: ~/.cache/mcval)")
    demo.set_defaults(handler=_lazy("mcval.demo"))

    from mcval.ci.cli import register as register_ci

    register_ci(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(build_parser().parse_args(argv))


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command's handler; every error becomes one line and an exit code."""
    try:
        return int(args.handler(args))
    except InputErrors as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except McvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:
        # A full disk, a permission or a missing file: one line, never a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
