"""The task registry and protocol; importing mcval.tasks must not import torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mcval.errors import InputError, InputErrors
from mcval.metrics import DEFAULT_METRICS, TASK_METRICS, TASKS
from mcval.submission import load_submission
from mcval.submission.schema import Benchmark, BenchmarkInput
from mcval.tasks import TaskHandler, get_task
from mcval.tasks.base import benchmark_input


def test_every_task_has_a_handler_following_the_protocol() -> None:
    for task in TASKS:
        handler = get_task(task)
        assert isinstance(handler, TaskHandler)
        assert handler.name == task
        assert handler.default_metrics == DEFAULT_METRICS[task]
        assert handler.model_class().__name__.startswith("AutoModelFor")


def test_default_metrics_are_metrics_the_task_computes() -> None:
    for task in TASKS:
        assert set(DEFAULT_METRICS[task]) <= set(TASK_METRICS[task])


def test_unknown_task() -> None:
    with pytest.raises(InputError, match="unknown task 'summarization'; known tasks: "):
        get_task("summarization")


def test_default_benchmark_inputs_come_from_the_submission_defaults() -> None:
    assert benchmark_input("causal-lm", Benchmark()) == {"prompt_tokens": 128, "new_tokens": 50}
    assert benchmark_input("image-classification", Benchmark()) == {"image_size": 224}


def test_tasks_package_metadata_import_is_torch_free() -> None:
    code = (
        "import sys, mcval.tasks, mcval.tasks.base, mcval.tasks.data, mcval.tasks.scoring; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


WRITTEN_INPUTS = {
    "tokens": "{tokens: 32}",
    "prompt_tokens": "{prompt_tokens: 16, new_tokens: 8}",
    "seconds": "{seconds: 5}",
    "image_size": "{image_size: 64}",
}
ACCEPTED = {
    "text-classification": {"tokens"},
    "token-classification": {"tokens"},
    "causal-lm": {"tokens", "prompt_tokens"},
    "translation": {"tokens", "prompt_tokens"},
    "automatic-speech-recognition": {"seconds"},
    "image-classification": {"image_size"},
}


def _check_accepts(tmp_path: Path, task: str, written: str) -> bool:
    """Whether ``mcval check`` (the loader) accepts a submission with this input."""
    path = tmp_path / "submissions" / "t" / "row.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"schema: 1\nteam: t\nmodel: {{id: org/m, revision: {'ab' * 20}, task: {task}}}\n"
        f"method: {{name: fp32}}\nevaluation: {{dataset: {{path: org/data}}}}\n"
        f"benchmark: {{input: {written}}}\n",
        encoding="utf-8",
    )
    try:
        load_submission(path, tmp_path)
    except InputErrors as exc:
        assert all("does not fit" in e.message for e in exc.errors), exc.errors
        return False
    return True


def _runner_accepts(task: str, written: str) -> bool:
    """Whether the runner's benchmark input (what every task's benchmark call reads) takes it."""
    fields = yaml.safe_load(written)
    try:
        benchmark_input(task, Benchmark(input=BenchmarkInput(**fields)))
    except InputError:
        return False
    return True


@pytest.mark.parametrize("task", TASKS)
def test_check_and_runner_accept_the_same_benchmark_inputs(tmp_path: Path, task: str) -> None:
    """One table of shapes: ``mcval check`` once rejected ``{tokens: 32}`` for translation,
    which the runner (and the translation task) accepted."""
    by_check = {k for k, w in WRITTEN_INPUTS.items() if _check_accepts(tmp_path, task, w)}
    by_runner = {k for k, w in WRITTEN_INPUTS.items() if _runner_accepts(task, w)}
    assert by_check == by_runner == ACCEPTED[task]
