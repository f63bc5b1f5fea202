"""Causal-LM generation on ONNX Runtime and OpenVINO with a KV cache: the greedy tokens are
PyTorch's ``generate`` tokens, one runtime call per new token (prefill, then one token per
call with the present fed back as the past), end-of-sequence suppressed as in PyTorch; a
shipped graph with an Optimum-style cache (``position_ids`` too) is driven the same way,
and one without a cache is decoded by re-running the sequence, with a warning saying so."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_models import (
    QUICK_MEASURE_TOML,
    TASK_CORPUS,
    build_tiny_gpt2,
    build_tiny_llama,
    measure_json,
    write_submission,
)

from mcval.backends import generation_settings
from mcval.backends.base import ConvertRequest, RuntimeModel, cache_example, cache_names
from mcval.backends.decoding import banned_ids, greedy_tokens
from mcval.cli import main
from mcval.tasks.common import exact_generation_config

pytestmark = pytest.mark.slow
ARCHS = {"llama": build_tiny_llama, "gpt2": build_tiny_gpt2}
PROMPT, NEW = 7, 8


def _sharpened(directory: Path, build: Any) -> Path:
    """A tiny LM whose matrices are scaled ×20: random init at std 0.02 makes a model that
    repeats one token, which would not show a cache fed back at the wrong position."""
    from transformers import AutoModelForCausalLM

    build(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.mul_(20)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generation")
    (root / ".git").mkdir()
    (root / "mcval.toml").write_text(QUICK_MEASURE_TOML, encoding="utf-8")
    for name, build in ARCHS.items():
        _sharpened(root / "models" / name, build)
    (root / "data").mkdir()
    (root / "data" / "lm.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in TASK_CORPUS), encoding="utf-8"
    )
    return root


def _torch(repo: Path, arch: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = repo / "models" / arch
    return AutoModelForCausalLM.from_pretrained(directory).eval(), AutoTokenizer.from_pretrained(
        directory
    )


def _convert(model: Any, runtime: str, workdir: Path, **artefact: Any) -> RuntimeModel:
    workdir.mkdir(parents=True, exist_ok=True)
    request = ConvertRequest(
        task="causal-lm",
        model=model,
        config=model.config if model is not None else artefact.pop("config"),
        accepted=None,
        workdir=workdir,
        threads=1,
        device="cpu",
        **artefact,
    )
    converted = importlib.import_module(f"mcval.backends.{runtime}_backend").convert(request)
    converted.generation_config = generation_settings(
        model, request.config, artefact.get("model_dir")
    )
    return converted


@pytest.fixture(scope="module")
def converted(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], RuntimeModel]:
    """Each tiny LM converted by the runner for each runtime (exports take seconds)."""
    out = {}
    for arch in ARCHS:
        model, _ = _torch(repo, arch)
        for runtime in ("onnxruntime", "openvino"):
            out[arch, runtime] = _convert(model, runtime, tmp_path_factory.mktemp(runtime))
    return out


def _prompt(batch: int = 2) -> torch.Tensor:
    return torch.randint(3, 300, (batch, PROMPT), generator=torch.Generator().manual_seed(1))


def _generate(model: Any, tokenizer: Any, prompt: torch.Tensor, config: Any = None) -> list:
    config = config or exact_generation_config(model, tokenizer, NEW)
    with torch.inference_mode():
        out = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), generation_config=config
        )
    return out[:, prompt.shape[1] :].tolist()


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_greedy_tokens_equal_pytorch_generate(
    repo: Path, converted: dict, arch: str, runtime: str
) -> None:
    model, tokenizer = _torch(repo, arch)
    prompt = _prompt()
    expected = _generate(model, tokenizer, prompt)
    runtime_model = converted[arch, runtime]
    got = greedy_tokens(
        runtime_model, prompt.numpy(), NEW, banned_ids(runtime_model, tokenizer, NEW)
    )
    assert got.tolist() == expected
    assert all(len(set(row)) >= 4 for row in expected)  # a real sequence, not one token
    assert runtime_model.cache is not None and runtime_model.cache.layers == 2
    assert any("KV cache: 2 layers" in n for n in runtime_model.notes)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_one_runtime_call_per_new_token(converted: dict, runtime: str) -> None:
    """Prefill over the prompt with an empty past, then one token per call, the attention
    mask growing by one and the past being the previous call's present."""
    runtime_model = converted["llama", runtime]
    decode = runtime_model.decode
    calls: list[tuple[tuple[int, ...], int, bool]] = []
    presents: list[Any] = []

    def recorded(ids: np.ndarray, mask: np.ndarray, past: Any) -> tuple[np.ndarray, Any]:
        calls.append((ids.shape, mask.shape[1], past is None or past is presents[-1]))
        logits, present = decode(ids, mask, past)
        presents.append(present)
        return logits, present

    runtime_model.decode = recorded
    try:
        greedy_tokens(runtime_model, _prompt().numpy(), NEW, [])
    finally:
        runtime_model.decode = decode
    assert calls == [((2, PROMPT), PROMPT, True)] + [
        ((2, 1), PROMPT + i, True) for i in range(1, NEW)
    ]


