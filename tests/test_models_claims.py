"""Claim checks: fire on crafted mismatches with their evidence, stay silent on honest rows."""

from __future__ import annotations

from typing import Any

import pytest
from test_models_recipes import steps, tiny_llama

from mcval.models import Finding, ModelInspection, apply_recipe, check_claims, inspect_model


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


@pytest.fixture(scope="module")
def dense() -> ModelInspection:
    return inspect_model(tiny_llama())


def inspected(*recipe: dict[str, Any], seed: int = 0) -> ModelInspection:
    model = apply_recipe(tiny_llama(seed), steps(*recipe), "cpu").model
    return inspect_model(model)


def test_inspection_numbers_match_an_independent_count(dense: ModelInspection) -> None:
    import torch

    model = tiny_llama()
    distinct = {t.data_ptr(): t for t in model.state_dict().values()}
    assert dense.parameters == sum(t.numel() for t in distinct.values())
    assert dense.dtype_elements == {"torch.float32": dense.parameters}
    assert dense.dtype_bytes == {"torch.float32": 4 * dense.parameters}
    linear = [m for m in model.modules() if type(m) is torch.nn.Linear]
    assert len(dense.linear_layers) == len(linear) == 15
    assert dense.linear_elements == sum(m.weight.numel() for m in linear)
    assert dense.quantized_modules == 0 and dense.int8_weight_elements == 0
    # zeros counted over Linear weights (the tied lm_head is the embedding matrix)
    zeros = sum(int((m.weight == 0).sum()) for m in linear)
    assert dense.linear_zeros == zeros
    assert ModelInspection.model_validate_json(dense.model_dump_json()) == dense


def test_inspection_after_quantize_and_prune() -> None:
    model = tiny_llama()
    linear_elements = sum(m.weight.numel() for m in model.modules() if type(m).__name__ == "Linear")
    recipe = steps({"prune": {"amount": 0.5}}, {"quantize_dynamic": {}})
    inspection = inspect_model(apply_recipe(model, recipe, "cpu").model)
    assert inspection.quantized_modules == 15
    assert inspection.quantized_module_types == {"Linear": 15}
    assert inspection.int8_weight_elements == linear_elements
    assert inspection.dtype_elements["torch.qint8"] == linear_elements
    assert inspection.sparsity == 0.5
    layer = inspection.linear_layers[0]
    assert layer.kind == "Linear" and layer.dtype == "torch.qint8"


def test_fingerprints() -> None:
    import torch

    a, b = tiny_llama(seed=0), tiny_llama(seed=1)
    ia, ib = inspect_model(a), inspect_model(b)
    assert ia.architecture_fingerprint == ib.architecture_fingerprint
    assert ia.weights_fingerprint != ib.weights_fingerprint
    assert inspect_model(tiny_llama(seed=0)).weights_fingerprint == ia.weights_fingerprint
    assert inspect_model(a.to(torch.float16)).weights_fingerprint == ia.weights_fingerprint


# --- the fast inspection equals the definition ---------------------------------------

NAN_AND_FRIENDS = {
    # bit patterns of +0, -0, +inf, -inf, NaNs of both signs and several payloads, subnormals
    "float16": (0x0000, 0x8000, 0x7C00, 0xFC00, 0x7C01, 0x7E00, 0xFC01, 0xFFFF, 0x0001, 0x8001),
    "bfloat16": (0x0000, 0x8000, 0x7F80, 0xFF80, 0x7F81, 0x7FC0, 0xFF81, 0xFFFF, 0x0001, 0x8001),
    "float32": (
        *(0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7F800001),
        *(0x7FC00000, 0xFF800001, 0xFFFFFFFF, 0x00000001, 0x80000001),
    ),
    "float64": (
        *(0x0, 0x8000000000000000, 0x7FF0000000000000, 0xFFF0000000000000),
        *(0x7FF0000000000001, 0xFFF0000000000001, 0xFFFFFFFFFFFFFFFF, 0x1, 0x8000000000000001),
    ),
}


def _special_values(dtype: str) -> Any:
    """NAN_AND_FRIENDS[dtype] as a tensor of that float dtype."""
    import torch

    fdtype = getattr(torch, dtype)
    bits = fdtype.itemsize * 8
    signed = [v - (1 << bits) if v >= 1 << (bits - 1) else v for v in NAN_AND_FRIENDS[dtype]]
    idtype = {16: torch.int16, 32: torch.int32, 64: torch.int64}[bits]
    return torch.tensor(signed, dtype=idtype).view(fdtype)


def _reference_distinct(sample: Any) -> int:
    """The definition (and the code before the integer-sort path)."""
    import torch

    return int(torch.unique(sample[sample != 0]).numel())


