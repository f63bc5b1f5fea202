"""The same tiny models measured on PyTorch, TorchScript, ONNX Runtime and OpenVINO:
identical quality in fp32, sizes equal to an independent count of each runtime's weights,
and the runtime steps (ORT dynamic/static int8, NNCF int8) shrinking what they claim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import (
    NER_LABELS,
    QUICK_MEASURE_TOML,
    TASK_CORPUS,
    build_tiny_bert_classifier,
    build_tiny_bert_token_classifier,
    build_tiny_llama,
    build_tiny_vit,
    measure_json,
    write_classification_rows,
    write_submission,
)

from mcval.cli import main

pytestmark = pytest.mark.slow
RUNTIMES = ("pytorch", "torchscript", "onnxruntime", "openvino")
MIB = 2**20
POLICY = QUICK_MEASURE_TOML


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runtimes")
    (root / ".git").mkdir()
    (root / "mcval.toml").write_text(POLICY, encoding="utf-8")
    build_tiny_bert_classifier(root / "models" / "bert")
    build_tiny_bert_token_classifier(root / "models" / "ner")
    build_tiny_llama(root / "models" / "llama")
    write_classification_rows(root / "data" / "cls.jsonl")
    ner = [
        {
            "tokens": t.split(),
            "ner_tags": [NER_LABELS[(i + j) % 3] for j, _ in enumerate(t.split())],
        }
        for i, t in enumerate(TASK_CORPUS)
    ]
    (root / "data" / "ner.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ner))
    (root / "data" / "lm.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in TASK_CORPUS)
    )
    build_tiny_vit(root / "models" / "vit")
    _images(root / "data")
    return root


ANIMALS = ("cat", "dog", "bird", "fish", "frog", "horse")
"""timm models: tests/test_timm_models.py (they run in .venv-vision)."""


def _images(data: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (data / "pics").mkdir()
    rows = []
    for i in range(6):
        pixels = rng.integers(0, 256, size=(40 + i, 36, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / "pics" / f"{i}.png")
        rows.append({"image": f"pics/{i}.png", "label": ANIMALS[i % 6]})
    (data / "img.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


_TASKS = {
    "text-classification": ("bert", "cls.jsonl", 16),
    "token-classification": ("ner", "ner.jsonl", 16),
    "causal-lm": ("llama", "lm.jsonl", 16),
    "image-classification": ("vit", "img.jsonl", 32),
}


def measure(
    repo: Path,
    task: str,
    runtime: str,
    recipe: list[dict] | None = None,
    name: str = "row",
    method: str = "FP32",
) -> Path:
    model, data, tokens = _TASKS[task]
    spec: dict = {"id": f"./models/{model}", "task": task, "runtime": runtime}
    shape = {"image_size": tokens} if "image" in spec["task"] else {"tokens": tokens}
    doc = {
        "schema": 1,
        "team": "team",
        "model": spec,
        "method": {"name": method, "recipe": recipe or []},
        "evaluation": {
            "dataset": {"path": "json", "data_files": [f"data/{data}"]},
            "batch_size": 3,
        },
        "benchmark": {"input": shape},
    }
    return write_submission(repo, "team", f"{name}-{runtime}-{task}", doc)


@pytest.mark.parametrize("task", _TASKS)
def test_quality_is_identical_on_every_runtime(
    repo: Path, task: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    results = {r: measure_json(measure(repo, task, r), capsys) for r in RUNTIMES}
    reference = results["pytorch"]["quality"]
    for runtime, measured in results.items():
        assert measured["quality"].keys() == reference.keys()
        for metric, value in measured["quality"].items():
            assert value == pytest.approx(reference[metric], rel=1e-4), (runtime, metric)
        assert measured["latency_cpu_ms"] > 0
        assert measured["weights_mb"] > 0


def _independent_count(runtime: str, files: list[str]) -> int | None:
    """Each runtime's weights counted another way than mcval does: ONNX initializers read
    as numpy arrays (external data loaded), OpenVINO Constant nodes' data buffers."""
    if runtime == "onnxruntime":
        import onnx
        from onnx import numpy_helper

        model = onnx.load(files[0])
        arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
        for node in model.graph.node:
            arrays += [numpy_helper.to_array(a.t) for a in node.attribute if a.HasField("t")]
        return sum(a.nbytes for a in arrays)
    if runtime == "openvino":
        import openvino as ov

        model = ov.Core().read_model(files[0])
        return sum(
            op.get_data().nbytes for op in model.get_ops() if op.get_type_name() == "Constant"
        )
    return None


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_size_equals_an_independent_count(repo: Path, runtime: str, tmp_path: Path) -> None:
    """The converted graph's weights, counted from tensor headers by mcval, equal the bytes
    of the arrays the runtime's own reader returns (to the byte, so to 0.01 MiB)."""
    import importlib

    from transformers import AutoModelForSequenceClassification

    from mcval.backends.base import ConvertRequest
    from mcval.tasks.common import _accepted_inputs

    model = AutoModelForSequenceClassification.from_pretrained(repo / "models" / "bert")
    backend = importlib.import_module(f"mcval.backends.{runtime}_backend")
    converted = backend.convert(
        ConvertRequest(
            task="text-classification",
            model=model.eval(),
            config=model.config,
            accepted=_accepted_inputs(model),
            workdir=tmp_path,
            threads=1,
            device="cpu",
        )
    )
    expected = _independent_count(runtime, converted.size.files)
    assert converted.size.weights_bytes == expected
    assert converted.size.weights_mb == pytest.approx(expected / MIB, abs=0.01)
    assert converted.size.files_bytes >= expected  # the files hold the graph too