def test_end_of_sequence_is_suppressed_as_in_pytorch(repo: Path, converted: dict) -> None:
    """With the first greedy token declared end-of-sequence, PyTorch's exact-length
    ``generate`` never emits it; nor does the runtime loop, and the rest matches."""
    from transformers import GenerationConfig

    model, tokenizer = _torch(repo, "llama")
    prompt = _prompt(batch=1)
    first = _generate(model, tokenizer, prompt)[0][0]
    runtime_model = converted["llama", "onnxruntime"]
    config = exact_generation_config(model, tokenizer, NEW)
    config.eos_token_id = first
    expected = _generate(model, tokenizer, prompt, config)
    saved = runtime_model.generation_config
    runtime_model.generation_config = GenerationConfig(eos_token_id=first)
    try:
        banned = banned_ids(runtime_model, tokenizer, NEW)
    finally:
        runtime_model.generation_config = saved
    assert banned == [first]
    got = greedy_tokens(runtime_model, prompt.numpy(), NEW, banned).tolist()
    assert got == expected and first not in got[0]


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_whole_sequence_calls_match_pytorch_logits(
    repo: Path, converted: dict, runtime: str
) -> None:
    """Perplexity and ``{tokens: N}`` call the cache graph with an empty past: same logits."""
    model, _ = _torch(repo, "gpt2")
    ids = _prompt()
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0  # right padding, as in the perplexity batches
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits
    got = converted["gpt2", runtime](input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(got[0], expected[0], atol=1e-4)
    assert torch.allclose(got[1, :-2], expected[1, :-2], atol=1e-4)


class _OptimumStyle(torch.nn.Module):
    """What Optimum's ``text-generation-with-past`` export takes: ``position_ids`` as well."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        from mcval.backends.base import DecoderWithCache

        self.inner = DecoderWithCache(model, model.config.num_hidden_layers)

    def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any) -> Any:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.inner.model.config)
        for layer, key, value in zip(cache.layers, past[0::2], past[1::2], strict=True):
            layer.lazy_initialization(key, value)
            layer.keys, layer.values = key, value
        out = self.inner.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            **{self.inner.cache_arg: cache},
        )
        present = getattr(out, "cache", None) or out.past_key_values
        return (out.logits, *[t for layer in present.layers for t in (layer.keys, layer.values)])


def _ship(repo: Path, arch: str, *, cache: bool) -> tuple[Path, Path]:
    """A model directory as a student ships it: config, tokenizer, an ``.onnx`` (with an
    Optimum-style cache and ``position_ids``, or logits only) and its OpenVINO IR."""
    import shutil

    import openvino as ov

    source = repo / "models" / arch
    directory = repo / "models" / f"{arch}-{'cache' if cache else 'plain'}"
    shutil.copytree(source, directory, ignore=shutil.ignore_patterns("*.safetensors"))
    model, _ = _torch(repo, arch)
    layers = model.config.num_hidden_layers
    onnx_path = directory / "model.onnx"
    with torch.no_grad():
        if cache:
            past, present = cache_names(layers)
            ids, mask, *tensors = cache_example(model.config, layers)
            positions = torch.arange(4, 7).expand(2, 3)
            axes = {"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "t"}}
            axes["position_ids"] = {0: "b", 1: "s"}
            axes.update({name: {0: "b", 2: "p"} for name in past})
            torch.onnx.export(
                _OptimumStyle(model).eval(),
                (ids, mask, positions, *tensors),
                str(onnx_path),
                input_names=["input_ids", "attention_mask", "position_ids", *past],
                output_names=["logits", *present],
                dynamic_axes=axes,
                dynamo=False,
            )
        else:
            from mcval.backends.base import LogitsOnly

            ids = torch.ones((1, 8), dtype=torch.long)
            torch.onnx.export(
                LogitsOnly(model, ["input_ids", "attention_mask"]).eval(),
                (ids, torch.ones_like(ids)),
                str(onnx_path),
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_axes={n: {0: "b", 1: "s"} for n in ("input_ids", "attention_mask")},
                dynamo=False,
            )
    ir = directory / "openvino_model.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(ir), compress_to_fp16=False)
    return directory, onnx_path


@pytest.fixture(scope="module")
def shipped(repo: Path) -> dict[str, Path]:
    return {kind: _ship(repo, "llama", cache=kind == "cache")[0] for kind in ("cache", "plain")}


@pytest.mark.parametrize("kind", ["cache", "plain"])
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_shipped_graphs_generate_pytorch_tokens(
    repo: Path, shipped: dict, tmp_path: Path, runtime: str, kind: str
) -> None:
    from transformers import AutoConfig

    directory = shipped[kind]
    model, tokenizer = _torch(repo, "llama")
    artefact = directory / ("model.onnx" if runtime == "onnxruntime" else "openvino_model.xml")
    runtime_model = _convert(
        None,
        runtime,
        tmp_path,
        config=AutoConfig.from_pretrained(directory),
        artefact=artefact,
        model_dir=directory,
        max_bytes=10**9,
    )
    prompt = _prompt()
    banned = banned_ids(runtime_model, tokenizer, NEW)
    assert greedy_tokens(runtime_model, prompt.numpy(), NEW, banned).tolist() == _generate(
        model, tokenizer, prompt
    )
    if kind == "cache":
        assert runtime_model.cache is not None and runtime_model.cache.position_ids
    else:
        assert runtime_model.cache is None and runtime_model.decode is None


def _submission(repo: Path, name: str, model: dict, shape: dict) -> Path:
    doc = {
        "schema": 1,
        "team": "team",
        "model": {"task": "causal-lm", **model},
        "method": {"name": "FP32"},
        "evaluation": {"dataset": {"path": "json", "data_files": ["data/lm.jsonl"]}},
        "benchmark": {"input": shape},
    }
    return write_submission(repo, "team", name, doc)


GENERATE = {"prompt_tokens": 6, "new_tokens": 5}


def test_measure_times_generation_on_each_runtime(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mcval measure`` with ``{prompt_tokens, new_tokens}`` on all three runtimes: the
    same protocol (warm-up, at least min_calls timed), perplexity equal to PyTorch's."""
    monkeypatch.chdir(repo)
    results = {
        runtime: measure_json(
            _submission(
                repo, f"gen-{runtime}", {"id": "./models/gpt2", "runtime": runtime}, GENERATE
            ),
            capsys,
        )
        for runtime in ("pytorch", "onnxruntime", "openvino")
    }
    reference = results["pytorch"]["quality"]["perplexity"]
    for runtime, result in results.items():
        details = result["details"]
        latency = details["latency"]["cpu"]
        assert latency["count"] >= 2 and latency["median_ms"] == result["latency_cpu_ms"] > 0
        assert (latency["warmup_calls"], latency["threads"]) == (1, 1), runtime
        assert result["quality"]["perplexity"] == pytest.approx(reference, rel=1e-4), runtime
        assert details["warnings"] == []
    notes = results["onnxruntime"]["details"]["devices"][0]["recipe_applied"]
    assert notes[:2] == [
        "ONNX Runtime: converted",
        "KV cache: 2 layers of past_key_values in, present out "
        "(generation decodes one token per call)",
    ]


def test_a_graph_without_cache_is_timed_and_says_so(
    repo: Path, shipped: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    model = {"id": "./models/llama-plain", "runtime": "onnxruntime", "file": "model.onnx"}
    result = measure_json(_submission(repo, "plain", model, GENERATE), capsys)
    (warning,) = result["details"]["warnings"]
    assert warning.startswith(
        "generation without a KV cache: the ONNX Runtime graph has no past_key_values inputs"
    )
    assert result["details"]["latency"]["cpu"]["count"] >= 2


def test_torchscript_generation_is_refused_naming_the_runtimes_that_can(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    sub = _submission(repo, "ts", {"id": "./models/llama", "runtime": "torchscript"}, GENERATE)
    capsys.readouterr()
    assert main(["check", str(sub)]) == 2
    out = capsys.readouterr()
    assert (
        "TorchScript times one forward pass: use benchmark.input {tokens: N} (generation "
        "with prompt_tokens/new_tokens runs on PyTorch, ONNX Runtime, OpenVINO, llama.cpp)"
    ) in " ".join((out.out + out.err).split())


def _refusal(sub: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``mcval validate`` (the bot) on a shipped graph mcval cannot feed: exit 2, why."""
    capsys.readouterr()
    rc = main(["validate", str(sub), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 2, captured.out + captured.err
    return captured.out + captured.err


def test_a_stateful_openvino_lm_is_refused_with_the_fix(
    repo: Path, shipped: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Optimum Intel's default IR keeps the cache as state: refused at load, with the fix."""
    import openvino as ov
    from openvino._offline_transformations import apply_make_stateful_transformation

    monkeypatch.chdir(repo)
    directory = shipped["cache"]
    model = ov.Core().read_model(str(directory / "openvino_model.xml"))
    past, present = cache_names(2)
    apply_make_stateful_transformation(model, dict(zip(past, present, strict=True)))
    ov.save_model(model, str(directory / "stateful.xml"), compress_to_fp16=False)
    spec = {"id": "./models/llama-cache", "runtime": "openvino", "file": "stateful.xml"}
    out = _refusal(_submission(repo, "stateful", spec, GENERATE), capsys)
    assert (
        "model.file stateful.xml is a stateful OpenVINO model (its KV cache is internal state, "
        "fed beam_idx), which mcval does not drive; export it stateless "
        "(optimum-cli export openvino --disable-stateful)"
    ) in " ".join(out.split())


def test_a_graph_input_mcval_cannot_feed_is_named(
    repo: Path, shipped: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A merged decoder's ``use_cache_branch`` (older Optimum) is named, not guessed."""
    import onnx
    from onnx import TensorProto, helper

    monkeypatch.chdir(repo)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input_ids"], ["logits"])],
        "merged",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
            helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.INT64, ["b", "s"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(shipped["plain"] / "merged.onnx"))
    spec = {"id": "./models/llama-plain", "runtime": "onnxruntime", "file": "merged.onnx"}
    out = _refusal(_submission(repo, "merged", spec, GENERATE), capsys)
    assert (
        "model.file merged.onnx takes input(s) use_cache_branch that mcval cannot feed; it "
        "feeds input_ids, attention_mask, token_type_ids, position_ids, pixel_values and a KV "
        "cache named past_key_values.N.key"
    ) in " ".join(out.split())
