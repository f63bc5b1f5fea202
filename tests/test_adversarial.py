"""The adversarial corpus: hostile submissions through the real CLI (``mcval.cli.main``).

Every case asserts the exit code (2 for bad input; 1 for a failing verdict or a broken
pull-request rule where that is the right answer), the exact one-line reason, that no
traceback reached stdout/stderr, and that nothing was written: the repository tree and the
folder beside it (where symlinks point and marker files would appear) are snapshotted
before and after. Static cases run through both ``mcval check`` and ``mcval validate``; the
few that need a measuring child (pickle, ``auto_map``, corrupt GGUF, unreadable audio) are
marked slow. A summary line (cases tried / clear errors / tracebacks / side effects) is
printed at the end of the module and in pytest's terminal summary.

Rendering of hostile free text (comment and README) is checked at the end, with the exact
escaped text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fake_github import FakeGithub
from test_models_safety import write_malicious_bin
from test_validate import ENV, measurement
from tiny_models import LOAD_TOLERANT_TOML

from mcval.ci.rules import ChangedFile, check_team_ownership, comment_body
from mcval.cli import main as mcval_main
from mcval.policy import GithubPolicy, Policy
from mcval.render.comment import MARKER

FILE = "submissions/alpha/s.yaml"
SHA = "0123456789abcdef0123456789abcdef01234567"
BASE_YAML = f"""\
schema: 1
team: alpha
model:
  id: org/tiny-bert
  revision: {SHA}
  task: text-classification
method:
  name: fp32
evaluation:
  dataset: {{path: json, data_files: [data/eval.jsonl]}}
  metrics: [accuracy]
benchmark:
  input: {{tokens: 16}}
reported:
  weights_mb: 16.73
  quality: {{accuracy: 0.5}}
  hardware: {{cpu: AMD EPYC 7B13}}
"""
FAST_POLICY = f"""\
[measure]
warmup_calls = 1
min_calls = 2
min_seconds = 0.05
max_seconds = 5
threads = 1
time_limit_s = 240
{LOAD_TOLERANT_TOML}"""


DATASET_FIX = (
    "use a hub dataset id 'org/name', or json / csv / parquet / text with data_files inside "
    "the repository"
)
NOT_HUB_ID = "evaluation.dataset.path {path!r} is not a hub dataset id ('org/name'); " + DATASET_FIX
LOCAL_FOLDER = (
    "evaluation.dataset.path {path!r} names a folder of the repository, which would be read "
    "unchecked; " + DATASET_FIX
)
TOO_LARGE = "number is too large (at most 9,223,372,036,854,775,807); write a realistic value"


def edit(old: str, new: str) -> str:
    """The valid base submission with one change (the change must apply)."""
    assert old in BASE_YAML, old
    return BASE_YAML.replace(old, new, 1)


# -- bookkeeping: the summary line ---------------------------------------------------------


@dataclass
class Outcome:
    case: str
    clear: bool
    traceback: bool
    side_effect: bool


OUTCOMES: list[Outcome] = []


def summary_line() -> str:
    n = len(OUTCOMES)
    clear = sum(o.clear for o in OUTCOMES)
    tracebacks = sum(o.traceback for o in OUTCOMES)
    side = sum(o.side_effect for o in OUTCOMES)
    return (
        f"adversarial: {n} cases tried, {clear} clear errors, {tracebacks} tracebacks, "
        f"{side} side effects"
    )


class _SummaryPlugin:
    """Writes the summary line into pytest's terminal summary (shown without -s)."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if OUTCOMES:
            terminalreporter.write_line(summary_line())


@pytest.fixture(scope="module", autouse=True)
def corpus_summary(request: pytest.FixtureRequest) -> Iterator[None]:
    manager = request.config.pluginmanager
    if not manager.has_plugin("mcval-adversarial-summary"):
        manager.register(_SummaryPlugin(), "mcval-adversarial-summary")
    yield
    print("\n" + summary_line())


# -- a hostile repository and its snapshot ---------------------------------------------------


@dataclass
class World:
    root: Path  # the repository
    outside: Path  # a folder beside it: symlink targets, marker files
    results: Path  # --results of validate: its own output, checked apart from the snapshot
    markers: list[Path] = field(default_factory=list)

    def write(self, relpath: str, content: str | bytes) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "eval.jsonl").write_text('{"text": "a b", "label": "x"}\n')
    (root / "mcval.toml").write_text(FAST_POLICY)
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("COLUMNS", "400")  # rich: one terminal line per error line
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    return World(root, outside, tmp_path / "results")


