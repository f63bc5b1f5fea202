"""Does the model match what its method name claims? Inspection and claim checks.

A row named "INT8" whose weights are float32, or "50 % pruned" with no zeros, would put
a false method in the course table beside honest measurements. After loading and the
recipe, ``inspect_model`` records what the weights really are (dtypes, quantized
modules, zeros, distinct values per layer, fingerprints); ``check_claims`` compares that
with ``method.name``, the recipe and the baseline row, and returns warnings that carry
their evidence. The inspection is a pydantic model, so the results store can keep it and
a later row can be checked against its baseline's inspection without reloading it.
Only ``inspect_model`` needs torch (imported inside it).
"""

from __future__ import annotations

import hashlib
import re
import statistics
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from mcval.models.recipe_params import StepLike
from mcval.models.zeros import count_zeros

DISTINCT_SAMPLE = 2**16
"""Distinct values are counted exactly up to this many weights; above, on an evenly
strided sample (a lower bound: enough to tell a clustered layer from a dense one)."""
FINGERPRINT_SAMPLE = 4096
"""Values per tensor that enter the weights fingerprint (plus shape and name)."""

INT8_DTYPES = {"torch.int8", "torch.uint8", "torch.qint8", "torch.quint8", "torch.quint4x2"}
FLOAT_DTYPES = {"torch.float32", "torch.float16", "torch.bfloat16", "torch.float64"}


class LayerStats(BaseModel):
    """One Linear-like layer's weight: zeros and distinct values."""

    name: str
    kind: str = Field(description="Module class, e.g. Linear, Conv1D, DynamicQuantizedLinear.")
    dtype: str
    elements: int
    zeros: int
    sparsity: float
    distinct_values: int = Field(
        description="Distinct non-zero values (pruned zeros are not a cluster of their own)."
    )
    distinct_is_lower_bound: bool = False


class ModelInspection(BaseModel):
    """What the weights of a loaded (and recipe-processed) model really are."""

    model_class: str
    parameters: int = Field(description="Elements of all distinct tensors (tied ones once).")
    dtype_elements: dict[str, int] = Field(description="dtype → elements, e.g. torch.float16.")
    dtype_bytes: dict[str, int]
    quantized_modules: int
    quantized_module_types: dict[str, int]
    int8_weight_elements: int = Field(description="Elements stored as (q)int8/(q)uint8.")
    linear_layers: list[LayerStats]
    linear_elements: int
    linear_zeros: int
    sparsity: float = Field(description="Zero fraction over all Linear-like weights.")
    distinct_values_max: int | None
    distinct_values_median: float | None
    architecture_fingerprint: str = Field(description="Hash of tensor names and shapes.")
    weights_fingerprint: str = Field(description="Hash of names, shapes and sampled values.")

    def float_fraction(self, dtype: str) -> float:
        """Share of floating-point elements stored as ``dtype`` (e.g. 'torch.float32')."""
        floating = sum(v for k, v in self.dtype_elements.items() if k in FLOAT_DTYPES)
        return self.dtype_elements.get(dtype, 0) / floating if floating else 0.0


class Finding(BaseModel):
    """A claim the weights contradict: shown in the report, with its evidence."""

    code: str
    severity: Literal["warning"] = "warning"
    message: str
    evidence: dict[str, float | int | str] = Field(default_factory=dict)


# --- inspection (torch) ----------------------------------------------------------------


def _is_quantized_module(module: Any) -> bool:
    cls = type(module)
    path, name = cls.__module__, cls.__name__
    if "quantized" in path.split(".") or path.startswith(("torch.ao.nn.quantized", "bitsandbytes")):
        # LinearPackedParams is the storage inside a quantized Linear, not a layer of its own.
        return name not in {"Quantize", "DeQuantize", "LinearPackedParams"}
    if any(k in name for k in ("QuantLinear", "Linear4bit", "Linear8bitLt", "WQLinear")):
        return True
    if name == "CompressedLinear":
        return True
    weight = getattr(module, "weight", None)
    return weight is not None and type(weight).__module__.split(".")[0] == "torchao"


_Unpacked = dict[int, tuple[Any, Any]]
"""id(module) → its unpacked (weight, bias), for one ``inspect_model`` call: unpacking copies
the weight out of fbgemm's layout (~1 ms per SmolLM2 Linear), so it is done once, not twice."""


