"""The task registry and protocol; importing mcval.tasks must not import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mcval.errors import InputError
from mcval.metrics import DEFAULT_METRICS, TASKS
from mcval.submission.schema import Benchmark
from mcval.tasks import TaskHandler, get_task
from mcval.tasks.base import benchmark_input


def test_every_task_has_a_handler_following_the_protocol() -> None:
    for task in TASKS:
        handler = get_task(task)
        assert isinstance(handler, TaskHandler)
        assert handler.name == task
        assert handler.default_metrics == DEFAULT_METRICS[task]
        assert handler.model_class().__name__.startswith("AutoModelFor")


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
