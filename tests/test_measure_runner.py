"""The runner end to end: real loading/task APIs on a tiny BERT in a temporary repository,
plus a test backend (the functions below replace ``mcval.models.load_model`` and
``mcval.tasks.get_task`` in children forked from this process by ``LocalForkLauncher``) for
a model of known RAM and for each way a device can fail."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tiny_models import LOAD_TOLERANT, write_submission

import mcval.models
import mcval.tasks
from mcval.measure.launchers import LocalForkLauncher
from mcval.models.claims import check_claims
from mcval.policy import MeasurePolicy, Policy
from mcval.submission.load import LoadedSubmission, load_submission

SENTIMENTS = ("negative", "neutral", "positive")
FAST = MeasurePolicy(
    warmup_calls=2, min_calls=5, min_seconds=0.2, max_seconds=5, threads=1, **LOAD_TOLERANT
)
KNOWN_MB = 400


# --- test backend (patched in before the child is forked) --------------------------------------


class _Blob:
    """A 'model' holding one float32 parameter of KNOWN_MB MiB, every page written."""

    def __new__(cls) -> Any:
        import torch

        module = torch.nn.Module()
        module.weight = torch.nn.Parameter(torch.ones(KNOWN_MB * 2**18), requires_grad=False)
        return module


def load_model(spec: Any, repo_root: Path, device: str, policy: Any, model_class: type) -> Any:
    behaviour = spec.id.split("/")[-1]
    if behaviour == "hang":
        time.sleep(60)
    if behaviour == "raise":
        raise RuntimeError("safetensors header is corrupt")
    if behaviour == "bad-id":
        from mcval.models.errors import ModelNotFoundError

        raise ModelNotFoundError("model directory 'models/bad-id' has no config.json")
    return SimpleNamespace(model=_Blob(), source="blob", files=[], files_bytes=0, warnings=[])


class _BlobTask:
    name = "text-classification"
    default_metrics = ("accuracy",)

    def model_class(self) -> type:
        return object

    def load_preprocessor(self, source: Any, revision: Any, gguf_file: Any) -> None:
        return None

    def benchmark_call(self, model: Any, pre: Any, benchmark: Any, device: str) -> Callable:
        import torch

        x = torch.ones(1000)
        return lambda: float((model.weight[:1000] * x).sum())

    def evaluate(self, model: Any, pre: Any, evaluation: Any, root: Path, device: str) -> dict:
        if evaluation.dataset.path == "csv":
            from mcval.tasks.base import TaskDataError

            raise TaskDataError("data/eval.csv row 3: label 'maybe' is not a class")
        return {"accuracy": float(model.weight[0])}


def get_task(name: str) -> _BlobTask:
    return _BlobTask()


# --- repository fixtures -----------------------------------------------------------------


def write_and_load(root: Path, name: str, model_id: str, extra: str = "") -> LoadedSubmission:
    text = (
        "schema: 1\n"
        "team: testers\n"
        "model:\n"
        f"  id: {model_id}\n"
        "  task: text-classification\n"
        "method:\n"
        f"  name: {name}\n"
        f"{extra}"
        "evaluation:\n"
        "  dataset: {path: json, data_files: [data/eval.jsonl]}\n"
        "  metrics: [accuracy, macro_f1]\n"
        "benchmark:\n"
        "  batch_size: 1\n"
        "  input: {tokens: 32}\n"
    )
    return load_submission(write_submission(root, "testers", name, text), root)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import TASK_CORPUS, build_tiny_bert_classifier

    root = tmp_path_factory.mktemp("repo")
    (root / ".git").mkdir()
    build_tiny_bert_classifier(root / "models" / "tiny-bert", labels=SENTIMENTS)
    words = " ".join(TASK_CORPUS).split()
    rows = [
        {"text": " ".join(words[i : i + 3 + i % 6]), "label": SENTIMENTS[i % 3]} for i in range(12)
    ]
    (root / "data").mkdir()
    (root / "data" / "eval.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    return root


def policy(**measure: Any) -> Policy:
    return Policy(measure=FAST.model_copy(update=measure))


# --- real APIs -------------------------------------------------------------------------


def build_wide_bert(path: Path) -> Path:
    """A BERT whose weights are almost all one embedding of known size (96,000 × 1024
    float32 = 375 MiB): the row's RAM must be that, give or take activations."""
    import torch
    from tiny_models import _labels, _wordpiece_tokenizer
    from transformers import BertConfig, BertForSequenceClassification

    tok = _wordpiece_tokenizer()
    id2label, label2id = _labels(SENTIMENTS)
    config = BertConfig(
        vocab_size=96_000,
        hidden_size=1024,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
        id2label=id2label,
        label2id=label2id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.slow
def test_ram_of_a_model_of_known_size_within_5_percent(repo: Path) -> None:
    """Through the real launcher (a child of the fork server): the row's RAM is its
    weights, read in full (no mmap), plus a little for activations and the tokenizer."""
    from mcval.measure.measurement import measure_submission

    build_wide_bert(repo / "models" / "wide-bert")
    loaded = write_and_load(repo, "wide", "models/wide-bert")
    m = measure_submission(loaded, repo, policy(), ["cpu"], skip_quality=True)
    assert m.ok, m.details.errors
    assert m.weights_mb is not None and m.weights_mb > 375
    assert m.ram_mb == pytest.approx(m.weights_mb, rel=0.05), m.details.ram
    assert m.details.ram.method == "vmhwm"


@pytest.fixture(scope="module")
def bert_measurement(repo: Path) -> Any:
    from mcval.measure.measurement import measure_submission

    loaded = write_and_load(repo, "fp32", "models/tiny-bert")
    stages: list[tuple[str, str]] = []
    m = measure_submission(
        loaded, repo, policy(), ["cpu"], progress=lambda d, s: stages.append((d, s))
    )
    return m, stages


@pytest.mark.slow
def test_real_model_cpu_measurement(repo: Path, bert_measurement: Any) -> None:
    import torch

    from mcval.measure.size import measure_size
    from mcval.tasks import get_task

    m, stages = bert_measurement
    assert m.ok, m.details.errors
    # Size: same as counting the model loaded here (the size tests check the counter itself).
    task = get_task("text-classification")
    model = task.model_class().from_pretrained(repo / "models" / "tiny-bert").eval()
    files = [repo / "models" / "tiny-bert" / "model.safetensors"]
    assert m.weights_mb == measure_size(model, files).weights_mb
    assert m.details.size.files_bytes == files[0].stat().st_size
    # Quality: the same numbers the task computes in this process.
    tok = task.load_preprocessor(repo / "models" / "tiny-bert", None, None)
    loaded = load_submission(repo / "submissions" / "testers" / "fp32.yaml", repo)
    with torch.inference_mode():
        expected = task.evaluate(model, tok, loaded.submission.evaluation, repo, "cpu")
    assert m.quality == expected
    assert m.details.quality_device == "cpu"
    # Latency: the protocol was followed.
    stats = m.details.latency["cpu"]
    assert m.latency_cpu_ms == stats.median_ms > 0
    assert stats.count >= 5 and stats.total_s >= 0.2 and stats.warmup_calls == 2
    assert stats.threads == 1 == m.details.threads
    assert stats.first_call_ms is not None
    # Memory and environment.
    assert m.ram_mb is not None and m.ram_mb > 0 and m.details.ram.method == "vmhwm"
    assert m.latency_gpu_ms is None and m.vram_mb is None
    assert m.environment is not None and m.environment.threads == 1
    assert m.environment.torch_version == torch.__version__
    # The runner inspects the weights; their claims are checked once, by validate.
    method = loaded.submission.method
    assert m.details.inspection is not None
    assert check_claims(method.name, method.recipe, m.details.inspection) == []
    assert [s for d, s in stages if d == "cpu"][:2] == ["loading model", "loading preprocessor"]
    assert "evaluating quality" in [s for _, s in stages]


@pytest.mark.slow
def test_json_has_the_documented_top_level_keys(bert_measurement: Any) -> None:
    m, _ = bert_measurement
    data = json.loads(m.model_dump_json())
    for key in ("weights_mb", "latency_cpu_ms", "latency_gpu_ms", "ram_mb", "vram_mb"):
        assert key in data
    assert data["latency_gpu_ms"] is None and data["vram_mb"] is None
    assert set(data["quality"]) == {"accuracy", "macro_f1"}
    assert data["environment"]["environment_class"]
    assert data["details"]["latency"]["cpu"]["times_ms"]


@pytest.mark.slow
def test_dynamic_int8_recipe_is_measured_at_packed_size(repo: Path, bert_measurement: Any) -> None:
    from mcval.measure.measurement import measure_submission

    fp32, _ = bert_measurement
    loaded = write_and_load(
        repo,
        "int8",
        "models/tiny-bert",
        extra="  recipe:\n    - quantize_dynamic: {dtype: qint8}\n",
    )
    m = measure_submission(loaded, repo, policy(), ["cpu"], skip_quality=True)
    assert m.ok, m.details.errors
    assert m.details.size.packed_modules > 0
    assert m.weights_mb < fp32.weights_mb
    assert "qint8" in m.details.size.dtype_bytes
    assert m.quality == {} and m.details.quality_device is None


@pytest.mark.slow
def test_benchmark_input_too_long_points_at_benchmark_input(repo: Path) -> None:
    from mcval.measure.measurement import measure_submission

    loaded = write_and_load(repo, "long", "models/tiny-bert")
    loaded.submission.benchmark.input.tokens = 100  # the tiny BERT takes 64 positions
    m = measure_submission(loaded, repo, policy(), ["cpu"])
    (err,) = m.details.errors
    assert err.kind == "input"
    assert err.message == "benchmark.input.tokens is 100 tokens; the model takes at most 64"
    assert err.field == ["benchmark", "input"]
    assert err.line == loaded.line_of("benchmark", "input")
    assert m.latency_cpu_ms is None


def test_default_input_is_fitted_to_the_model_and_noted(repo: Path) -> None:
    from mcval.measure.measurement import measure_submission

    loaded = write_and_load(repo, "default-input", "models/tiny-bert")
    loaded.submission.benchmark.input = None  # as when the file leaves it out
    m = measure_submission(loaded, repo, policy(), ["cpu"])
    assert m.details.errors == []
    assert m.latency_cpu_ms is not None
    assert m.details.warnings == [
        "benchmark.input: the model takes at most 64 tokens, fewer than the default 128 "
        "tokens; timed with 64 tokens instead (set benchmark.input to choose)"
    ]


# --- test backend ------------------------------------------------------------------------


def measure_with_backend(
    repo: Path, model_id: str, devices: list[str], dataset: str = "json", **pol: Any
) -> Any:
    from mcval.measure.measurement import measure_submission

    name = model_id.replace("/", "-")
    loaded = write_and_load(repo, name, model_id)
    if dataset != "json":
        loaded.submission.evaluation.dataset.path = dataset
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mcval.models, "load_model", load_model)
        patch.setattr(mcval.tasks, "get_task", get_task)
        measured = measure_submission(
            loaded, repo, policy(**pol), devices, launcher=LocalForkLauncher()
        )
    return loaded, measured