def _packed_weight(module: Any, unpacked: _Unpacked | None = None) -> tuple[Any, Any] | None:
    """(weight, bias) of a torch.ao quantized Linear, whose weight is a method, not a tensor."""
    if unpacked is not None and id(module) in unpacked:
        return unpacked[id(module)]
    unpack = getattr(module, "_weight_bias", None)
    if callable(unpack) and callable(getattr(module, "weight", None)):
        weight, bias = unpack()
        if unpacked is not None:
            unpacked[id(module)] = (weight, bias)
        return weight, bias
    return None


def _layer_weight(module: Any, unpacked: _Unpacked | None = None) -> Any | None:
    import torch

    packed = _packed_weight(module, unpacked)
    if packed is not None:
        return packed[0]
    cls = type(module)
    is_conv1d = cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers")
    if cls is torch.nn.Linear or is_conv1d:
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.is_floating_point():
            return weight
    return None


def _as_float(tensor: Any) -> Any:
    return tensor.dequantize() if tensor.is_quantized else tensor


def _sample(flat: Any, size: int) -> tuple[Any, bool]:
    n = flat.numel()
    if n <= size:
        return flat, False
    step = -(-n // size)
    return flat[::step], True


def _distinct_reference(sample: Any) -> int:
    """Distinct non-zero values, by definition (NaNs each count once, as ``unique`` keeps them)."""
    import torch

    return int(torch.unique(sample[sample != 0]).numel())


def _distinct_nonzero(sample: Any) -> int:
    """Distinct non-zero values: exactly ``_distinct_reference(sample)``, ~10x faster.

    Why: ``torch.unique`` sorts floats with a NaN-aware comparator (~5 ms per 64K values,
    ~1 s over SmolLM2's 211 layers). Non-zero, non-NaN floats are equal exactly when their
    bit patterns are, so sorting the bits as integers (a histogram of all 2**16 patterns for
    16-bit floats) finds the same set. As signed integers +0.0 is 0, -0.0 the minimum, and
    NaNs lie above +inf's pattern or between -inf's and 0; a sample holding NaN, and
    tensors off the CPU, take the reference.
    """
    import numpy as np
    import torch

    spec = {
        torch.float16: (torch.int16, 0x7C00),
        torch.bfloat16: (torch.int16, 0x7F80),
        torch.float32: (torch.int32, 0x7F800000),
        torch.float64: (torch.int64, 0x7FF0000000000000),
    }.get(sample.dtype)
    if spec is None or sample.device.type != "cpu":
        return _distinct_reference(sample)
    if sample.numel() == 0:
        return 0
    bits_dtype, inf = spec
    bits = sample.detach().view(bits_dtype)
    if bits_dtype == torch.int16:
        counts = torch.bincount(bits.to(torch.int32) & 0xFFFF, minlength=1 << 16)
        if bool(counts[inf + 1 : 0x8000].any()) or bool(counts[0x8000 + inf + 1 :].any()):
            return _distinct_reference(sample)
        zeros = int(bool(counts[0])) + int(bool(counts[0x8000]))
        return int(torch.count_nonzero(counts)) - zeros
    ordered = torch.sort(bits).values
    n = ordered.numel()
    smallest = torch.iinfo(bits_dtype).min  # -0.0
    edges = torch.searchsorted(ordered, torch.tensor([smallest + inf + 1, 0], dtype=bits_dtype))
    negative_nan, positive_zero = int(edges[0]), int(edges[1])
    if int(ordered[-1]) > inf or (negative_nan < n and int(ordered[negative_nan]) < 0):
        return _distinct_reference(sample)
    flat = ordered.numpy()
    distinct = int(np.count_nonzero(flat[1:] != flat[:-1])) + 1
    distinct -= int(flat[0]) == smallest
    distinct -= positive_zero < n and int(flat[positive_zero]) == 0
    return distinct


def _state_tensors(model: Any, unpacked: _Unpacked | None = None) -> dict[str, Any]:
    """Every distinct tensor of the model's state: parameters, buffers, packed weights."""
    import torch

    tensors: dict[str, Any] = {}
    seen: set[tuple[int, str, tuple[int, ...]]] = set()

    def add(name: str, tensor: Any) -> None:
        if not isinstance(tensor, torch.Tensor):
            return
        try:
            ptr = tensor.data_ptr()
        except RuntimeError:  # tensor subclasses without storage
            ptr = id(tensor)
        key = (ptr, str(tensor.dtype), tuple(tensor.shape))
        if key in seen and ptr != 0:
            return
        seen.add(key)
        tensors[name] = tensor

    for name, tensor in model.named_parameters(remove_duplicate=True):
        add(name, tensor)
    for name, module in model.named_modules():
        # Persistent buffers only, as in state_dict(): a non-persistent one (rotary inv_freq)
        # is recomputed at load, not part of the checkpoint.
        skip = getattr(module, "_non_persistent_buffers_set", set())
        for buffer_name, buffer in module._buffers.items():
            if buffer is not None and buffer_name not in skip:
                add(f"{name}.{buffer_name}" if name else buffer_name, buffer)
        packed = _packed_weight(module, unpacked)
        if packed is not None:
            add(f"{name}.weight", packed[0])
            if packed[1] is not None:
                add(f"{name}.bias", packed[1])
    return tensors


def _fingerprint_bytes(values: Any) -> bytes:
    """The sampled values of one flattened tensor, as they enter ``weights_fingerprint``."""
    import torch

    sample, _ = _sample(values, FINGERPRINT_SAMPLE)
    return bytes(sample.detach().to("cpu", torch.float16).numpy().tobytes())


def inspect_model(model: Any) -> ModelInspection:
    """Measure the model's weights as they are in memory (after any recipe).

    It runs in every measuring child after the timed calls, so it must stay cheap: each
    packed weight is unpacked and dequantized once per call, not once per use (the layer
    pass keeps the fingerprint sample of what it dequantized), zeros are counted without
    branches (``count_zeros``) and distinct values by an integer sort (``_distinct_nonzero``).
    """
    import torch

    unpacked: _Unpacked = {}
    tensors = _state_tensors(model, unpacked)
    fingerprints: dict[int, bytes] = {}  # id(quantized weight) → its fingerprint sample
    with torch.no_grad():
        quantized_types: dict[str, int] = {}
        layers: list[LayerStats] = []
        for name, module in model.named_modules():
            if _is_quantized_module(module):
                kind = type(module).__name__
                quantized_types[kind] = quantized_types.get(kind, 0) + 1
            weight = _layer_weight(module, unpacked)
            if weight is None:
                continue
            values = _as_float(weight).reshape(-1)
            if weight.is_quantized and values.numel():
                fingerprints[id(weight)] = _fingerprint_bytes(values)
            zeros = count_zeros(values)
            sample, lower = _sample(values, DISTINCT_SAMPLE)
            distinct = _distinct_nonzero(sample)
            del values, sample  # a dequantized copy: free it before the next layer's
            layers.append(
                LayerStats(
                    name=name,
                    kind=type(module).__name__,
                    dtype=str(weight.dtype),
                    elements=weight.numel(),
                    zeros=zeros,
                    sparsity=zeros / weight.numel() if weight.numel() else 0.0,
                    distinct_values=distinct,
                    distinct_is_lower_bound=lower,
                )
            )

        dtype_elements: dict[str, int] = {}
        dtype_bytes: dict[str, int] = {}
        arch = hashlib.blake2b(digest_size=16)
        weights = hashlib.blake2b(digest_size=16)
        for name in sorted(tensors):
            tensor = tensors[name]
            dtype = str(tensor.dtype)
            dtype_elements[dtype] = dtype_elements.get(dtype, 0) + tensor.numel()
            dtype_bytes[dtype] = dtype_bytes.get(dtype, 0) + tensor.numel() * tensor.element_size()
            shape = f"{name}:{tuple(tensor.shape)};".encode()
            arch.update(shape)
            weights.update(shape)
            if tensor.numel():
                sampled = fingerprints.get(id(tensor))
                if sampled is None:
                    sampled = _fingerprint_bytes(_as_float(tensor).reshape(-1))
                weights.update(sampled)
    linear_elements = sum(layer.elements for layer in layers)
    linear_zeros = sum(layer.zeros for layer in layers)
    distinct = [layer.distinct_values for layer in layers]
    return ModelInspection(
        model_class=type(model).__name__,
        parameters=sum(t.numel() for t in tensors.values()),
        dtype_elements=dtype_elements,
        dtype_bytes=dtype_bytes,
        quantized_modules=sum(quantized_types.values()),
        quantized_module_types=quantized_types,
        int8_weight_elements=sum(v for k, v in dtype_elements.items() if k in INT8_DTYPES),
        linear_layers=layers,
        linear_elements=linear_elements,
        linear_zeros=linear_zeros,
        sparsity=linear_zeros / linear_elements if linear_elements else 0.0,
        distinct_values_max=max(distinct) if distinct else None,
        distinct_values_median=float(statistics.median(distinct)) if distinct else None,
        architecture_fingerprint=arch.hexdigest(),
        weights_fingerprint=weights.hexdigest(),
    )


# --- claim checks (torch-free) ---------------------------------------------------------

_B = r"(?<![a-z0-9])"
_E = r"(?![a-z0-9])"
INT8_CLAIM = re.compile(_B + r"(?:q?u?int[-_ ]?8|8[-_ ]?bits?|w8a8|w8a16|a8w8|llm\.int8)" + _E)
LOWBIT_CLAIM = re.compile(
    _B + r"(?:int[-_ ]?[234]|[234][-_ ]?bits?|nf4|fp4|gptq|awq|w4a16|w4a8|w3a16)" + _E
)
FP16_CLAIM = re.compile(_B + r"(?:fp[-_ ]?16|float[-_ ]?16|half(?:[-_ ]precision)?)" + _E)
BF16_CLAIM = re.compile(_B + r"(?:bf[-_ ]?16|bfloat[-_ ]?16)" + _E)
PRUNE_CLAIM = re.compile(r"prun|sparse|sparsity")
PERCENT = re.compile(r"(\d{1,3}(?:[.,]\d+)?)\s*%")
DISTIL_CLAIM = re.compile(r"distil")
CLUSTER_CLAIM = re.compile(r"cluster|k[-_ ]?means|weight[-_ ]?shar")
CLUSTER_COUNT = re.compile(r"(\d+)\s*(?:clusters|centroids|values)")
DEFAULT_CLUSTER_LIMIT = 256
"""Without a stated count, "clustered" means at most an 8-bit codebook per layer."""
PRUNED_ZERO = 0.01
"""Below this fraction of zeros a model is not pruned in any useful sense."""
LARGER_TOLERANCE = 0.001


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _dtype_summary(inspection: ModelInspection) -> str:
    total = sum(inspection.dtype_elements.values()) or 1
    parts = sorted(inspection.dtype_elements.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k.removeprefix('torch.')} {_pct(v / total)}" for k, v in parts[:4])


def _recipe_params(recipe: Sequence[StepLike], name: str) -> dict[str, Any] | None:
    for step in recipe:
        if step.name == name:
            return dict(step.params or {})
    return None


def _pruned_fraction(inspection: ModelInspection, baseline: ModelInspection | None) -> float:
    """Zeros, plus Linear weights physically removed relative to the baseline (head pruning)."""
    if baseline is not None and 0 < inspection.linear_elements < baseline.linear_elements:
        removed = 1 - inspection.linear_elements / baseline.linear_elements
        return removed + (1 - removed) * inspection.sparsity
    return inspection.sparsity


def check_claims(
    method_name: str,
    recipe: Sequence[StepLike],
    inspection: ModelInspection,
    baseline_inspection: ModelInspection | None = None,
    baseline_weights_mb: float | None = None,
    weights_mb: float | None = None,
    notes: str | None = None,
    *,
    gguf: bool = False,
) -> list[Finding]:
    """Warnings for every claim of ``method_name``/``recipe`` that the weights contradict.

    ``gguf``: the model came from a GGUF file, which transformers dequantizes, so its
    in-memory dtype says nothing about the file's quantization (those checks are skipped).
    """
    text = method_name.lower()
    findings: list[Finding] = []
    quantized = inspection.quantized_modules > 0 or inspection.int8_weight_elements > 0
    evidence_q: dict[str, float | int | str] = {
        "quantized_modules": inspection.quantized_modules,
        "int8_weight_elements": inspection.int8_weight_elements,
        "dtypes": _dtype_summary(inspection),
    }
    if not gguf and INT8_CLAIM.search(text) and not quantized:
        findings.append(
            Finding(
                code="claim-int8-no-int8-weights",
                message=f"the method {method_name!r} claims int8, but no weight is stored as "
                f"int8: 0 quantized modules, 0 int8 elements; weights are "
                f"{_dtype_summary(inspection)}",
                evidence=evidence_q,
            )
        )
    if not gguf and LOWBIT_CLAIM.search(text) and not quantized:
        findings.append(
            Finding(
                code="claim-lowbit-no-quantized-weights",
                message=f"the method {method_name!r} claims low-bit quantization, but the model "
                f"has no quantized modules or packed integer weights; weights are "
                f"{_dtype_summary(inspection)}",
                evidence=evidence_q,
            )
        )
    half_claims = (("torch.float16", FP16_CLAIM, "fp16"), ("torch.bfloat16", BF16_CLAIM, "bf16"))
    for dtype, pattern, label in half_claims:
        if gguf or quantized or not pattern.search(text):
            continue
        share = inspection.float_fraction(dtype)
        if share < 0.5:
            fp32 = inspection.float_fraction("torch.float32")
            findings.append(
                Finding(
                    code=f"claim-{label}-weights-not-{label}",
                    message=f"the method {method_name!r} claims {label}, but only {_pct(share)} "
                    f"of floating-point weights are {dtype.removeprefix('torch.')} "
                    f"({_pct(fp32)} are float32)",
                    evidence={f"{label}_share": share, "float32_share": fp32},
                )
            )
    prune_params = _recipe_params(recipe, "prune")
    if PRUNE_CLAIM.search(text) or prune_params is not None:
        pruned = _pruned_fraction(inspection, baseline_inspection)
        stated = PERCENT.search(text)
        expected = None
        if prune_params is not None and isinstance(prune_params.get("amount"), (int, float)):
            expected = float(prune_params["amount"])
        elif stated:
            expected = float(stated.group(1).replace(",", ".")) / 100
        evidence_p: dict[str, float | int | str] = {
            "linear_zeros": inspection.linear_zeros,
            "linear_elements": inspection.linear_elements,
            "pruned_fraction": round(pruned, 6),
        }
        if expected is not None:
            evidence_p["claimed_fraction"] = expected
        if pruned < PRUNED_ZERO:
            findings.append(
                Finding(
                    code="claim-pruned-no-sparsity",
                    message=f"the method {method_name!r} claims pruning"
                    + (f" ({_pct(expected)})" if expected is not None else "")
                    + f", but only {_pct(pruned)} of Linear weights are zero "
                    f"({inspection.linear_zeros} of {inspection.linear_elements})",
                    evidence=evidence_p,
                )
            )
        elif expected is not None and pruned < expected / 2:
            findings.append(
                Finding(
                    code="claim-pruned-less-than-claimed",
                    message=f"the method {method_name!r} claims {_pct(expected)} pruning, but "
                    f"only {_pct(pruned)} of Linear weights are zero",
                    evidence=evidence_p,
                )
            )
    if (
        baseline_weights_mb is not None
        and weights_mb is not None
        and weights_mb > baseline_weights_mb * (1 + LARGER_TOLERANCE)
        and not (notes and notes.strip())
    ):
        findings.append(
            Finding(
                code="larger-than-baseline",
                message=f"this compressed row's weights ({weights_mb:.2f} MB) are larger than its "
                f"baseline's ({baseline_weights_mb:.2f} MB); explain why in method.notes",
                evidence={"weights_mb": weights_mb, "baseline_weights_mb": baseline_weights_mb},
            )
        )
    if (
        DISTIL_CLAIM.search(text)
        and baseline_inspection is not None
        and inspection.architecture_fingerprint == baseline_inspection.architecture_fingerprint
        and inspection.weights_fingerprint == baseline_inspection.weights_fingerprint
    ):
        findings.append(
            Finding(
                code="distilled-identical-to-teacher",
                message=f"the method {method_name!r} claims distillation, but the student has the "
                f"teacher's architecture and identical weights ({inspection.parameters} "
                f"elements, fingerprint {inspection.weights_fingerprint[:12]})",
                evidence={
                    "architecture_fingerprint": inspection.architecture_fingerprint,
                    "weights_fingerprint": inspection.weights_fingerprint,
                },
            )
        )
    cluster_params = _recipe_params(recipe, "cluster")
    if (CLUSTER_CLAIM.search(text) or cluster_params is not None) and (
        inspection.distinct_values_median is not None
    ):
        stated_count = CLUSTER_COUNT.search(text)
        limit = DEFAULT_CLUSTER_LIMIT
        if cluster_params is not None and isinstance(cluster_params.get("clusters"), int):
            limit = cluster_params["clusters"]
        elif stated_count:
            limit = int(stated_count.group(1))
        median = inspection.distinct_values_median
        if median > limit:
            findings.append(
                Finding(
                    code="claim-clustered-many-distinct-values",
                    message=f"the method {method_name!r} claims weight clustering (at most "
                    f"{limit} values per layer), but Linear weights have a median of "
                    f"{median:g} distinct values per layer (max "
                    f"{inspection.distinct_values_max})",
                    evidence={
                        "clusters": limit,
                        "distinct_values_median": median,
                        "distinct_values_max": inspection.distinct_values_max or 0,
                    },
                )
            )
    return findings
