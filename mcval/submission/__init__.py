"""The submission file: strict reading, unit conversion, schema and per-file rules."""

from mcval.metrics import TASKS, Task
from mcval.submission.load import LoadedSubmission, is_local_model, load_submission
from mcval.submission.schema import (
    DEFAULT_BENCHMARK_INPUT,
    Benchmark,
    BenchmarkInput,
    DatasetSpec,
    Evaluation,
    Hardware,
    Method,
    ModelSpec,
    RecipeStep,
    Reported,
    Submission,
)

__all__ = [
    "DEFAULT_BENCHMARK_INPUT",
    "TASKS",
    "Benchmark",
    "BenchmarkInput",
    "DatasetSpec",
    "Evaluation",
    "Hardware",
    "LoadedSubmission",
    "Method",
    "ModelSpec",
    "RecipeStep",
    "Reported",
    "Submission",
    "Task",
    "is_local_model",
    "load_submission",
]