@pytest.mark.parametrize(
    ("runtime", "step", "int_type"),
    [
        ("onnxruntime", {"onnx_quantize_dynamic": {}}, "int8"),
        ("onnxruntime", {"onnx_quantize_static": {"samples": 4}}, "int8"),
        ("openvino", {"openvino_compress_weights": {"mode": "int8"}}, "u8"),
        ("openvino", {"openvino_compress_weights": {"mode": "int4", "group_size": 16}}, "i4"),
    ],
)
def test_runtime_steps_store_integer_weights(
    repo: Path,
    runtime: str,
    step: dict,
    int_type: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(repo)
    fp32 = measure_json(measure(repo, "causal-lm", runtime, name="fp"), capsys)
    quantized = measure_json(measure(repo, "causal-lm", runtime, [step], name="q"), capsys)
    dtypes = quantized["details"]["size"]["dtype_bytes"]
    assert dtypes.get(int_type, 0) > 0, dtypes
    assert quantized["weights_mb"] < fp32["weights_mb"]
    assert quantized["quality"]["perplexity"] > 0
    applied = [a for run in quantized["details"]["devices"] for a in run["recipe_applied"]]
    assert any(next(iter(step)) in a for a in applied), applied


@pytest.mark.parametrize(
    ("runtime", "step", "dtypes"),
    [
        # float weights, and the graphs' own shape/index constants
        ("onnxruntime", {"onnx_quantize_dynamic": {}}, "float32 99.7%, int64 0.3%, bool 0.0%"),
        (
            "openvino",
            {"openvino_compress_weights": {"mode": "int8"}},
            "float32 99.3%, int64 0.5%, int32 0.2%, bool 0.0%",
        ),
    ],
)
def test_an_int8_claim_is_held_against_the_converted_graph(
    repo: Path,
    runtime: str,
    step: dict,
    dtypes: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ "INT8" on an fp32 graph gets the PyTorch row's warning, read from the graph's stored
    tensors; with the runtime's int8 step, the graph's int8 weights bear the claim out."""
    monkeypatch.chdir(repo)
    task = "text-classification"
    bare = measure_json(measure(repo, task, runtime, name="claim", method="INT8"), capsys)
    (claim,) = bare["claims"]
    assert claim["code"] == "claim-int8-no-int8-weights"
    assert claim["message"] == (
        "the method 'INT8' claims int8, but no weight is stored as int8: 0 quantized modules, "
        f"0 int8 elements; weights are {dtypes}"
    )
    assert bare["details"]["inspection"]["source"] == {"onnxruntime": "onnx"}.get(runtime, runtime)
    stepped_sub = measure(repo, task, runtime, [step], name="claim-q", method="INT8")
    stepped = measure_json(stepped_sub, capsys)
    assert stepped["claims"] == []
    assert stepped["details"]["inspection"]["int8_weight_elements"] > 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs CUDA")
@pytest.mark.parametrize("runtime", ["torchscript", "onnxruntime"])
def test_gpu_runtimes_give_latency_and_vram(
    repo: Path, runtime: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """TorchScript on CUDA (torch's allocator) and ONNX Runtime's CUDA provider (NVML)."""
    import onnxruntime

    if runtime == "onnxruntime" and "CUDAExecutionProvider" not in (
        onnxruntime.get_available_providers()
    ):
        pytest.skip("onnxruntime-gpu is not installed")
    monkeypatch.chdir(repo)
    sub = measure(repo, "text-classification", runtime, name="gpu")
    capsys.readouterr()
    assert main(["measure", str(sub), "--device", "cuda", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["latency_gpu_ms"] > 0
    assert measured["vram_mb"] is not None and measured["vram_mb"] > 0


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_skip_keeps_the_named_modules_in_float(repo: Path, runtime: str, tmp_path: Path) -> None:
    """``skip: ['*down_proj']`` leaves exactly those weights in float32 (compared with the
    same step without ``skip``)."""
    import importlib

    from transformers import AutoModelForCausalLM

    from mcval.backends.base import ConvertRequest
    from mcval.submission.schema import RecipeStep
    from mcval.tasks.common import _accepted_inputs

    model = AutoModelForCausalLM.from_pretrained(repo / "models" / "llama").eval()
    down = sum(m.weight.numel() for n, m in model.named_modules() if n.endswith("down_proj"))
    name = "onnx_quantize_dynamic" if runtime == "onnxruntime" else "openvino_compress_weights"
    backend = importlib.import_module(f"mcval.backends.{runtime}_backend")

    def size(skip: list[str], where: str) -> dict[str, int]:
        step = RecipeStep(name=name, params={"skip": skip} if skip else {})
        workdir = tmp_path / where
        workdir.mkdir()
        request = ConvertRequest(
            task="causal-lm",
            model=model,
            config=model.config,
            accepted=_accepted_inputs(model),
            workdir=workdir,
            threads=1,
            device="cpu",
            steps=[step],
        )
        return backend.convert(request).size.dtype_bytes

    plain, skipped = size([], "plain"), size(["*down_proj"], "skip")
    if runtime == "onnxruntime":  # int8 values and zero points, float scales
        assert down <= plain["int8"] - skipped["int8"] <= down + 64
        assert skipped["float"] - plain["float"] >= 4 * down - 64
    else:  # NNCF int8: u8 values and u8 zero points, f16/f32 scales
        assert skipped["f32"] - plain["f32"] == 4 * down


@pytest.mark.parametrize(
    ("runtime", "calls"),
    [
        ("pytorch", []),
        ("torchscript", []),
        ("onnxruntime", [1]),
        ("openvino", [1]),
        ("llama.cpp", [1]),
    ],
)
def test_torch_drops_to_one_thread_beside_a_runtime_with_its_own_pool(
    runtime: str, calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backends' ``OWN_THREAD_POOL``: ONNX Runtime, OpenVINO and llama.cpp compute on
    pools of their own, so torch keeps one thread; TorchScript and PyTorch run on torch's."""
    import torch

    from mcval.measure.device_job import quiet_torch_threads

    seen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    quiet_torch_threads(runtime)
    assert seen == calls


def test_torchscript_is_warmed_up_past_its_compiling_calls(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The policy asks for 1 warm-up call; TorchScript's profiling executor compiles during
    its first calls, so its row is timed after 10, and PyTorch's after the policy's 1."""
    monkeypatch.chdir(repo)
    counts = {}
    for runtime in ("pytorch", "torchscript"):
        measured = measure_json(measure(repo, "causal-lm", runtime, name="warm"), capsys)
        counts[runtime] = measured["details"]["latency"]["cpu"]["warmup_calls"]
    assert counts == {"pytorch": 1, "torchscript": 10}