def snapshot(*roots: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``roots``: type, size, mtime and content hash (links: target)."""
    state: dict[str, tuple[Any, ...]] = {}
    for top in roots:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                if path.is_symlink():
                    state[str(path)] = ("link", os.readlink(path))
                elif path.is_dir():
                    state[str(path)] = ("dir", st.st_mtime_ns)
                elif st.st_size > 2**20:  # the sparse 50 MB file: metadata is enough
                    state[str(path)] = ("file", st.st_size, st.st_mtime_ns)
                else:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    state[str(path)] = ("file", st.st_size, st.st_mtime_ns, digest)
    return state


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [k for k in keys if before.get(k) != after.get(k)]


def attempt(
    case: str,
    w: World,
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    *,
    code: int,
    expected: list[str],
    prefix: str = "error  ",
    error_prefix: str | None = None,
    main: Callable[[list[str]], int] = mcval_main,
) -> str:
    """Run ``mcval <argv>`` (through ``main``); record and assert code, exact error lines,
    no traceback, no side effect. ``expected`` are whole output lines without ``prefix``;
    with ``error_prefix`` no other line may start with it (no stray second error)."""
    capsys.readouterr()
    before = snapshot(w.root, w.outside)
    try:
        got = main(argv)
        crashed = False
    except SystemExit as exc:  # argparse
        got, crashed = int(exc.code or 0), False
    except BaseException:  # a traceback would escape the CLI: record it, then fail
        got, crashed = -1, True
    out, err = capsys.readouterr()
    text = out + err
    after = snapshot(w.root, w.outside)
    changed = changes(before, after)
    marker_hit = [m for m in w.markers if m.exists()]
    lines = text.splitlines()
    wanted = [prefix + e.replace("<ROOT>", str(w.root)) for e in expected]
    others = [
        line
        for line in lines
        if error_prefix is not None and line.startswith(error_prefix) and line not in wanted
    ]
    clear = got == code and all(line in lines for line in wanted) and not others
    traceback = crashed or "Traceback (most recent call last)" in text
    OUTCOMES.append(Outcome(case, clear, traceback, bool(changed or marker_hit)))
    assert not traceback, text
    assert not changed, f"files changed: {changed}"
    assert not marker_hit, f"marker files created: {marker_hit}"
    assert got == code, text
    for line in wanted:
        assert line in lines, f"missing line {line!r} in:\n{text}"
    assert not others, f"unexpected error lines {others} in:\n{text}"
    return text


# -- the static corpus: check + validate, no model loaded ------------------------------------


@dataclass
class Case:
    """A submission file's content (or a setup function) and the errors it must give."""

    name: str
    content: str | bytes | None
    errors: list[str]
    setup: Callable[[World], None] | None = None
    path: str = FILE


def billion_laughs() -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def deep_block() -> str:
    return "".join("  " * i + f"k{i}:\n" for i in range(60)) + "  " * 60 + "v\n"


def sparse_50mb(w: World) -> None:
    path = w.root / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(50 * 2**20)


def python_object(w: World) -> None:
    marker = w.outside / "pwned-by-yaml"
    w.markers.append(marker)
    w.write(FILE, edit("schema: 1", f"schema: !!python/object/apply:os.system ['touch {marker}']"))


def symlinked_submission(w: World) -> None:
    target = w.outside / "s.yaml"
    target.write_text(BASE_YAML)
    (w.root / "submissions" / "alpha").mkdir(parents=True)
    (w.root / FILE).symlink_to(target)


def symlinked_model_dir(w: World) -> None:
    (w.outside / "model").mkdir()
    (w.outside / "model" / "config.json").write_text("{}")
    (w.root / "models").mkdir()
    (w.root / "models" / "evil").symlink_to(w.outside / "model", target_is_directory=True)
    w.write(FILE, edit("id: org/tiny-bert", "id: ./models/evil"))


def symlinked_data_file(w: World) -> None:
    secret = w.outside / "secret.jsonl"
    secret.write_text('{"text": "token ghp_secret", "label": "x"}\n')
    (w.root / "data" / "eval.jsonl").unlink()
    (w.root / "data" / "eval.jsonl").symlink_to(secret)
    w.write(FILE, BASE_YAML)


def outside_repository(w: World) -> None:
    (w.outside / "s.yaml").write_text(BASE_YAML)


LINK_OUTSIDE = (
    "resolves outside the repository (through a symbolic link); commit the files themselves "
    "instead of a link"
)
PLAIN_DATA = "is not allowed: a submission holds plain data (text, numbers, true/false, lists, "
TASKS = (
    "'text-classification', 'token-classification', 'causal-lm', 'translation', "
    "'automatic-speech-recognition' or 'image-classification'"
)
NOT_A_NAME = "is not a valid value here (letters, digits, '.', '_' and '-'; ids are 'team/name')"
NO_ESCAPE = "must be a hub id or a path inside the repository (no '..', '/', '~')"

CASES = [
    # YAML bombs and object construction
    Case(
        "alias-bomb",
        billion_laughs(),
        [
            f"{FILE}:1:5: anchors and aliases (&name / *name) are not allowed in a submission; "
            "write each value out in full"
        ],
    ),
    Case(
        "merge-key",
        edit("method:\n  name: fp32", "method:\n  <<: {name: fp32}"),
        [f"{FILE}:8:3: merge keys (<<) are not allowed; write the fields out"],
    ),
    Case(
        "deep-flow-nesting",
        "schema: " + "[" * 30000 + "]" * 30000 + "\n",
        [f"{FILE}:1:28: nesting deeper than 20 levels; a submission is a few flat sections"],
    ),
    Case(
        "deep-block-nesting",
        deep_block(),
        [f"{FILE}:20:39: nesting deeper than 20 levels; a submission is a few flat sections"],
    ),
    Case(
        "python-object-apply",
        None,
        [f"{FILE}:1:9: tag !!python/object/apply:os.system {PLAIN_DATA}mappings) only"],
        setup=python_object,
    ),
    Case(
        "python-name",
        edit("name: fp32", "name: !!python/name:os.system"),
        [f"{FILE}:8:9: tag !!python/name:os.system {PLAIN_DATA}mappings) only"],
    ),
    Case(
        "custom-tag",
        edit("schema: 1", "schema: !include /etc/passwd"),
        [f"{FILE}:1:9: tag !include {PLAIN_DATA}mappings) only"],
    ),
    Case(
        "binary-tag",
        edit("name: fp32", "name: !!binary aGVsbG8="),
        [f"{FILE}:8:9: tag !!binary {PLAIN_DATA}mappings) only"],
    ),
    Case(
        "set-tag",
        edit("name: fp32", "name: !!set {a, b}"),
        [f"{FILE}:8:9: tag !!set {PLAIN_DATA}mappings) only"],
    ),
    # size and encoding
    Case(
        "50-mb-file",
        None,
        [
            f"{FILE}: file is 52,428,800 bytes, over the 65,536-byte limit for a submission; "
            "a submission is a short text file"
        ],
        setup=sparse_50mb,
    ),
    Case(
        "non-utf8-bytes",
        BASE_YAML.encode().replace(b"fp32", b"fp\xff\xfe32"),
        [f"{FILE}:8:11: not UTF-8 text (byte 0xff); save the file as UTF-8"],
    ),
    Case(
        "utf16-file",
        BASE_YAML.encode("utf-16"),
        [f"{FILE}:1:1: not UTF-8 text (byte 0xff); save the file as UTF-8"],
    ),
    Case(
        "terminal-escape-bytes",
        edit("name: fp32", "name: fp32\x1b[2J\x1b]8;;https://e.vil\x07"),
        [f"{FILE}:8:13: control character '\\x1b' is not allowed in YAML text; remove it"],
    ),
    Case(
        "bell-in-quoted-text",
        edit("name: fp32", 'name: "fp32\x07"'),
        [f"{FILE}:8:14: control character '\\x07' is not allowed in YAML text; remove it"],
    ),
    # structure
    Case(
        "duplicate-top-level-key",
        BASE_YAML + "team: beta\n",
        [f"{FILE}:18:1: duplicate key 'team' (first defined on line 2); keep only one of them"],
    ),
    Case(
        "duplicate-nested-key",
        edit("{accuracy: 0.5}", "{accuracy: 0.5, accuracy: 0.99}"),
        [
            f"{FILE}:16:28: duplicate key 'accuracy' (first defined on line 16); keep only one "
            "of them"
        ],
    ),
    Case(
        "two-documents",
        BASE_YAML + "---\n" + BASE_YAML,
        [
            f"{FILE}:18:1: invalid YAML: only one YAML document per file (remove the '---' "
            "separator)"
        ],
    ),
    Case("empty-file", "", [f"{FILE}:1:1: the file is empty"]),
    Case(
        "top-level-list",
        "- schema: 1\n- team: alpha\n",
        [f"{FILE}:1:1: a submission is a mapping of fields (schema:, team:, model: ...)"],
    ),
    Case("complex-key", "? [a, b]\n: 1\n", [f"{FILE}:1:3: a key must be plain text"]),
    Case(
        "unknown-field-typo",
        edit("  name: fp32", "  nmae: fp32"),
        [
            f"{FILE}:8:3: missing required field 'method.name'",
            f"{FILE}:8:3: unknown field 'nmae' in method; did you mean 'name'?",
        ],
    ),
    # wrong types
    Case(
        "batch-size-as-text",
        edit("  input: {tokens: 16}", "  input: {tokens: 16}\n  batch_size: '8'"),
        [f"{FILE}:14:15: benchmark.batch_size: expected a whole number, got text"],
    ),
    Case(
        "schema-as-text",
        edit("schema: 1", "schema: '1'"),
        [f"{FILE}:1:9: schema: '1' is not one of 1"],
    ),
    Case(
        "team-as-number",
        edit("team: alpha", "team: 123"),
        [f"{FILE}:2:7: team: expected text, got a number (put it in quotes)"],
    ),
    Case(
        "model-as-list",
        edit(
            f"model:\n  id: org/tiny-bert\n  revision: {SHA}\n  task: text-classification",
            "model: [org/tiny-bert, text-classification]",
        ),
        [f"{FILE}:3:8: model: expected a mapping (key: value lines), got a list"],
    ),
    Case(
        "tokens-as-bool",
        edit("{tokens: 16}", "{tokens: true}"),
        [f"{FILE}:13:19: benchmark.input.tokens: expected a whole number, got true/false"],
    ),
    Case(
        "huge-integer",
        edit("{tokens: 16}", "{tokens: 99999999999999999999999999999}"),
        [f"{FILE}:13:19: {TOO_LARGE}"],
    ),
    # numbers
    Case(
        "negative-size",
        edit("weights_mb: 16.73", "weights_mb: -5"),
        [f"{FILE}:15:15: reported.weights_mb: Input should be greater than or equal to 0"],
    ),
    Case(
        "nan-size",
        edit("weights_mb: 16.73", "weights_mb: .nan"),
        [f"{FILE}:15:15: reported.weights_mb: expected a finite number, got nan"],
    ),
    Case(
        "inf-latency",
        edit("weights_mb: 16.73", "latency_cpu_ms: .inf"),
        [f"{FILE}:15:19: reported.latency_cpu_ms: expected a finite number, got inf"],
    ),
    Case(
        "nan-quality",
        edit("{accuracy: 0.5}", "{accuracy: .nan}"),
        [f"{FILE}:16:23: reported.quality.accuracy: expected a finite number, got nan"],
    ),
    Case(
        "overflow-with-unit",
        edit("weights_mb: 16.73", "weights_mb: '1e400 MB'"),
        [f"{FILE}:15:15: reported.weights_mb: expected a finite number, got '1e400 MB'"],
    ),
    Case(
        "negative-with-unit",
        edit("weights_mb: 16.73", "weights_mb: '-3 GB'"),
        [f"{FILE}:15:15: reported.weights_mb: Input should be greater than or equal to 0"],
    ),
    Case(
        "absurd-size-unit",
        edit("weights_mb: 16.73", "weights_mb: '12 parsecs'"),
        [
            f"{FILE}:15:15: reported.weights_mb: '12 parsecs': unknown unit 'parsecs'; expected "
            'a size (e.g. 922.15, "96.66 MB", "1.33 GB")'
        ],
    ),
    Case(
        "mass-as-latency",
        edit("weights_mb: 16.73", "latency_cpu_ms: '5 kg'"),
        [
            f"{FILE}:15:19: reported.latency_cpu_ms: '5 kg': unknown unit 'kg'; expected a time "
            '(e.g. 377.65, "769.1 ms", "0.43 s")'
        ],
    ),
    Case(
        "accuracy-as-percent",
        edit("{accuracy: 0.5}", "{accuracy: 95}"),
        [f'{FILE}:16:23: accuracy = 95 is out of range; it is a fraction: write 0.95 or "95%"'],
    ),
    # task, ids and paths
    Case(
        "unknown-task",
        edit("task: text-classification", "task: text-clasification"),
        [
            f"{FILE}:6:9: model.task: 'text-clasification' is not one of {TASKS}; did you mean "
            "'text-classification'?"
        ],
    ),
    Case(
        "model-id-parent",
        edit("id: org/tiny-bert", "id: ../../etc"),
        [f"{FILE}:4:7: model.id: {NO_ESCAPE}"],
    ),
    Case(
        "model-id-absolute",
        edit("id: org/tiny-bert", "id: /etc/passwd"),
        [f"{FILE}:4:7: model.id: {NO_ESCAPE}"],
    ),
    Case(
        "model-id-home",
        edit("id: org/tiny-bert", "id: ~/.ssh"),
        [f"{FILE}:4:7: model.id: {NO_ESCAPE}"],
    ),
    Case(
        "gguf-file-parent",
        edit("  task: text-classification", "  task: text-classification\n  gguf_file: ../x.gguf"),
        [f"{FILE}:7:14: model.gguf_file: {NO_ESCAPE}"],
    ),
    Case(
        "data-file-parent",
        edit("data/eval.jsonl", "../../secret.jsonl"),
        [
            f"{FILE}:10:38: data file '../../secret.jsonl' must be a path inside the repository "
            "(no '..')"
        ],
    ),
    Case(
        "data-file-absolute",
        edit("data/eval.jsonl", "/etc/passwd"),
        [f"{FILE}:10:38: data file '/etc/passwd' must be a path inside the repository (no '..')"],
    ),
    Case(
        "baseline-escape",
        edit("  name: fp32", "  name: fp32\n  baseline: ../beta/x"),
        [f"{FILE}:9:13: method.baseline: '../beta/x' {NOT_A_NAME}"],
    ),
    Case(
        "recipe-unknown-step",
        edit("  name: fp32", "  name: fp32\n  recipe:\n    - exec_python: {code: 'import os'}"),
        [
            f"{FILE}:10:7: unknown recipe step 'exec_python'; known steps: cast, "
            "quantize_dynamic, prune, cluster, bnb_8bit, bnb_4bit, onnx_quantize_dynamic, "
            "onnx_quantize_static, openvino_compress_weights"
        ],
    ),
    Case(
        "recipe-trust-remote-code",
        edit(
            "  name: fp32",
            "  name: fp32\n  recipe:\n"
            "    - quantize_dynamic: {dtype: qint8, trust_remote_code: true}",
        ),
        [
            f"{FILE}:10:7: quantize_dynamic: trust_remote_code: unknown parameter (parameters: "
            "dtype, per_channel, skip)"
        ],
    ),
    # symlinks and places
    Case(
        "symlinked-submission",
        None,
        [f"<ROOT>/{FILE}: a submission must be a regular file, not a symbolic link"],
        setup=symlinked_submission,
    ),
    Case(
        "symlinked-model-dir-out-of-repo",
        None,
        [f"{FILE}:4:7: model.id './models/evil' {LINK_OUTSIDE}"],
        setup=symlinked_model_dir,
    ),
    Case(
        "symlinked-data-file-out-of-repo",
        None,
        [f"{FILE}:10:38: data file 'data/eval.jsonl' {LINK_OUTSIDE}"],
        setup=symlinked_data_file,
    ),
    Case(
        "file-outside-repository",
        None,
        ["<ROOT>/../outside/s.yaml: the file is outside the repository"],
        setup=outside_repository,
        path="../outside/s.yaml",
    ),
    Case(
        "not-in-a-team-directory",
        BASE_YAML,
        [
            "submissions/s.yaml: a submission lives at submissions/<team>/<name>.yaml; move the "
            "file there"
        ],
        path="submissions/s.yaml",
    ),
    Case(
        "team-directory-with-markup",
        BASE_YAML,
        [
            "submissions/a|b/s.yaml: team and file names may use letters, digits, '.', '_' and "
            "'-' only"
        ],
        path="submissions/a|b/s.yaml",
    ),
    # impersonation and injection in the fields a pattern guards
    Case(
        "impersonates-another-team",
        edit("team: alpha", "team: beta"),
        [
            f"{FILE}:2:7: team 'beta' does not match the directory 'alpha'; a team's files live "
            "in submissions/beta/"
        ],
    ),
    Case(
        "team-with-markdown-and-html",
        edit("team: alpha", "team: 'alpha|<b>x</b>'"),
        [f"{FILE}:2:7: team: 'alpha|<b>x</b>' {NOT_A_NAME}"],
    ),
    Case(
        "team-with-mention",
        edit("team: alpha", "team: '@everyone'"),
        [f"{FILE}:2:7: team: '@everyone' {NOT_A_NAME}"],
    ),
    Case(
        "team-with-sticky-marker",
        edit("team: alpha", f"team: '{MARKER}'"),
        [f"{FILE}:2:7: team: '{MARKER}' {NOT_A_NAME}"],
    ),
    Case(
        "metric-key-html",
        edit("{accuracy: 0.5}", "{'<img src=x onerror=alert(1)>': 0.5}"),
        [
            f"{FILE}:16:13: quality metric '<img src=x onerror=alert(1)>' is not computed for "
            "text-classification; use accuracy, macro_f1"
        ],
    ),
    Case(
        "metric-key-rich-markup",
        edit("{accuracy: 0.5}", "{'[/][link=https://e.vil]x': 0.5}"),
        [
            f"{FILE}:16:13: quality metric '[/][link=https://e.vil]x' is not computed for "
            "text-classification; use accuracy, macro_f1"
        ],
    ),
    # issue 15.5: integers that crash int(), float() or json.dumps further down
    Case(
        "seed-5000-digits",
        edit("data/eval.jsonl]}", "data/eval.jsonl], seed: " + "9" * 5000 + "}"),
        [f"{FILE}:10:62: {TOO_LARGE}"],
    ),
    Case(
        "weights-300-hex-digits",
        edit("weights_mb: 16.73", "weights_mb: 0x" + "f" * 300),
        [f"{FILE}:15:15: {TOO_LARGE}"],
    ),
    Case(
        "seed-60000-hex-digits",
        edit("data/eval.jsonl]}", "data/eval.jsonl], seed: 0x" + "f" * 60000 + "}"),
        [f"{FILE}:10:62: {TOO_LARGE}"],
    ),
    Case(
        "seed-past-32-bits",
        edit("data/eval.jsonl]}", "data/eval.jsonl], seed: 4294967296}"),
        [
            f"{FILE}:10:62: evaluation.dataset.seed: Input should be less than or equal to "
            "4294967295"
        ],
    ),
    # issue 15.6: a dataset "path" that load_dataset would resolve on the runner's disk
    Case(
        "dataset-path-local-folder",
        edit("{path: json, data_files: [data/eval.jsonl]}", "{path: submissions/mallory}"),
        [f"{FILE}:10:19: {LOCAL_FOLDER.format(path='submissions/mallory')}"],
    ),
    Case(
        "dataset-path-repo-folder",
        edit("{path: json, data_files: [data/eval.jsonl]}", "{path: data/eval.jsonl}"),
        [f"{FILE}:10:19: {LOCAL_FOLDER.format(path='data/eval.jsonl')}"],
    ),
    Case(
        "dataset-path-loader-fasta",
        edit("{path: json, data_files: [data/eval.jsonl]}", "{path: fasta}"),
        [f"{FILE}:10:19: {NOT_HUB_ID.format(path='fasta')}"],
    ),
    Case(
        "dataset-path-loader-conll",
        edit("{path: json, data_files: [data/eval.jsonl]}", "{path: conll, data_files: [x]}"),
        [f"{FILE}:10:19: {NOT_HUB_ID.format(path='conll')}"],
    ),
    Case(
        "dataset-path-dot-folder",
        edit("{path: json, data_files: [data/eval.jsonl]}", "{path: ./data}"),
        [f"{FILE}:10:19: {NOT_HUB_ID.format(path='./data')}"],
    ),
]


def prepare(w: World, case: Case) -> None:
    if case.setup is not None:
        case.setup(w)
    if case.content is not None:
        w.write(case.path, case.content)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_static_case(case: Case, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    prepare(world, case)
    results = world.results  # nothing may be stored for an invalid file
    root = str(world.root)
    attempt(
        case.name,
        world,
        ["check", case.path, "--repo", root],
        capsys,
        code=2,
        expected=case.errors,
        error_prefix="error  ",
    )
    # The same file through the bot's command: same lines, nothing measured or stored.
    text = attempt(
        f"{case.name} (validate)",
        world,
        ["validate", case.path, "--device", "cpu", "--repo", root, "--results", str(results)],
        capsys,
        code=2,
        expected=case.errors,
        prefix="  error ",
        error_prefix="  error ",
    )
    OUTCOMES.pop()  # one case, two commands: counted once
    assert "INVALID" in text and text.rstrip().endswith("0 of 1 submission(s) pass")
    assert not results.exists()


def test_corpus_needs_at_least_forty_static_cases() -> None:
    assert len(CASES) >= 40


def test_all_files_at_once_in_a_fresh_process(tmp_path: Path) -> None:
    """One `mcval check` process over every content case: all reported, exit 2, no
    traceback (the CLI as CI runs it, not through pytest's capture)."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "eval.jsonl").write_text('{"text": "a b", "label": "x"}\n')
    cases = [c for c in CASES if c.setup is None and c.path == FILE]
    good = root / "submissions" / "alpha" / "good.yaml"
    good.parent.mkdir(parents=True)
    good.write_text(BASE_YAML)
    for case in cases:
        path = root / "submissions" / "alpha" / f"{case.name}.yaml"
        assert case.content is not None
        data = case.content if isinstance(case.content, bytes) else case.content.encode()
        path.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-m", "mcval.cli", "check", "submissions", "--repo", str(root)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert "ok     submissions/alpha/good.yaml (alpha/good)" in lines
    for case in cases:
        for error in case.errors:
            line = "error  " + error.replace(FILE, f"submissions/alpha/{case.name}.yaml")
            assert line in lines, (case.name, proc.stdout)
    assert lines[-1] == f"1 of {len(cases) + 1} submission file(s) valid"


# -- impersonation through the GitHub rule ----------------------------------------------------


def test_team_ownership_rule_refuses_another_teams_directory() -> None:
    policy = Policy(github=GithubPolicy(teams={"alpha": ["alice"], "beta": ["bob"]}))
    files = [ChangedFile(path="submissions/beta/s.yaml", status="added")]
    assert [str(v) for v in check_team_ownership(files, "alice", policy)] == [
        "submissions/beta/s.yaml: belongs to team 'beta' and alice is not a member of it "
        "(your team is alpha)"
    ]
    assert check_team_ownership(files, "bob", policy) == []


def test_pull_request_into_another_teams_directory_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file itself is consistent (team: beta in submissions/beta/), so only the
    ownership rule can see that alice is not beta: `mcval ci changed` exits 1, one line."""
    from ci_helpers import ci_main

    world.write("mcval.toml", '[github.teams]\nalpha = ["alice"]\nbeta = ["bob"]\n')
    with FakeGithub() as fake:
        fake.add_token("ro")
        fake.create_repo("course/table", {"README.md": "# Course\n"})
        fake.fork("course/table", "alice/table")
        pull = fake.open_pull(
            "course/table",
            "alice/table",
            {"submissions/beta/s.yaml": edit("team: alpha", "team: beta")},
            author="alice",
        )
        monkeypatch.setenv("GITHUB_TOKEN", "ro")
        monkeypatch.setenv("GITHUB_REPOSITORY", "course/table")
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        for name in ("GITHUB_EVENT_PATH", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
            monkeypatch.delenv(name, raising=False)
        attempt(
            "pull-request-into-another-teams-directory",
            world,
            ["ci", "changed", "--repo", str(world.root), "--pr", str(pull.number)],
            capsys,
            code=1,
            prefix="error: ",
            expected=[
                "submissions/beta/s.yaml: belongs to team 'beta' and alice is not a member of "
                "it (your team is alpha)"
            ],
            error_prefix="error: ",
            main=ci_main,
        )
        assert fake.count("POST", ".") == 0  # nothing written to GitHub either


# -- cases that need a measuring child ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_bert_classifier

    return build_tiny_bert_classifier(tmp_path_factory.mktemp("adv") / "bert", labels=("x", "y"))


def validate_argv(w: World) -> list[str]:
    return ["validate", FILE, "--device", "cpu", "--repo", str(w.root), "--results", str(w.results)]


@pytest.mark.slow
def test_pickle_checkpoint_never_unpickled(
    world: World, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = world.root / "models" / "pickled"
    model.mkdir(parents=True)
    shutil.copy(tiny_bert / "config.json", model / "config.json")
    marker = world.outside / "pwned-by-pickle"
    world.markers.append(marker)
    write_malicious_bin(model / "pytorch_model.bin", marker)
    world.write(FILE, edit("id: org/tiny-bert", "id: ./models/pickled"))
    attempt(
        "pickle-only-checkpoint",
        world,
        validate_argv(world),
        capsys,
        code=2,
        prefix="  error ",
        expected=[
            f"{FILE}:4: the checkpoint has only pickle weights (pytorch_model.bin); mcval loads "
            "safetensors only, because unpickling can run arbitrary code; convert them on your "
            "machine: `model = AutoModelForSequenceClassification.from_pretrained(dir); "
            "model.save_pretrained(dir, safe_serialization=True)`, then commit model.safetensors"
        ],
        error_prefix="  error ",
    )
    assert not world.results.exists()


@pytest.mark.slow
def test_auto_map_remote_code_never_runs(
    world: World, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = world.root / "models" / "custom"
    shutil.copytree(tiny_bert, model)
    marker = world.outside / "pwned-by-remote-code"
    world.markers.append(marker)
    (model / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.Evil"}
    (model / "config.json").write_text(json.dumps(config))
    world.write(FILE, edit("id: org/tiny-bert", "id: ./models/custom"))
    attempt(
        "auto-map-remote-code",
        world,
        validate_argv(world),
        capsys,
        code=2,
        prefix="  error ",
        expected=[
            f"{FILE}:4: config.json has 'auto_map' (AutoModelForSequenceClassification → "
            "modeling_evil.Evil): the model needs its own Python code, which mcval never runs "
            "(trust_remote_code stays off); use an architecture built into transformers, or "
            "remove 'auto_map' if the model does not need it"
        ],
        error_prefix="  error ",
    )


@pytest.mark.slow
def test_gguf_with_corrupted_header(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    model = world.root / "models" / "g"
    model.mkdir(parents=True)
    # Right magic, absurd version and counts: the parser must refuse it, not allocate.
    header = b"GGUF" + (99).to_bytes(4, "little") + (2**62).to_bytes(8, "little") * 2
    (model / "m.gguf").write_bytes(header + b"\0" * 64)
    (world.root / "d.txt").write_text("some text\n", encoding="utf-8")  # checked before runs
    world.write(
        FILE,
        BASE_YAML.replace("id: org/tiny-bert", "id: ./models/g")
        .replace("  task: text-classification", "  task: causal-lm\n  gguf_file: m.gguf")
        .replace("data_files: [data/eval.jsonl]}\n  metrics: [accuracy]", "data_files: [d.txt]}")
        .replace("path: json", "path: text")
        .replace("{tokens: 16}", "{prompt_tokens: 8, new_tokens: 2}")
        .replace("  quality: {accuracy: 0.5}\n", ""),
    )
    text = attempt(
        "gguf-corrupted-header",
        world,
        validate_argv(world),
        capsys,
        code=2,
        prefix="  error ",
        expected=[],
        error_prefix=None,
    )
    (line,) = [t for t in text.splitlines() if t.startswith("  error ")]
    assert line.startswith(f"  error {FILE}:7: m.gguf is not a valid GGUF file (")
    assert line.endswith(
        "); re-export it (e.g. with llama.cpp's convert_hf_to_gguf.py) and commit it again"
    )
    assert "version 99" in line  # the gguf reader's own words for the refused header


@pytest.mark.slow
def test_quantized_gguf_is_an_input_error(
    world: World, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Q8_0 GGUF would be dequantized by transformers and measured as fp32: the child
    refuses it from its header, and validate reports it on model.gguf_file's line, exit 2."""
    from tiny_models import build_tiny_llama, llama_to_gguf

    llama = build_tiny_llama(tmp_path_factory.mktemp("adv") / "llama")
    model = world.root / "models" / "g"
    model.mkdir(parents=True)
    llama_to_gguf(llama, model / "m.gguf", "Q8_0")
    (world.root / "d.txt").write_text("some text\n", encoding="utf-8")  # checked before runs
    world.write(
        FILE,
        BASE_YAML.replace("id: org/tiny-bert", "id: ./models/g")
        .replace("  task: text-classification", "  task: causal-lm\n  gguf_file: m.gguf")
        .replace("data_files: [data/eval.jsonl]}\n  metrics: [accuracy]", "data_files: [d.txt]}")
        .replace("path: json", "path: text")
        .replace("{tokens: 16}", "{prompt_tokens: 8, new_tokens: 2}")
        .replace("  quality: {accuracy: 0.5}\n", ""),
    )
    attempt(
        "gguf-quantized",
        world,
        validate_argv(world),
        capsys,
        code=2,
        prefix="  error ",
        expected=[
            f"{FILE}:7: model.gguf_file: m.gguf holds quantized tensors (15 × Q8_0, 5 × F32), "
            "which transformers dequantizes to floating point while loading, so the row would "
            "be timed and sized as a floating-point model, not as Q8_0; set model.runtime: "
            "llama.cpp to measure it as GGUF (or convert it to F16/F32 GGUF or a safetensors "
            "checkpoint)"
        ],
        error_prefix="  error ",
    )


@pytest.mark.slow
def test_unreadable_audio_row_fails_the_verdict(
    world: World, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Quality cannot be computed: the verdict is *error* (exit 1) with the row named; the
    record says why. The audio file's name carries rich markup, printed literally; the
    same measurement shown by `mcval measure` must not crash on it either."""
    from tiny_models import build_tiny_whisper

    from mcval.results import load_record

    build_tiny_whisper(world.root / "models" / "whisper")
    (world.root / "data" / "clips").mkdir()
    (world.root / "data" / "clips" / "[bold]bad.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    world.write("data/asr.jsonl", json.dumps({"audio": "clips/[bold]bad.wav", "text": "hi"}) + "\n")
    world.write(
        FILE,
        BASE_YAML.replace("id: org/tiny-bert", "id: ./models/whisper")
        .replace("text-classification", "automatic-speech-recognition")
        .replace("data/eval.jsonl", "data/asr.jsonl")
        .replace("metrics: [accuracy]", "metrics: [wer]\n  max_new_tokens: 4")
        .replace("{tokens: 16}", "{seconds: 1}")
        .replace("{accuracy: 0.5}", "{wer: 0.5}"),
    )
    expected_error = (
        "quality evaluation failed: TaskDataError: data/asr.jsonl row 1: cannot read "
        "[bold]bad.wav as audio: "
    )
    text = attempt(
        "unreadable-audio-row",
        world,
        validate_argv(world),
        capsys,
        code=1,
        expected=[],
        error_prefix=None,
    )
    assert "ERROR alpha/s" in text
    (line,) = [t for t in text.splitlines() if t.startswith("  error ")]
    assert line.startswith("  error cpu: " + expected_error) or line.startswith(
        "  error " + expected_error
    ), text
    record = load_record(world.results / "alpha" / "s.json")
    assert record.verdict == "error"
    (error,) = record.report.errors
    assert error.startswith(expected_error)
    # `mcval measure` prints the same message through rich: literally, without a crash.
    from mcval.measure import measurement as runner
    from mcval.measure.measurement import Measurement

    stored = Measurement.model_validate(record.measurement)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "measure_submission", lambda *a, **k: stored)
        text = attempt(
            "unreadable-audio-row (measure)",
            world,
            ["measure", FILE, "--device", "cpu", "--repo", str(world.root)],
            capsys,
            code=1,
            expected=[],
            error_prefix=None,
        )
    OUTCOMES.pop()
    assert f"error: {expected_error}" in text


# -- hostile free text, rendered ----------------------------------------------------------------

HOSTILE_METHOD = "INT8 | <script>x</script> @everyone [a](https://e.vil) $\\frac{"
HOSTILE_MODEL = f"org/<img src=x onerror=alert(1)>{MARKER}"
HOSTILE_NOTES = f"{MARKER} @org/team #12 ![t](https://e.vil/t.png) </details>"


def test_free_text_is_escaped_in_comment_and_readme(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """method.name, method.notes, model.id and hardware.cpu/gpu hold HTML, Markdown,
    mentions, a fake marker and a line break; the comment and the README show them as
    text (exact escapes), with one marker, no live mention and no extra table row."""
    from mcval.measure import measurement as runner
    from mcval.render.readme import current_block

    text = (
        BASE_YAML.replace("id: org/tiny-bert", f"id: {json.dumps(HOSTILE_MODEL)}")
        .replace(
            "name: fp32",
            f"name: {json.dumps(HOSTILE_METHOD)}\n  notes: {json.dumps(HOSTILE_NOTES)}",
        )
        .replace(
            "hardware: {cpu: AMD EPYC 7B13}",
            'hardware: {cpu: "Tesla T4\\n| injected | row |", gpu: "@everyone <b>GPU</b>"}',
        )
    )
    world.write(FILE, text)
    fake = measurement()
    monkeypatch.setattr(runner, "measure_submission", lambda *a, **k: fake)
    monkeypatch.setattr("mcval.validate.Validator.environment_class", ENV.environment_class)
    comment = world.outside / "comment.md"
    assert (
        mcval_main(
            [
                "validate",
                FILE,
                "--device",
                "cpu",
                "--repo",
                str(world.root),
                "--markdown",
                str(comment),
            ]
        )
        == 0
    )
    assert mcval_main(["table", "--repo", str(world.root)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err

    markdown = comment.read_text(encoding="utf-8")
    # A pass is collapsed: its title is raw HTML (<summary>), so HTML escaping, no Markdown.
    title = next(line for line in markdown.splitlines() if line.startswith("<details>"))
    method = "INT8 | &lt;script&gt;x&lt;/script&gt; @&#8203;everyone [a](https://e.vil) $\\frac{"
    model = "org/&lt;img src=x onerror=alert(1)&gt;&lt;!-- mcval:report --&gt;"
    assert title == f"<details><summary>✅ pass · alpha/s — {method} · {model}</summary>"
    body = comment_body(markdown)
    for document in (markdown, body):
        assert document.count(MARKER) == 1 and document.startswith(MARKER)
        for raw in ("<script>", "<img", "@everyone", "| injected |", "@org/team"):
            assert raw not in document
        # The only </details> is the one closing our own block, never a submission's.
        assert document.count("</details>") == document.count("<details><summary>") == 1

    readme = (world.root / "README.md").read_text(encoding="utf-8")
    assert readme.count(MARKER) == 0 and "<script>" not in readme and "<img" not in readme
    assert "injected" not in readme and "@everyone" not in readme
    block = current_block(readme, Policy().table.heading)
    cell = (
        "INT8 \\| &lt;script&gt;x&lt;/script&gt; @&#8203;everyone \\[a\\](https://e.vil) $\\\\frac{"
    )
    rows = [line for line in block if line.startswith("| ") and "alpha" in line]
    assert rows == [
        f"| {model} | alpha | {cell} | 16.73 | 3.00 | — | 120.00 | — "
        "| 50.00% Accuracy 33.33% Macro-F1 |"
    ]
    assert (world.root / "results.svg").read_bytes().startswith(b"<?xml")


def test_security_md_cites_tests_that_exist() -> None:
    """SECURITY.md maps every threat to the test proving its control; keep those real."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "SECURITY.md").read_text(encoding="utf-8")
    cited = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text))
    assert len(cited) >= 40
    missing = [
        f"{file}::{name}"
        for file, name in sorted(cited)
        if not re.search(rf"^def {name}\(", (root / file).read_text(encoding="utf-8"), re.M)
    ]
    assert missing == []
    cases = set(re.findall(r"`([a-z0-9-]+)`", text))
    named = {c for c in cases if any(c == case.name for case in CASES)}
    assert named, "SECURITY.md names corpus cases by their ids"