@pytest.fixture(scope="module")
def blob(repo: Path) -> Any:
    """One measurement serves three tests (each child costs seconds of imports): CPU and
    CUDA requested on a machine without a GPU, with an evaluation that fails."""
    _, m = measure_with_backend(repo, "blob/known", ["cpu", "cuda"], dataset="csv")
    return m


@pytest.mark.slow
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU path")
def test_cuda_without_gpu_is_not_applicable_and_cpu_still_measured(blob: Any) -> None:
    assert blob.details.not_applicable == {
        "cuda": "no CUDA device is available to the measuring process"
    }
    assert blob.latency_cpu_ms is not None and blob.latency_gpu_ms is None
    assert blob.vram_mb is None


@pytest.mark.slow
def test_quality_failure_keeps_the_other_figures(blob: Any) -> None:
    assert blob.weights_mb == KNOWN_MB and blob.latency_cpu_ms is not None
    assert not blob.ok
    (err,) = blob.details.errors
    assert err.kind == "quality" and err.device == "cpu"
    assert err.message == (
        "quality evaluation failed: TaskDataError: data/eval.csv row 3: label 'maybe' is not "
        "a class"
    )
    assert blob.quality == {} and blob.details.quality_device is None


@pytest.mark.slow
def test_timeout_becomes_the_devices_error(repo: Path) -> None:
    # The limit leaves room for the child's torch/transformers import on a busy machine,
    # so the hang is reached (and named) before the limit.
    _, m = measure_with_backend(repo, "blob/hang", ["cpu"], time_limit_s=15)
    assert not m.ok and m.weights_mb is None and m.latency_cpu_ms is None
    (err,) = m.details.errors
    assert err.kind == "timeout" and err.device == "cpu"
    assert re.fullmatch(
        r"cpu: timed out: still running after 15\.\d s \(time limit 15 s\), so it was killed "
        r"during 'loading model'; peak memory so far \d+ MB",
        err.message,
    ), err.message


