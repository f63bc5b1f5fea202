"""What the weights of a loaded model really are: dtypes, quantized modules, zeros, distinct
values per layer and fingerprints.

After loading and the recipe, ``inspect_model`` records the weights as they are in memory,
so ``mcval.models.claims`` can hold ``method.name`` against them ("INT8" with float32
weights, "50 % pruned" with no zeros). The inspection is a pydantic model, so the results
store can keep it and a later row can be checked against its baseline's inspection
without reloading it. Only ``inspect_model`` needs torch (imported inside it).
"""

from __future__ import annotations

import hashlib
import statistics
from typing import Any

from pydantic import BaseModel, Field

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
    source: str = Field(
        default="pytorch",
        description="What was inspected: the PyTorch module, or a converted graph ('onnx', "
        "'openvino': stored tensor dtypes only, no per-layer statistics).",
    )

    def float_fraction(self, dtype: str) -> float:
        """Share of floating-point elements stored as ``dtype`` (e.g. 'torch.float32')."""
        floating = sum(v for k, v in self.dtype_elements.items() if k in FLOAT_DTYPES)
        return self.dtype_elements.get(dtype, 0) / floating if floating else 0.0


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
