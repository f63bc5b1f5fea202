"""The task protocol the measurement runner drives, and the registry of task handlers.

This module is torch-free: the handlers themselves (which import torch and transformers)
are imported only when ``get_task`` is called, so the task names and role defaults can be
imported without pulling in the measuring stack. The benchmark input shapes and defaults
are the contract's (``mcval.submission.schema``), shared with ``mcval check``.

Protocol (all six tasks implement it; the runner relies on nothing else):

``name``
    The task name of ``model.task`` (``"causal-lm"``...).
``default_metrics``
    Metrics computed when ``evaluation.metrics`` is empty (``mcval.metrics.DEFAULT_METRICS``).
``model_class()``
    The transformers ``Auto*`` class the model is loaded with.
``load_preprocessor(source, revision, gguf_file)``
    Tokenizer / processor / image processor from the same source as the model; never with
    ``trust_remote_code``.
``benchmark_call(model, preprocessor, benchmark, device)``
    Builds the fixed, seeded benchmark input once, on ``device``, and returns a zero-argument
    callable doing exactly one inference call (a forward pass, or ``generate`` with
    ``min_new_tokens == max_new_tokens``, greedy): the thing latency times.
``evaluate(model, preprocessor, evaluation, repo_root, device)``
    Batched evaluation on the declared slice; returns ``{metric name: value}`` in the
    metric's natural unit (see ``mcval.metrics``), in the order the metrics were requested.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mcval.errors import InputError
from mcval.metrics import DEFAULT_METRICS, TASK_METRICS, TASK_ROLES
from mcval.submission.schema import DEFAULT_BENCHMARK_INPUT, BenchmarkInput, input_shape_problem

if TYPE_CHECKING:
    from mcval.submission.schema import Benchmark, Evaluation


class TaskDataError(InputError):
    """The evaluation data or its declaration cannot be used (missing column, bad label...).

    The message names the row (``data/eval.jsonl row 7``) so a student can fix the file.
    """


@runtime_checkable
class TaskHandler(Protocol):
    """What the measurement runner needs from a task (see the module docstring)."""

    name: str
    default_metrics: tuple[str, ...]

    def model_class(self) -> type:
        """The transformers ``Auto*`` class to load the model with."""
        ...

    def load_preprocessor(
        self, source: str | Path, revision: str | None, gguf_file: str | None
    ) -> Any:
        """Tokenizer or processor matching the model (never ``trust_remote_code``)."""
        ...

    def benchmark_call(
        self, model: Any, preprocessor: Any, benchmark: Benchmark, device: str
    ) -> Callable[[], Any]:
        """A zero-argument callable doing exactly one inference call on a fixed input."""
        ...

    def evaluate(
        self,
        model: Any,
        preprocessor: Any,
        evaluation: Evaluation,
        repo_root: Path,
        device: str,
    ) -> dict[str, float]:
        """Quality metrics on the declared evaluation slice, batched."""
        ...


_HANDLERS: dict[str, str] = {
    "text-classification": "mcval.tasks.text_classification:TextClassification",
    "token-classification": "mcval.tasks.token_classification:TokenClassification",
    "causal-lm": "mcval.tasks.causal_lm:CausalLM",
    "translation": "mcval.tasks.translation:Translation",
    "automatic-speech-recognition": "mcval.tasks.asr:SpeechRecognition",
    "image-classification": "mcval.tasks.image_classification:ImageClassification",
}


TASK_MODEL_CLASSES: dict[str, str] = {
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "causal-lm": "AutoModelForCausalLM",
    "translation": "AutoModelForSeq2SeqLM",
    "automatic-speech-recognition": "AutoModelForSpeechSeq2Seq",
    "image-classification": "AutoModelForImageClassification",
}
"""The transformers ``Auto*`` class each task loads its model with (the handlers'
``auto_class``, readable without importing them; a test holds the two equal)."""


def get_task(name: str) -> TaskHandler:
    """The handler of task ``name``; raises ``InputError`` for an unknown task."""
    target = _HANDLERS.get(name)
    if target is None:
        raise InputError(f"unknown task {name!r}; known tasks: {', '.join(_HANDLERS)}")
    module_name, class_name = target.split(":")
    handler: TaskHandler = getattr(importlib.import_module(module_name), class_name)()
    return handler


def resolve_metrics(task: str, requested: list[str] | tuple[str, ...]) -> list[str]:
    """The metrics to compute: the requested ones (validated) or the task's defaults."""
    allowed = TASK_METRICS[task]
    if not requested:
        return list(DEFAULT_METRICS[task])
    unknown = [m for m in requested if m not in allowed]
    if unknown:
        raise InputError(
            f"evaluation.metrics: {', '.join(map(repr, unknown))} cannot be computed for "
            f"{task}; choose from {', '.join(allowed)}"
        )
    return list(dict.fromkeys(requested))