@pytest.mark.slow
def test_exception_in_load_is_reported_with_type_and_line(repo: Path) -> None:
    _, m = measure_with_backend(repo, "blob/raise", ["cpu"])
    (err,) = m.details.errors
    assert err.kind == "exception"
    assert re.fullmatch(
        r"cpu: raised RuntimeError: safetensors header is corrupt at .*test_measure_runner\.py:"
        r"\d+ in load_model; after \d+\.\d s; peak memory \d+ MB",
        err.message,
    ), err.message


@pytest.mark.slow
def test_model_input_error_points_at_the_yaml_line(repo: Path) -> None:
    loaded, m = measure_with_backend(repo, "blob/bad-id", ["cpu"])
    (err,) = m.details.errors
    assert err.kind == "input"
    assert err.message == "model directory 'models/bad-id' has no config.json"
    assert err.field == ["model", "id"]
    assert err.line == loaded.line_of("model", "id") == 4


def test_thread_choice_policy_then_submission_then_physical_cores() -> None:
    from mcval.measure.environment import physical_cores
    from mcval.measure.measurement import choose_threads

    assert choose_threads(Policy(measure=MeasurePolicy(threads=3)), 8) == 3
    assert choose_threads(Policy(), 5) == 5
    assert choose_threads(Policy(), None) == physical_cores()
