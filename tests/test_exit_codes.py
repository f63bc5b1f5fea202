"""Exit codes are defined once (``mcval.errors.ExitCode``) and mean the same everywhere.

The scan reads every module of ``mcval/`` (AST, not text) and flags what would be a second
definition: a name with "exit" in it bound to an integer (``EXIT_FAIL = 1``, or a dict of
integers), an enum with "Exit" in its name, ``sys.exit(2)`` / ``SystemExit(2)`` with a
literal, and a literal ``return 2`` from a command, a ``mcval ci`` step or any function
declared to return an ``ExitCode``. A measuring child's process status (``os._exit`` in
``mcval.measure.child``) is the supervisor's protocol, not the CLI's, and is not scanned.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mcval.cli import build_parser, dispatch
from mcval.errors import ExitCode, InputError, InputErrors, McvalError, RunnerError
from mcval.models.errors import HubUnavailableError

PACKAGE = Path(__file__).resolve().parents[1] / "mcval"
HOME = PACKAGE / "errors.py"
EXIT_NAME = re.compile(r"(?i)(^|_)exit($|_)|exitcode|exit_?codes?")
EXIT_CALLS = {"exit", "quit", "SystemExit"}
COMMAND_ROOMS = ("commands", "ci")


def _is_int(node: ast.AST | None) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int)
        and not isinstance(node.value, bool)
    )


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _returns(annotation: ast.AST | None) -> str:
    return ast.unparse(annotation) if annotation is not None else ""


def exit_code_definitions(source: str, where: str) -> list[str]:
    """``where:line: what`` for each place ``source`` defines an exit code of its own."""
    found: list[str] = []
    tree = ast.parse(source)
    command_module = where == "cli.py" or where.startswith(COMMAND_ROOMS)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            ints = _is_int(value) or (
                isinstance(value, ast.Dict) and any(_is_int(v) for v in value.values)
            )
            for target in targets:
                if ints and EXIT_NAME.search(_name(target)):
                    found.append(f"{where}:{node.lineno}: {_name(target)} = an integer")
        elif isinstance(node, ast.ClassDef) and "exit" in node.name.lower():
            bases = [_name(base) for base in node.bases]
            if any(b.endswith(("Enum", "Flag")) or b == "int" for b in bases):
                found.append(f"{where}:{node.lineno}: class {node.name}({', '.join(bases)})")
        elif isinstance(node, ast.Call) and _name(node.func) in EXIT_CALLS:
            if any(_is_int(arg) for arg in node.args):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            returns = _returns(node.returns)
            if not ("ExitCode" in returns or (command_module and returns == "int")):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Return) and _is_int(inner.value):
                    found.append(f"{where}:{inner.lineno}: {node.name} returns a literal")
    return found


def test_exit_codes_are_defined_only_in_mcval_errors() -> None:
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == HOME:
            continue
        where = path.relative_to(PACKAGE).as_posix()
        found += exit_code_definitions(path.read_text(encoding="utf-8"), where)
    assert found == []
    assert "class ExitCode(IntEnum)" in HOME.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("EXIT_FAIL = 1\n", "render/table.py"),
        ("EXIT_STALE: int = 1\n", "verdict.py"),
        ("CODES_EXIT = {'pass': 0, 'fail': 1}\n", "ci/report.py"),
        ("import enum\nclass Exit(enum.IntEnum):\n    OK = 0\n", "results.py"),
        ("import sys\ndef f() -> None:\n    sys.exit(2)\n", "models/loading.py"),
        ("def f() -> None:\n    raise SystemExit(3)\n", "tasks/base.py"),
        ("def run_step() -> int:\n    return 0\n", "ci/status.py"),
        ("def table() -> int:\n    return 1\n", "commands/table.py"),
        ("def main() -> int:\n    return 2\n", "cli.py"),
        ("def decide() -> ExitCode:\n    return 3\n", "validate.py"),
    ],
)
def test_the_scan_finds_a_second_definition(source: str, where: str) -> None:
    assert exit_code_definitions(source, where), source


def test_the_scan_leaves_ordinary_integers_alone() -> None:
    source = (
        "import os\n"
        "def count() -> int:\n    return 0\n"  # not a command module, not an ExitCode
        "def child() -> None:\n    os._exit(3)\n"
        "from mcval.errors import ExitCode\n"
        "def ok() -> ExitCode:\n    return ExitCode.OK\n"
        "class ChildExit:\n    status: int = 0\n"  # a child's exit, not a CLI code
    )
    assert exit_code_definitions(source, "measure/child.py") == []


def test_the_codes() -> None:
    assert [(c.name, int(c)) for c in ExitCode] == [
        ("OK", 0),
        ("FAIL", 1),
        ("INPUT", 2),
        ("UNMEASURED", 3),
        ("INTERRUPTED", 130),
    ]


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (InputError("bad value", "s.yaml", 3, 5), ExitCode.INPUT, "error: s.yaml:3:5: bad value"),
        (InputErrors([InputError("a"), InputError("b")]), ExitCode.INPUT, "error: a\nerror: b"),
        (McvalError("cannot write x"), ExitCode.INPUT, "error: cannot write x"),
        (
            HubUnavailableError("offline"),
            ExitCode.UNMEASURED,
            "error: the runner could not reach the Hugging Face Hub (offline); this is not a "
            "problem of the submission; re-run",
        ),
        (
            RunnerError("disk full"),
            ExitCode.UNMEASURED,
            "error: the runner could not measure (disk full); this is not a problem of the "
            "submission; re-run",
        ),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED, "interrupted"),
    ],
)
def test_cli_maps_each_error_to_one_exit_code(
    error: BaseException, code: ExitCode, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(_args: object) -> int:
        raise error

    args = build_parser().parse_args(["schema"])
    args.handler = handler
    assert dispatch(args) == code
    assert capsys.readouterr().err.rstrip("\n") == line
