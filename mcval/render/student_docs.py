"""The generated sections of ``submissions/README.md``: recipe steps and tasks, from the code.

The recipe registry (``mcval.models.recipe_params.STEPS``), the tasks' roles, metrics,
benchmark inputs and model classes are what the runner really uses; the student docs are
written from them so they cannot drift. Each section sits between two markers::

    <!-- generated: recipe-steps (python -m mcval.render.student_docs) -->
    ...
    <!-- end generated: recipe-steps -->

``python -m mcval.render.student_docs`` rewrites the sections in place;
``--check`` exits 1 when the file is stale (``tests/test_student_docs.py`` does the same).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcval.metrics import DEFAULT_METRICS, TASK_METRICS, TASK_ROLES, TASKS
from mcval.models.recipe_params import STEPS
from mcval.runtimes import ARTEFACT_SUFFIXES, GGUF_RUNTIMES, RUNTIME_LABELS, RUNTIME_TASKS
from mcval.submission.schema import DEFAULT_BENCHMARK_INPUT, INPUT_SHAPES, TASK_INPUT_SHAPES
from mcval.submission.units import NOT_MEASURED_SPELLINGS
from mcval.tasks.base import TASK_MODEL_CLASSES

README = Path(__file__).resolve().parents[2] / "submissions" / "README.md"


def _value_words(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A parameter's accepted values in a few words, from its JSON Schema."""
    if "$ref" in schema:
        return _value_words(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return " or ".join(_value_words(s, defs) for s in options)
    if "enum" in schema:
        return ", ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type")
    if kind == "array":
        return "list of module-name globs (`lm_head`, `*.attention.*`)"
    if kind == "boolean":
        return "`true` / `false`"
    if kind in ("number", "integer"):
        word = "whole number" if kind == "integer" else "number"
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is not None and high is not None:
            return f"{word} {low:g}–{high:g}"
        if low is not None:
            return f"{word} ≥ {low:g}"
        return word
    return str(kind)


def recipe_steps() -> str:
    """One table per recipe step: its parameters, accepted values, defaults and meaning."""
    parts = [
        "A recipe is a list of one-key steps, applied in order after the checkpoint loads "
        "(`bnb_*` steps quantize while it loads and must be the only step):\n"
    ]
    for name, info in STEPS.items():
        schema = info.params.model_json_schema()
        defs = schema.get("$defs", {})
        required = set(schema.get("required", []))
        where = "" if info.runtime == "pytorch" else f" Needs `model.runtime: {info.runtime}`."
        parts.append(f"\n**`{name}`**: {info.summary}.{where}\n")
        properties = schema.get("properties", {})
        if not properties:
            parts.append("\nNo parameters.\n")
            continue
        parts.append("\n| parameter | values | default | meaning |\n| --- | --- | --- | --- |\n")
        for param, prop in properties.items():
            field = info.params.model_fields[param]
            if param in required:
                default = "required"
            elif field.default_factory is not None:
                default = "`[]`"
            else:
                value = field.default
                value = str(value).lower() if isinstance(value, bool) else value
                default = "none" if value is None else f"`{value}`"
            meaning = " ".join((field.description or "").split()) or "—"
            values = _value_words(prop, defs)
            parts.append(f"| `{param}` | {values} | {default} | {meaning} |\n")
    parts.append(
        "\nExample: `recipe: [{prune: {amount: 0.5, method: structured}}, "
        "{quantize_dynamic: {dtype: qint8}}]`.\n"
    )
    return "".join(parts)


def _roles(task: str) -> str:
    words = []
    for role, column in TASK_ROLES[task].items():
        words.append(f"`{role}` (optional)" if column is None else f"`{role}` → `{column}`")
    return ", ".join(words)


def _shape(shape: frozenset[str]) -> str:
    return f"`{INPUT_SHAPES[shape]}`"


def tasks() -> str:
    """Per task: the model class it loads, column roles, metrics and benchmark inputs."""
    rows = [
        "| task | loaded with | column roles → default column | metrics (default **bold**) "
        "| default `benchmark.input` | other inputs |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
    ]
    for task in TASKS:
        metrics = ", ".join(
            f"**`{m}`**" if m in DEFAULT_METRICS[task] else f"`{m}`" for m in TASK_METRICS[task]
        )
        default = DEFAULT_BENCHMARK_INPUT[task]
        other = [s for s in TASK_INPUT_SHAPES[task] if s != default.given_shape()]
        given = ", ".join(f"{k}: {v:g}" for k, v in default.given().items())
        rows.append(
            f"| {task} | `{TASK_MODEL_CLASSES[task]}` | {_roles(task)} | {metrics} | "
            f"`{{{given}}}` | {', '.join(map(_shape, other)) or '—'} |\n"
        )
    rows.append(
        "\nMetric values under `reported.quality`: accuracy / F1 / WER / CER as fractions "
        "(or with `%`), BLEU and chrF 0–100, perplexity as is. Keys are read "
        "case-insensitively: `Accuracy`, `F1` (the task's F1), `BLEU`, `WER`, `CER`, `PPL` "
        "work, and the note says what they were read as.\n"
        f'\n"Not measured" is written by leaving the field out, `null`, or '
        f"{', '.join(f'`{s}`' for s in NOT_MEASURED_SPELLINGS)} "
        '(quote a lone dash: `"-"`).\n'
    )
    return "".join(rows)


def runtimes() -> str:
    """Per runtime: the tasks it measures, its own recipe steps and what model.file takes."""
    rows = [
        "| `model.runtime` | shown as | tasks | its own recipe steps | `model.file` |\n"
        "| --- | --- | --- | --- | --- |\n"
    ]
    for runtime, label in RUNTIME_LABELS.items():
        steps = [f"`{n}`" for n, info in STEPS.items() if info.runtime == runtime]
        if runtime == "pytorch":
            steps = ["all the others"]
        suffixes = ARTEFACT_SUFFIXES.get(runtime)
        file = " or ".join(f"`{x}`" for x in suffixes) if suffixes else "not accepted"
        if runtime in GGUF_RUNTIMES:
            file = "not accepted: `model.gguf_file` names the `.gguf`"
        tasks_ = ", ".join(RUNTIME_TASKS[runtime])
        rows.append(f"| `{runtime}` | {label} | {tasks_} | {', '.join(steps) or '—'} | {file} |\n")
    return "".join(rows)


SECTIONS: dict[str, Callable[[], str]] = {
    "recipe-steps": recipe_steps,
    "tasks": tasks,
    "runtimes": runtimes,
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated: {name} [^\n]*-->\n)(.*?)(<!-- end generated: {name} -->)", re.DOTALL
    )


def render(text: str) -> str:
    """``text`` with every generated section rewritten; a missing marker is an error."""
    for name, build in SECTIONS.items():
        pattern = _pattern(name)
        if not pattern.search(text):
            raise ValueError(f"submissions/README.md has no generated section {name!r}")
        body = build()
        text = pattern.sub(lambda m, body=body: m[1] + "\n" + body + "\n" + m[3], text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    parser.add_argument("path", nargs="?", type=Path, default=README)
    args = parser.parse_args(argv)
    text = args.path.read_text(encoding="utf-8")
    fresh = render(text)
    if args.check:
        if fresh != text:
            print(f"{args.path} is stale: run python -m mcval.render.student_docs", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