def resolve_columns(task: str, columns: Mapping[str, str]) -> dict[str, str]:
    """Role → column name for ``task``: defaults overridden by ``evaluation.columns``.

    Optional roles (default ``None``) appear only when mapped.
    """
    roles = TASK_ROLES[task]
    unknown = [r for r in columns if r not in roles]
    if unknown:
        raise InputError(
            f"evaluation.columns: unknown role(s) {', '.join(map(repr, unknown))} for {task}; "
            f"roles: {', '.join(roles)}"
        )
    resolved: dict[str, str] = {}
    for role, default in roles.items():
        column = columns.get(role, default)
        if column is not None:
            resolved[role] = column
    return resolved


class Scores(dict[str, float]):
    """Metric values plus ``details``: how they were computed (the ASR normaliser, the
    resampler, each clip's original rate), which the runner records beside them."""

    def __init__(self, values: Mapping[str, float], details: Mapping[str, Any] | None = None):
        super().__init__(values)
        self.details: dict[str, Any] = dict(details or {})


@dataclass(frozen=True)
class NotedCall:
    """A benchmark call, with a note when mcval chose its input for the student (the runner
    adds the note to the measurement's warnings)."""

    call: Callable[[], Any]
    note: str | None = None

    def __call__(self) -> Any:
        return self.call()


def fitted_input(
    task: str, benchmark: Benchmark, limit: int | None, *, counts_new_tokens: bool
) -> tuple[dict[str, int | float], str | None]:
    """The benchmark input and a note: when the student left ``benchmark.input`` out and
    the task's default is longer than the model takes (``limit`` tokens), the default
    shortened to the model's maximum, with a note saying so. A declared input is never
    changed (a too-long one is the student's error). ``counts_new_tokens``: generated tokens
    count towards the limit (a decoder-only LM's positions)."""
    shape = benchmark_input(task, benchmark)
    if benchmark.input is not None or limit is None or limit < 2:
        return shape, None
    fitted: dict[str, int]
    if "tokens" in shape:
        if int(shape["tokens"]) <= limit:
            return shape, None
        fitted = {"tokens": limit}
    else:
        prompt, new = int(shape["prompt_tokens"]), int(shape["new_tokens"])
        if (prompt + new if counts_new_tokens else prompt) <= limit:
            return shape, None
        if counts_new_tokens:
            new = min(new, max(1, limit // 4))
            prompt = limit - new
        else:
            prompt = limit
        fitted = {"prompt_tokens": prompt, "new_tokens": new}
    default = DEFAULT_BENCHMARK_INPUT[task].shape()
    chosen = BenchmarkInput.model_validate(fitted).shape()
    note = (
        f"benchmark.input: the model takes at most {limit} tokens, fewer than the default "
        f"{default}; timed with {chosen} instead (set benchmark.input to choose)"
    )
    return dict(fitted), note


def benchmark_input(task: str, benchmark: Benchmark) -> dict[str, int | float]:
    """The benchmark input as a dict of its given fields (the task's default when not
    declared; ``fitted_input`` shortens that default to the model).

    Raises ``InputError`` when the declared shape does not fit the task: the same table
    (``TASK_INPUT_SHAPES``) and the same words as ``mcval check``.
    """
    given = (benchmark.input or DEFAULT_BENCHMARK_INPUT[task]).given()
    problem = input_shape_problem(task, frozenset(given))
    if problem:
        raise InputError(problem)
    return given
