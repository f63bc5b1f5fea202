"""``mcval check``'s rules for ``model.runtime``, ``model.library`` and ``model.file``.

Torch-free: the table of what each runtime supports is ``mcval.runtimes``; the runner's
backends implement the same table, so what passes here can be measured.
"""

from __future__ import annotations

from mcval.runtimes import (
    GGUF_RUNTIMES,
    TIMM_TASKS,
    file_problem,
    generation_problem,
    gguf_problem,
    task_problem,
)
from mcval.submission.schema import DEFAULT_BENCHMARK_INPUT, Submission

FieldPath = tuple[str | int, ...]


def runtime_problems(sub: Submission) -> list[tuple[FieldPath, str]]:
    """``(field, message)`` for every runtime rule the submission breaks."""
    model = sub.model
    runtime, task = model.runtime, model.task
    problems: list[tuple[FieldPath, str]] = []
    problem = task_problem(runtime, task)
    if problem:
        problems.append((("model", "runtime"), problem))
    elif task in DEFAULT_BENCHMARK_INPUT:
        shape = (sub.benchmark.input or DEFAULT_BENCHMARK_INPUT[task]).given()
        generation = generation_problem(runtime) if "new_tokens" in shape else None
        if generation:
            where = ("benchmark", "input") if sub.benchmark.input else ("model", "runtime")
            problems.append((where, generation))
    gguf = gguf_problem(runtime, model.gguf_file, model.file)
    problem = gguf or file_problem(runtime, model.file)
    if problem:
        problems.append((("model", "gguf_file" if gguf and not model.file else "file"), problem))
    if runtime in GGUF_RUNTIMES:
        problems += _gguf_runtime_problems(sub)
    if model.file is not None and model.gguf_file is not None:
        problems.append((("model", "file"), "model.file and model.gguf_file exclude each other"))
    if model.file is not None and sub.method.recipe:
        from mcval.models.recipe_params import STEPS

        torch_steps = [
            s.name
            for s in sub.method.recipe
            if s.name in STEPS and STEPS[s.name].runtime == "pytorch"
        ]
        if torch_steps:
            problems.append(
                (
                    ("method", "recipe"),
                    f"{', '.join(torch_steps)} act(s) on the PyTorch checkpoint, but model.file "
                    "ships a converted model; keep only the runtime's own steps",
                )
            )
    if model.library == "timm":
        if task not in TIMM_TASKS:
            problems.append(
                (
                    ("model", "library"),
                    f"library timm serves {', '.join(TIMM_TASKS)} only, not {task}",
                )
            )
        if model.gguf_file is not None:
            problems.append((("model", "library"), "a timm model loads from safetensors, not GGUF"))
    return problems


def _gguf_runtime_problems(sub: Submission) -> list[tuple[FieldPath, str]]:
    """llama.cpp runs the GGUF as shipped, one sequence at a time."""
    problems: list[tuple[FieldPath, str]] = []
    runtime = sub.model.runtime
    if sub.method.recipe:
        problems.append(
            (
                ("method", "recipe"),
                f"runtime {runtime} measures the GGUF file as it is, so recipe steps cannot "
                "change it; quantize with llama.cpp's llama-quantize and submit the resulting "
                "file (the method's name says which type, e.g. Q4_K_M)",
            )
        )
    if sub.benchmark.batch_size != 1:
        problems.append(
            (
                ("benchmark", "batch_size"),
                f"runtime {runtime} runs one sequence per call: use benchmark.batch_size: 1",
            )
        )
    return problems