@pytest.mark.parametrize("dtype", sorted(NAN_AND_FRIENDS))
def test_distinct_nonzero_is_torch_unique_on_special_values(dtype: str) -> None:
    import torch

    from mcval.models.inspection import _distinct_nonzero

    fdtype = getattr(torch, dtype)
    special = _special_values(dtype)
    gen = torch.Generator().manual_seed(0)
    values = torch.cat([torch.randn(3000, generator=gen).to(fdtype), special])
    values[::5] = 0.0
    values[1::7] = -0.0
    values[2::11] = values[3::11]  # duplicates
    finite = values[values.isfinite()]
    for sample in (values, finite, finite[::3], finite[-9:], special, special[:2], special[:1]):
        assert _distinct_nonzero(sample) == _reference_distinct(sample)
    assert _distinct_nonzero(torch.zeros(0, dtype=fdtype)) == 0
    assert _distinct_nonzero(torch.full((9,), -0.0, dtype=fdtype)) == 0


def _awkward_model(finite: bool = False) -> Any:
    """Layers above both sample sizes and the zero-count chunk, with what pruned, clustered
    or broken checkpoints hold: +0.0 and -0.0, duplicates, subnormals, +-inf and NaN."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(1000, 300), torch.nn.Linear(300, 300), torch.nn.Linear(64, 8)
    )
    with torch.no_grad():
        pruned, clustered, odd = (m.weight for m in model)
        pruned[pruned.abs() < 0.01] = 0.0
        pruned[::7] *= 0.0  # -0.0 where the weight was negative
        clustered.copy_(torch.round(clustered * 50) / 50)
        odd[0, :6] = torch.tensor([1e-45, -1e-45, 0.0, -0.0, 3e38, -3e38])
        if not finite:
            odd[1, :4] = torch.tensor([float("inf"), float("-inf"), float("nan"), -float("nan")])
    return model


def _reference_layers_and_fingerprint(model: Any) -> tuple[list[tuple[str, int, int]], str]:
    """(name, zeros, distinct) per layer and the weights fingerprint, computed as defined:
    dequantize, ``count_nonzero``, ``unique``, one fresh unpack per use."""
    import hashlib

    import torch

    from mcval.models.inspection import (
        DISTINCT_SAMPLE,
        FINGERPRINT_SAMPLE,
        _as_float,
        _layer_weight,
        _sample,
        _state_tensors,
    )

    layers = []
    for name, module in model.named_modules():
        weight = _layer_weight(module)
        if weight is None:
            continue
        values = _as_float(weight).reshape(-1)
        sample, _ = _sample(values, DISTINCT_SAMPLE)
        zeros = values.numel() - int(torch.count_nonzero(values))
        layers.append((name, zeros, _reference_distinct(sample)))
    digest = hashlib.blake2b(digest_size=16)
    tensors = _state_tensors(model)
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        if tensor.numel():
            sample, _ = _sample(_as_float(tensor).reshape(-1), FINGERPRINT_SAMPLE)
            digest.update(sample.detach().to("cpu", torch.float16).numpy().tobytes())
    return layers, digest.hexdigest()


@pytest.mark.parametrize(
    "variant",
    ["float32", "float16", "bfloat16", "float64", "int8", "int8-per-channel", "fp16-packed"],
)
def test_inspection_equals_the_reference_computation(variant: str) -> None:
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = _awkward_model(finite=variant in {"int8", "int8-per-channel", "fp16-packed"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if variant == "int8":
            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        elif variant == "int8-per-channel":
            model = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig})
        elif variant == "fp16-packed":
            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.float16)
        else:
            model = model.to(getattr(torch, variant))
        inspection = inspect_model(model)
        layers, fingerprint = _reference_layers_and_fingerprint(model)
    got = [(layer.name, layer.zeros, layer.distinct_values) for layer in inspection.linear_layers]
    assert got == layers
    assert inspection.weights_fingerprint == fingerprint
    assert inspection.linear_zeros == sum(zeros for _, zeros, _ in layers)
    assert [layer.distinct_is_lower_bound for layer in inspection.linear_layers] == [
        True,
        True,
        False,
    ]
    assert layers[0][1] > 0 and layers[1][2] < 200  # the pruned and clustered layers are


# --- honest submissions: silent ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "recipe"),
    [
        ("fp32 baseline", []),
        ("INT8 dynamic", [{"quantize_dynamic": {"dtype": "qint8"}}]),
        ("FP16", [{"cast": {"dtype": "float16"}}]),
        ("half precision", [{"cast": {"dtype": "float16"}}]),
        ("bf16 cast", [{"cast": {"dtype": "bfloat16"}}]),
        ("Pruned 50% (L1)", [{"prune": {"amount": 0.5}}]),
        ("structured pruning 30%", [{"prune": {"amount": 0.3, "method": "structured"}}]),
        ("k-means weight sharing, 16 clusters", [{"cluster": {"clusters": 16}}]),
        ("pruned 50% + int8", [{"prune": {"amount": 0.5}}, {"quantize_dynamic": {}}]),
    ],
)
def test_honest_methods_are_silent(name: str, recipe: list[dict[str, Any]]) -> None:
    inspection = inspected(*recipe)
    assert check_claims(name, steps(*recipe), inspection) == []


def test_honest_distillation_and_explained_growth_are_silent(dense: ModelInspection) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    student = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=300,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    assert check_claims("Distilled 1-layer", [], inspect_model(student), dense) == []
    retrained = inspected(seed=5)
    assert check_claims("distillation (same size)", [], retrained, dense) == []
    # Growth against the baseline (explained in notes or not) is the verdict's sanity rule,
    # tested in test_verdict.py: the claim checks never report it.
    assert check_claims("INT8", [], inspected({"quantize_dynamic": {}}), dense) == []


# --- crafted mismatches: each fires with evidence -------------------------------------


def test_int8_claim_on_fp32_weights(dense: ModelInspection) -> None:
    findings = check_claims("INT8 dynamic", [], dense)
    assert findings == [
        Finding(
            code="claim-int8-no-int8-weights",
            message="the method 'INT8 dynamic' claims int8, but no weight is stored as int8: 0 "
            "quantized modules, 0 int8 elements; weights are float32 100.0%",
            evidence={
                "quantized_modules": 0,
                "int8_weight_elements": 0,
                "dtypes": "float32 100.0%",
            },
        )
    ]
    assert codes(check_claims("bnb 8-bit", [], dense)) == ["claim-int8-no-int8-weights"]
    assert codes(check_claims("GPTQ 4-bit", [], dense)) == ["claim-lowbit-no-quantized-weights"]


def test_fp16_claim_on_fp32_weights(dense: ModelInspection) -> None:
    (finding,) = check_claims("FP16 inference", [], dense)
    assert finding.code == "claim-fp16-weights-not-fp16"
    assert finding.message == (
        "the method 'FP16 inference' claims fp16, but only 0.0% of floating-point weights are "
        "float16 (100.0% are float32)"
    )
    assert finding.evidence == {"fp16_share": 0.0, "float32_share": 1.0}
    bf16 = inspected({"cast": {"dtype": "bfloat16"}})
    assert codes(check_claims("fp16", [], bf16)) == ["claim-fp16-weights-not-fp16"]
    assert codes(check_claims("bfloat16", [], dense)) == ["claim-bf16-weights-not-bf16"]


def test_pruning_claims(dense: ModelInspection) -> None:
    (finding,) = check_claims("Pruned 50%", [], dense)
    assert finding.code == "claim-pruned-no-sparsity"
    assert finding.message == (
        "the method 'Pruned 50%' claims pruning (50.0%), but only 0.0% of Linear weights are "
        f"zero (0 of {dense.linear_elements})"
    )
    assert finding.evidence["claimed_fraction"] == 0.5
    light = inspected({"prune": {"amount": 0.1}})
    (less,) = check_claims("magnitude pruning 60%", [], light)
    assert less.code == "claim-pruned-less-than-claimed"
    assert less.message == (
        "the method 'magnitude pruning 60%' claims 60.0% pruning, but only 10.0% of Linear "
        "weights are zero"
    )
    assert codes(check_claims("sparse model", [], dense)) == ["claim-pruned-no-sparsity"]


def test_distilled_student_identical_to_teacher(dense: ModelInspection) -> None:
    import torch

    copy = inspect_model(tiny_llama())
    (finding,) = check_claims("Distilled student", [], copy, dense)
    assert finding.code == "distilled-identical-to-teacher"
    assert finding.message == (
        "the method 'Distilled student' claims distillation, but the student has the teacher's "
        f"architecture and identical weights ({dense.parameters} elements, fingerprint "
        f"{dense.weights_fingerprint[:12]})"
    )
    half_copy = inspect_model(tiny_llama().to(torch.float16))
    assert codes(check_claims("DistilLlama", [], half_copy, dense)) == [
        "distilled-identical-to-teacher"
    ]


def test_cluster_claim_on_dense_weights(dense: ModelInspection) -> None:
    (finding,) = check_claims("weight clustering", [], dense)
    assert finding.code == "claim-clustered-many-distinct-values"
    assert finding.evidence["clusters"] == 256
    assert finding.evidence["distinct_values_median"] == dense.distinct_values_median
    assert dense.distinct_values_median is not None and dense.distinct_values_median > 256
    clustered_32 = inspected({"cluster": {"clusters": 32}})
    (too_many,) = check_claims("k-means, 8 clusters", [], clustered_32)
    assert too_many.message.startswith(
        "the method 'k-means, 8 clusters' claims weight clustering (at most 8 values per layer)"
    )


def test_gguf_models_skip_dtype_claims(dense: ModelInspection) -> None:
    assert check_claims("Q4_K_M int4 GGUF", [], dense, gguf=True) == []
    assert codes(check_claims("Q4_K_M int4 GGUF", [], dense)) == [
        "claim-lowbit-no-quantized-weights"
    ]
