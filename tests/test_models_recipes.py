"""Recipes: each step changes dtype/size/sparsity as expected and the model still runs."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from typing import Any

import pytest

from mcval.models import (
    NotApplicableError,
    RecipeError,
    apply_recipe,
    plan_recipe,
    recipe_errors,
    validate_recipe,
)
from mcval.submission.schema import RecipeStep


def steps(*items: dict[str, Any]) -> list[RecipeStep]:
    return [RecipeStep.model_validate(item) for item in items]


def tiny_llama(seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(seed: int = 0) -> Any:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=2)).eval()


INPUT = [[1, 2, 3, 4, 5]]


def run(model: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(torch.tensor(INPUT)).logits


def distinct_tensors(model: Any) -> list[Any]:
    return list({t.data_ptr(): t for t in model.state_dict().values()}.values())


def float_bytes(model: Any) -> int:
    return sum(
        t.numel() * t.element_size() for t in distinct_tensors(model) if t.is_floating_point()
    )


def linears(model: Any) -> dict[str, Any]:
    import torch

    return {n: m for n, m in model.named_modules() if type(m) is torch.nn.Linear}


# --- validation (torch-free) ---------------------------------------------------------


def test_recipe_params_import_without_torch() -> None:
    code = (
        "import sys, mcval.models, mcval.models.recipe_params, mcval.models.claims, "
        "mcval.models.inspection; "
        "bad = [m for m in ('torch', 'transformers', 'safetensors', 'gguf') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_recipe_messages() -> None:
    recipe = steps(
        {"prune": {"amount": 1.5, "how": "l1"}},
        {"quantize_dynamic": {"dtype": "qint8"}},
        {"cast": {"dtype": "float16"}},
        {"clusterr": {"clusters": 4}},
        {"bnb_4bit": {}},
    )
    assert validate_recipe(recipe) == [
        "recipe step 1: prune: amount: Input should be less than or equal to 1; how: unknown "
        "parameter (parameters: amount, method, dim, scope, skip)",
        "recipe step 2: quantize_dynamic must be the last step: its packed int8 weights cannot "
        "be changed by cast afterwards; move it to the end",
        "recipe step 3: cast cannot be combined with quantize_dynamic: torch dynamic int8 "
        "quantization needs float32 weights; remove the cast step",
        "recipe step 4: unknown recipe step 'clusterr'; did you mean 'cluster'?",
        "recipe step 5: bnb_4bit quantizes while the checkpoint loads, so it must be the only "
        "recipe step; remove the other steps or use quantize_dynamic instead",
    ]
    assert recipe_errors(steps({"prune": {"amount": 0.5, "method": "unstructured", "dim": "rows"}}))
    assert validate_recipe(steps({"cast": {"dtype": "float16"}}, {"prune": {"amount": 0.3}})) == []
    assert validate_recipe(steps({"cast": {"dtype": "int8"}})) == [
        "recipe step 1: cast: dtype: Input should be 'float16' or 'bfloat16' (parameters: dtype)"
    ]
    # strict: a string is not a number
    assert validate_recipe(steps({"prune": {"amount": "0.5"}}))[0].startswith(
        "recipe step 1: prune: amount: Input should be a valid number"
    )


def test_invalid_recipe_is_refused_by_apply() -> None:
    with pytest.raises(RecipeError) as info:
        apply_recipe(tiny_llama(), steps({"prune": {"amount": 2}}), "cpu")
    assert info.value.index == 0
    assert info.value.field == ("method", "recipe", 0)


# --- steps ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cast_halves_floating_bytes(dtype: str) -> None:
    import torch

    model = tiny_llama()
    before = float_bytes(model)
    result = apply_recipe(model, steps({"cast": {"dtype": dtype}}), "cpu")
    assert result.applied == [f"cast to {dtype}"] and result.not_applicable is None
    assert float_bytes(result.model) * 2 == before
    assert {t.dtype for t in distinct_tensors(result.model)} == {getattr(torch, dtype)}
    logits = run(result.model)
    assert logits.dtype == getattr(torch, dtype) and torch.isfinite(logits).all()


def test_quantize_dynamic_int8_linear_weights() -> None:
    import torch

    model = tiny_llama()
    reference = run(model)
    names = list(linears(model))
    linear_elements = sum(m.weight.numel() for m in linears(model).values())
    result = apply_recipe(model, steps({"quantize_dynamic": {"dtype": "qint8"}}), "cpu")
    assert result.applied == [f"quantize_dynamic(qint8) via torch.ao: {len(names)} Linear layers"]
    quantized = {
        n: m
        for n, m in result.model.named_modules()
        if type(m).__name__ == "Linear" and callable(getattr(m, "weight", None))
    }
    assert sorted(quantized) == sorted(names) and len(names) == 15
    int8 = sum(m.weight().numel() for m in quantized.values())
    assert int8 == linear_elements
    assert all(m.weight().dtype == torch.qint8 for m in quantized.values())
    logits = run(result.model)
    assert torch.allclose(logits, reference, atol=0.05)


def test_quantize_dynamic_skip_keeps_named_layers_float() -> None:
    import torch

    result = apply_recipe(tiny_llama(), steps({"quantize_dynamic": {"skip": ["lm_head"]}}), "cpu")
    assert type(result.model.lm_head) is torch.nn.Linear
    assert result.applied == ["quantize_dynamic(qint8) via torch.ao: 14 Linear layers"]


@pytest.mark.skipif(importlib.util.find_spec("torchao") is not None, reason="torchao present")
def test_quantize_dynamic_per_channel_has_one_scale_per_row() -> None:
    import torch

    model = tiny_llama()
    reference = run(model)
    rows = {n: m.weight.shape[0] for n, m in linears(model).items()}
    recipe = steps({"quantize_dynamic": {"per_channel": True, "skip": ["lm_head"]}})
    result = apply_recipe(model, recipe, "cpu")
    assert result.applied == [
        "quantize_dynamic(qint8) via torch.ao: 14 Linear layers; one scale per output channel"
    ]
    for name, module in result.model.named_modules():
        if name in rows and name != "lm_head":
            weight = module.weight()
            assert weight.qscheme() == torch.per_channel_affine
            assert weight.q_per_channel_scales().numel() == rows[name]
    assert torch.allclose(run(result.model), reference, atol=0.05)


@pytest.mark.skipif(importlib.util.find_spec("torchao") is not None, reason="torchao present")
def test_quantize_dynamic_on_gpu_without_torchao_is_not_applicable() -> None:
    reason = (
        "torch dynamic int8 quantization (torch.ao) runs on CPU only; torchao, which has GPU "
        "kernels, is not installed on this runner"
    )
    recipe = steps({"quantize_dynamic": {}})
    assert plan_recipe(recipe, "cuda").not_applicable == reason
    result = apply_recipe(tiny_llama(), recipe, "cuda")
    assert result.not_applicable == reason and result.applied == []


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao not installed")
def test_quantize_dynamic_prefers_torchao() -> None:
    model = tiny_llama()
    result = apply_recipe(model, steps({"quantize_dynamic": {}}), "cpu")
    assert result.applied == ["quantize_dynamic(qint8) via torchao: 15 Linear layers"]
    assert run(result.model).shape == (1, 5, 300)


def test_prune_unstructured_per_layer() -> None:
    import torch

    model = tiny_llama()
    counts = {n: m.weight.numel() for n, m in linears(model).items()}
    result = apply_recipe(model, steps({"prune": {"amount": 0.5}}), "cpu")
    assert result.applied == ["prune 0.5 (unstructured): 15 Linear layers"]
    for name, module in linears(result.model).items():
        assert int((module.weight == 0).sum()) == round(0.5 * counts[name]), name
    state = result.model.state_dict()
    assert not [k for k in state if k.endswith(("_orig", "_mask"))]  # made permanent
    assert result.model.lm_head.weight is result.model.model.embed_tokens.weight  # tie kept
    assert torch.isfinite(run(result.model)).all()


def test_prune_structured_rows_and_columns() -> None:
    model = tiny_llama()
    result = apply_recipe(model, steps({"prune": {"amount": 0.25, "method": "structured"}}), "cpu")
    assert result.applied == ["prune 0.25 (structured by rows): 15 Linear layers"]
    for name, module in linears(result.model).items():
        rows = (module.weight == 0).all(dim=1).sum().item()
        assert rows == round(0.25 * module.weight.shape[0]), name
    model = tiny_llama()
    spec = {"prune": {"amount": 0.5, "method": "structured", "dim": "columns"}}
    result = apply_recipe(model, steps(spec), "cpu")
    for name, module in linears(result.model).items():
        cols = (module.weight == 0).all(dim=0).sum().item()
        assert cols == round(0.5 * module.weight.shape[1]), name
    assert run(result.model).shape == (1, 5, 300)


def test_prune_global_scope() -> None:
    model = tiny_llama()
    total = sum(m.weight.numel() for n, m in linears(model).items() if n != "lm_head")
    total += model.lm_head.weight.numel()
    result = apply_recipe(model, steps({"prune": {"amount": 0.3, "scope": "global"}}), "cpu")
    zeros = sum(int((m.weight == 0).sum()) for m in linears(result.model).values())
    assert zeros == round(0.3 * total)


def test_prune_gpt2_conv1d_rows_are_output_units() -> None:
    model = tiny_gpt2()
    spec = {"prune": {"amount": 0.5, "method": "structured", "skip": ["lm_head"]}}
    result = apply_recipe(model, steps(spec), "cpu")
    c_fc = result.model.transformer.h[0].mlp.c_fc.weight  # Conv1D: (in=32, out=128)
    assert c_fc.shape == (32, 128)
    assert (c_fc == 0).all(dim=0).sum().item() == 64
    assert result.applied == ["prune 0.5 (structured by rows): 8 Linear layers"]


def test_kmeans_1d_is_deterministic_and_correct() -> None:
    import torch

    from mcval.models.recipes import kmeans_1d

    values = torch.tensor([0.0, 0.1, 0.2, 10.0, 10.1, 10.2])
    centroids, assign = kmeans_1d(values, 2, 10)
    assert torch.allclose(centroids, torch.tensor([0.1, 10.1]))
    assert assign.tolist() == [0, 0, 0, 1, 1, 1]


def test_cluster_leaves_n_values_per_layer() -> None:
    import torch

    model = tiny_llama()
    before = float_bytes(model)
    result = apply_recipe(model, steps({"cluster": {"clusters": 4}}), "cpu")
    assert result.applied == ["cluster 4 values per layer, zeros kept: 15 Linear layers"]
    for name, module in linears(result.model).items():
        nonzero = module.weight[module.weight != 0]
        assert 2 <= torch.unique(nonzero).numel() <= 4, name
    assert float_bytes(result.model) == before  # sharing values does not shrink fp32 storage
    assert torch.isfinite(run(result.model)).all()


def test_prune_then_cluster_keeps_zeros() -> None:
    recipe = steps({"prune": {"amount": 0.5}}, {"cluster": {"clusters": 8}})
    result = apply_recipe(tiny_llama(), recipe, "cpu")
    for module in linears(result.model).values():
        assert int((module.weight == 0).sum()) == round(0.5 * module.weight.numel())
        assert len(set(module.weight[module.weight != 0].tolist())) <= 8


def test_prune_then_quantize_compose() -> None:
    import torch

    model = tiny_llama()
    counts = [m.weight.numel() for m in linears(model).values()]
    recipe = steps({"prune": {"amount": 0.5}}, {"quantize_dynamic": {}})
    result = apply_recipe(model, recipe, "cpu")
    assert result.applied == [
        "prune 0.5 (unstructured): 15 Linear layers",
        "quantize_dynamic(qint8) via torch.ao: 15 Linear layers",
    ]
    weights = [m.weight() for m in result.model.modules() if callable(getattr(m, "weight", None))]
    assert len(weights) == 15 and all(w.dtype == torch.qint8 for w in weights)
    zeros = sum(int((w.dequantize() == 0).sum()) for w in weights)
    assert zeros == sum(round(0.5 * c) for c in counts)
    assert torch.isfinite(run(result.model)).all()


def test_quantize_dynamic_casts_half_model_back_to_float32() -> None:
    import torch

    model = tiny_llama().to(torch.float16)
    result = apply_recipe(model, steps({"quantize_dynamic": {}}), "cpu")
    assert result.applied[0].endswith(
        "; weights cast to float32 first (int8 dynamic quantization starts from float32)"
    )
    assert run(result.model).dtype == torch.float32


@pytest.mark.parametrize(("name", "bits"), [("bnb_4bit", "4-bit"), ("bnb_8bit", "8-bit")])
def test_bitsandbytes_on_cpu_is_not_applicable(name: str, bits: str) -> None:
    recipe = steps({name: {}})
    plan = plan_recipe(recipe, "cpu")
    assert plan.not_applicable == f"bitsandbytes {bits} needs CUDA"
    assert plan.quantization_config is None
    model = tiny_llama()
    result = apply_recipe(model, recipe, "cpu")
    assert result.not_applicable == f"bitsandbytes {bits} needs CUDA"
    assert result.applied == [] and result.model is model


def test_bnb_step_becomes_a_bitsandbytes_config() -> None:
    import torch

    from mcval.models.recipes import bnb_config

    config = bnb_config(steps({"bnb_4bit": {"quant_type": "fp4", "compute_dtype": "bfloat16"}})[0])
    assert type(config).__name__ == "BitsAndBytesConfig"
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "fp4"
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    config8 = bnb_config(steps({"bnb_8bit": {"threshold": 4.0}})[0])
    assert config8.load_in_8bit and config8.llm_int8_threshold == 4.0


def test_steps_refuse_an_already_quantized_checkpoint() -> None:
    model = tiny_llama()

    class Quantizer:
        class quantization_config:
            quant_method = "gptq"

    model.hf_quantizer = Quantizer()
    with pytest.raises(RecipeError) as info:
        apply_recipe(
            model, steps({"cast": {"dtype": "float16"}}, {"prune": {"amount": 0.1}}), "cpu"
        )
    assert info.value.message == (
        "recipe step 1: cast: the model is already quantized (gptq); cast works on "
        "floating-point Linear weights only, remove this step"
    )


def test_nothing_to_prune_is_a_recipe_error() -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Embedding(10, 4))
    with pytest.raises(RecipeError) as info:
        apply_recipe(model, steps({"prune": {"amount": 0.5}}), "cpu")
    assert info.value.message == (
        "recipe step 1: prune: prune found no floating-point torch.nn.Linear layers in the model"
    )


def test_not_applicable_error_carries_reason() -> None:
    assert NotApplicableError("x needs CUDA").reason == "x needs CUDA"


@pytest.mark.gpu
def test_bnb_4bit_loads_quantized_on_cuda(tmp_path: Any) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("needs bitsandbytes")
    from tiny_models import build_tiny_llama
    from transformers import AutoModelForCausalLM

    from mcval.models import load_model
    from mcval.policy import Policy
    from mcval.submission.schema import ModelSpec

    build_tiny_llama(tmp_path / "m")
    recipe = steps({"bnb_4bit": {}})
    plan = plan_recipe(recipe, "cuda")
    assert plan.not_applicable is None
    loaded = load_model(
        ModelSpec(id="./m", task="causal-lm"),
        tmp_path,
        "cuda",
        Policy(),
        AutoModelForCausalLM,
        quantization_config=plan.quantization_config,
    )
    assert loaded.quantization == "bitsandbytes"
    result = apply_recipe(loaded.model, recipe, "cuda")
    assert result.applied == ["bitsandbytes 4-bit (applied while loading)"]
    assert math.isfinite(float(loaded.model(torch.tensor(INPUT, device="cuda")).logits.sum()))
