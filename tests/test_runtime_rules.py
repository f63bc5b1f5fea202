"""``mcval check``'s runtime rules (torch-free): a runtime step without its runtime, a step
in the wrong order, a task or input shape the runtime does not support, a TorchScript
archive, timm outside image classification; each message says what is supported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiny_models import write_submission

from mcval.errors import InputError, InputErrors
from mcval.runtimes import GGUF_RUNTIMES, RUNTIME_TASKS, runtime_label, task_problem
from mcval.submission import load_submission

BASE = """\
schema: 1
team: t1
model:
  id: ./models/m
  task: {task}
  runtime: {runtime}
{extra}method:
  name: INT8
  recipe: {recipe}
evaluation:
  dataset: {{path: json, data_files: [data/eval.jsonl]}}
benchmark:
  input: {shape}
"""


def problems(
    tmp_path: Path,
    runtime: str = "onnxruntime",
    task: str = "text-classification",
    recipe: str = "[]",
    shape: str = "{tokens: 16}",
    extra: str = "",
) -> list[str]:
    (tmp_path / ".git").mkdir(exist_ok=True)
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "eval.jsonl").write_text('{"text": "a", "label": 0}\n', encoding="utf-8")
    text = BASE.format(task=task, runtime=runtime, recipe=recipe, shape=shape, extra=extra)
    path = write_submission(tmp_path, "t1", "row", textwrap.dedent(text))
    try:
        load_submission(path, tmp_path)
    except InputErrors as exc:
        return [str(e) for e in exc.errors]
    except InputError as exc:
        return [str(exc)]
    return []


def test_a_converted_runtime_with_its_own_steps_passes(tmp_path: Path) -> None:
    recipe = "[{prune: {amount: 0.5}}, {onnx_quantize_static: {samples: 16}}]"
    assert problems(tmp_path, recipe=recipe) == []
    assert (
        problems(tmp_path, "openvino", recipe="[{openvino_compress_weights: {mode: int4}}]") == []
    )


def test_runtime_step_needs_its_runtime(tmp_path: Path) -> None:
    (message,) = problems(tmp_path, "openvino", recipe="[{onnx_quantize_dynamic: {}}]")
    assert "onnx_quantize_dynamic needs model.runtime: onnxruntime" in message


def test_pytorch_step_after_a_runtime_step_is_out_of_order(tmp_path: Path) -> None:
    (message,) = problems(tmp_path, recipe="[{onnx_quantize_dynamic: {}}, {prune: {amount: 0.5}}]")
    assert "prune must come before onnx_quantize_dynamic" in message


def test_torch_int8_cannot_be_exported(tmp_path: Path) -> None:
    (message,) = problems(tmp_path, recipe="[{quantize_dynamic: {}}]")
    assert "use onnx_quantize_dynamic" in message


def test_unsupported_task_lists_what_runs_where(tmp_path: Path) -> None:
    found = problems(tmp_path, task="translation", shape="{tokens: 16}")
    assert any("ONNX Runtime cannot measure translation yet" in m for m in found), found
    assert any("translation runs on: PyTorch" in m for m in found)


def test_generation_input_needs_a_runtime_with_a_kv_cache(tmp_path: Path) -> None:
    shape = "{prompt_tokens: 8, new_tokens: 4}"
    for runtime in ("pytorch", "onnxruntime", "openvino"):
        assert problems(tmp_path, task="causal-lm", shape=shape, runtime=runtime) == []
    (message,) = problems(tmp_path, task="causal-lm", shape=shape, runtime="torchscript")
    assert message.endswith(
        "TorchScript times one forward pass: use benchmark.input {tokens: N} (generation with "
        "prompt_tokens/new_tokens runs on PyTorch, ONNX Runtime, OpenVINO, llama.cpp)"
    )


def test_torchscript_archive_refused(tmp_path: Path) -> None:
    (message,) = problems(tmp_path, "torchscript", extra="  file: model.pt\n")
    assert "TorchScript archive" in message and "never loaded" in message


def test_artefact_suffix_must_fit_runtime(tmp_path: Path) -> None:
    (message,) = problems(tmp_path, "openvino", extra="  file: model.onnx\n")
    assert "must be a .xml file" in message


def test_timm_is_for_image_classification(tmp_path: Path) -> None:
    (message,) = problems(tmp_path, "pytorch", extra="  library: timm\n")
    assert "library timm serves image-classification only" in message


def test_every_runtime_has_a_label_and_tasks() -> None:
    assert runtime_label("pytorch") is None
    assert runtime_label("onnxruntime") == "ONNX Runtime"
    assert runtime_label("llama.cpp") == "llama.cpp"
    assert all(
        task_problem(r, "text-classification") is None
        for r in RUNTIME_TASKS
        if r not in GGUF_RUNTIMES
    )
    assert all(task_problem(r, "causal-lm") is None for r in RUNTIME_TASKS)


GGUF = "  gguf_file: m.Q4_K_M.gguf\n"
GENERATION = "{prompt_tokens: 16, new_tokens: 4}"


def test_llama_cpp_measures_a_gguf_with_generation(tmp_path: Path) -> None:
    assert problems(tmp_path, "llama.cpp", "causal-lm", shape=GENERATION, extra=GGUF) == []
    assert problems(tmp_path, "llama.cpp", "causal-lm", shape="{tokens: 32}", extra=GGUF) == []


def test_llama_cpp_needs_a_gguf_file(tmp_path: Path) -> None:
    (message,) = problems(tmp_path, "llama.cpp", "causal-lm", shape=GENERATION)
    assert message.endswith(
        "runtime llama.cpp runs a GGUF file: set model.gguf_file to the .gguf file in the "
        "model repository or directory"
    )
    (message,) = problems(
        tmp_path, "llama.cpp", "causal-lm", shape=GENERATION, extra="  file: model.onnx\n"
    )
    assert message.endswith(
        "runtime llama.cpp runs a GGUF file: name it in model.gguf_file, not model.file"
    )


def test_llama_cpp_is_for_causal_lm(tmp_path: Path) -> None:
    (message,) = problems(tmp_path, "llama.cpp", extra=GGUF)
    assert message.endswith(
        "llama.cpp cannot measure text-classification yet; text-classification runs on: "
        "PyTorch, TorchScript, ONNX Runtime, OpenVINO (llama.cpp supports: causal-lm)"
    )


def test_llama_cpp_takes_no_recipe_and_one_sequence(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "llama.cpp",
        "causal-lm",
        recipe="[{cast: {dtype: float16}}]",
        shape=GENERATION + "\n  batch_size: 2",
        extra=GGUF,
    )
    assert len(found) == 2, found
    assert found[0].endswith(
        "runtime llama.cpp measures the GGUF file as it is, so recipe steps cannot change it; "
        "quantize with llama.cpp's llama-quantize and submit the resulting file (the method's "
        "name says which type, e.g. Q4_K_M)"
    )
    assert found[1].endswith(
        "runtime llama.cpp runs one sequence per call: use benchmark.batch_size: 1"
    )


@pytest.mark.parametrize("module", ["mcval.submission.runtime_rules", "mcval.runtimes"])
def test_rules_import_no_runtime(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'timm', "
        "'llama_cpp', 'gguf') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
