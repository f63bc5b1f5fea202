"""Runtimes a submission can be measured on, and what each supports (torch-free contract).

``mcval check`` reads this table to refuse, on every pull request and in seconds, a runtime
step without its runtime, a step in the wrong order, or a task a runtime cannot run; the
measuring child (``mcval.backends``) implements the same table, so a submission the check
accepts is one the runner can measure.
"""

from __future__ import annotations

from typing import Literal

Runtime = Literal["pytorch", "torchscript", "onnxruntime", "openvino", "llama.cpp"]
Library = Literal["transformers", "timm"]

RUNTIMES: tuple[str, ...] = ("pytorch", "torchscript", "onnxruntime", "openvino", "llama.cpp")
RUNTIME_LABELS: dict[str, str] = {
    "pytorch": "PyTorch",
    "torchscript": "TorchScript",
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO",
    "llama.cpp": "llama.cpp",
}
"""How the table, the comment and the terminal name a runtime (``INT8 dynamic · OpenVINO``)."""

FORWARD_TASKS: tuple[str, ...] = (
    "text-classification",
    "token-classification",
    "image-classification",
    "causal-lm",
)
RUNTIME_TASKS: dict[str, tuple[str, ...]] = {
    "pytorch": (*FORWARD_TASKS, "translation", "automatic-speech-recognition"),
    "torchscript": FORWARD_TASKS,
    "onnxruntime": FORWARD_TASKS,
    "openvino": FORWARD_TASKS,
    "llama.cpp": ("causal-lm",),
}
"""Tasks each runtime measures. Exported runtimes run a forward pass returning logits:
causal-lm is measured by perplexity and a forward over ``benchmark.input.tokens``, or
greedy generation with a KV cache on ONNX Runtime and OpenVINO (``GENERATION_RUNTIMES``);
translation and speech recognition stay on PyTorch. llama.cpp runs a GGUF file
(``model.gguf_file``) as it is: causal-lm, generation included."""

GGUF_RUNTIMES: tuple[str, ...] = ("llama.cpp",)
"""Runtimes that measure ``model.gguf_file`` as GGUF (quantized tensors at their width)."""

ARTEFACT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "onnxruntime": (".onnx",),
    "openvino": (".xml",),
}
"""What ``model.file`` may name per runtime: data-only graphs. A TorchScript archive is a
pickle-backed program, so it is never accepted from a student (the runner traces its own)."""

TIMM_TASKS: tuple[str, ...] = ("image-classification",)


def runtime_label(runtime: str | None) -> str | None:
    """The display label of a non-default runtime; None for PyTorch (the table's default)."""
    if runtime is None or runtime == "pytorch":
        return None
    return RUNTIME_LABELS.get(runtime, runtime)


def runtime_or_none(runtime: str) -> str | None:
    """What a result record stores: the runtime, or None for PyTorch (older records)."""
    return None if runtime == "pytorch" else runtime


def method_label(method: str, runtime: str | None) -> str:
    """The "Метод" cell: ``INT8 dynamic · ONNX Runtime`` (PyTorch rows keep their name)."""
    label = runtime_label(runtime)
    return f"{method} · {label}" if label else method


def task_problem(runtime: str, task: str) -> str | None:
    """Why ``runtime`` cannot measure ``task``, naming the runtimes that can; None if it can."""
    if task in RUNTIME_TASKS[runtime]:
        return None
    able = [RUNTIME_LABELS[r] for r, tasks in RUNTIME_TASKS.items() if task in tasks]
    return (
        f"{RUNTIME_LABELS[runtime]} cannot measure {task} yet; {task} runs on: "
        f"{', '.join(able)} ({RUNTIME_LABELS[runtime]} supports: "
        f"{', '.join(RUNTIME_TASKS[runtime])})"
    )


GENERATION_RUNTIMES: tuple[str, ...] = ("pytorch", "onnxruntime", "openvino", "llama.cpp")
"""Runtimes that time causal-LM generation (``{prompt_tokens, new_tokens}``): PyTorch's
``generate``, a greedy loop over the exported graph's KV cache on ONNX Runtime and
OpenVINO (``mcval.backends.decoding``), and llama.cpp's own decoding. A traced TorchScript
module has no cache."""


def generation_problem(runtime: str) -> str | None:
    """Why ``runtime`` cannot time generation (None when it can), naming those that can."""
    if runtime in GENERATION_RUNTIMES:
        return None
    able = ", ".join(RUNTIME_LABELS[r] for r in GENERATION_RUNTIMES)
    return (
        f"{RUNTIME_LABELS[runtime]} times one forward pass: use benchmark.input "
        f"{{tokens: N}} (generation with prompt_tokens/new_tokens runs on {able})"
    )


def gguf_problem(runtime: str, gguf_file: str | None, file: str | None) -> str | None:
    """llama.cpp measures a GGUF file and nothing else; None when the fields fit."""
    if runtime not in GGUF_RUNTIMES:
        return None
    if file is not None:
        return f"runtime {runtime} runs a GGUF file: name it in model.gguf_file, not model.file"
    if gguf_file is None:
        return (
            f"runtime {runtime} runs a GGUF file: set model.gguf_file to the .gguf file in the "
            "model repository or directory"
        )
    return None


def file_problem(runtime: str, file: str | None) -> str | None:
    """Why ``model.file`` cannot be used with ``runtime``; None when it can."""
    if file is None:
        return None
    suffixes = ARTEFACT_SUFFIXES.get(runtime)
    if suffixes is None:
        why = (
            "a TorchScript archive is a program (pickle-backed), not data, so it is never "
            "loaded from a submission; leave model.file out and the runner traces the "
            "checkpoint itself"
            if runtime == "torchscript"
            else "PyTorch loads the checkpoint's safetensors"
        )
        return f"model.file is not accepted with runtime {runtime}: {why}"
    if not file.lower().endswith(suffixes):
        return (
            f"model.file {file!r} must be a {' or '.join(suffixes)} file for runtime {runtime} "
            "(OpenVINO IR: the .xml, with its .bin beside it)"
        )
    return None
