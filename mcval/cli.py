"""The ``mcval`` command line.

Exit codes are a contract with CI: 0 everything passes, 1 a submission fails its
verdict, 2 a usage or input error (printed as one ``path:line:col: message`` line each).
This module stays torch-free: subcommands that measure import their code when they run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mcval import __version__
from mcval.errors import InputError, InputErrors, McvalError

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_INPUT = 2


def _annotation(level: str, error: InputError) -> str:
    """A GitHub Actions workflow command pointing at the file and line."""
    props = [f"file={error.path}"] if error.path else []
    if error.line:
        props.append(f"line={error.line}")
    if error.col:
        props.append(f"col={error.col}")
    message = error.message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return f"::{level} {','.join(props)}::{message}"


def cmd_check(args: argparse.Namespace) -> int:
    """Schema and cross-file rules for submission files; no model is loaded."""
    from mcval.policy import load_policy
    from mcval.submission.check import check_paths, find_repo_root

    repo_root = Path(args.repo) if args.repo else find_repo_root(Path.cwd())
    policy = load_policy(repo_root)
    report = check_paths([Path(p) for p in args.paths], repo_root, policy)
    annotate = os.environ.get("GITHUB_ACTIONS") == "true"
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except InputErrors as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except McvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
