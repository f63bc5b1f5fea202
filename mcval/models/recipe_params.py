"""Recipe steps' names and parameters, torch-free.

``mcval check`` validates a submission's ``method.recipe`` on every pull request in
seconds, so the step registry's parameter models live here, away from the step
implementations (``mcval.models.recipes``) that need torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ModulePatterns = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200)]],
    Field(
        max_length=100,
        description="Module names (fnmatch globs, e.g. 'lm_head' or '*.attention.*') to leave "
        "untouched.",
    ),
]


class StepLike(Protocol):
    """What a recipe step looks like (``mcval.submission.schema.RecipeStep``)."""

    name: str
    params: dict[str, Any]


class StepParams(BaseModel):
    """Base of every step's parameters: unknown keys and coerced types are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CastParams(StepParams):
    """``cast``: convert every floating-point tensor to a half-precision dtype."""

    dtype: Literal["float16", "bfloat16"] = Field(
        description="The half-precision dtype every floating-point tensor is cast to."
    )


class QuantizeDynamicParams(StepParams):
    """``quantize_dynamic``: int8 weights (dynamic activations) for every ``nn.Linear``."""

    dtype: Literal["qint8"] = Field(default="qint8", description="Signed int8 weights.")
    per_channel: bool = Field(
        default=False,
        description="one scale per output row instead of one per tensor (torch.ao path; "
        "torchao is always per channel)",
    )
    skip: ModulePatterns = Field(default_factory=list)


class PruneParams(StepParams):
    """``prune``: magnitude pruning of Linear weights, made permanent (masks removed)."""

    amount: Annotated[float, Field(ge=0, le=1, description="Fraction of weights set to zero.")]
    method: Literal["unstructured", "structured"] = Field(
        default="unstructured",
        description="unstructured: the smallest single weights; structured: whole rows or "
        "columns with the smallest L2 norm.",
    )
    dim: Literal["rows", "columns"] | None = Field(
        default=None,
        description="structured only: prune whole output rows (default) or input columns "
        "by their L2 norm.",
    )
    scope: Literal["layer", "global"] = Field(
        default="layer",
        description="unstructured only: the amount per layer, or over all layers together.",
    )
    skip: ModulePatterns = Field(default_factory=list)

    @model_validator(mode="after")
    def _fits_method(self) -> PruneParams:
        if self.method == "unstructured" and self.dim is not None:
            raise ValueError("'dim' applies to method: structured only")
        if self.method == "structured" and self.scope != "layer":
            raise ValueError("'scope: global' applies to method: unstructured only")
        return self


class ClusterParams(StepParams):
    """``cluster``: k-means weight sharing, each Linear weight keeps ``clusters`` values."""

    clusters: Annotated[int, Field(ge=2, le=65536)] = Field(
        description="Distinct values each layer keeps (16 = a 4-bit codebook)."
    )
    iterations: Annotated[int, Field(ge=1, le=300)] = Field(
        default=20, description="k-means iterations per layer."
    )
    keep_zeros: bool = Field(
        default=True, description="Leave exact zeros (pruned weights) out of the clustering."
    )
    skip: ModulePatterns = Field(default_factory=list)


class Bnb8bitParams(StepParams):
    """``bnb_8bit``: bitsandbytes LLM.int8() while loading (CUDA only)."""

    threshold: Annotated[float, Field(ge=0)] = Field(
        default=6.0,
        description="LLM.int8() outlier threshold: activations above it stay in float16.",
    )
    skip: ModulePatterns = Field(default_factory=list)


class Bnb4bitParams(StepParams):
    """``bnb_4bit``: bitsandbytes 4-bit weights while loading (CUDA only)."""

    quant_type: Literal["nf4", "fp4"] = Field(default="nf4", description="4-bit data type.")
    compute_dtype: Literal["float16", "bfloat16", "float32"] = Field(
        default="float16", description="dtype the matrix multiplications run in."
    )
    double_quant: bool = Field(
        default=False,
        description="Quantize the quantization constants too (about 0.37 bit per parameter less).",
    )
    skip: ModulePatterns = Field(default_factory=list)


class OnnxQuantizeDynamicParams(StepParams):
    """``onnx_quantize_dynamic``: onnxruntime dynamic quantization of the exported graph."""

    weight_type: Literal["qint8", "quint8"] = Field(
        default="qint8", description="int8 type the MatMul/Gemm weights are stored in."
    )
    per_channel: bool = Field(default=False, description="one scale per output channel")
    skip: ModulePatterns = Field(default_factory=list)


class OnnxQuantizeStaticParams(StepParams):
    """``onnx_quantize_static``: onnxruntime static (QDQ) int8, calibrated on evaluation rows."""

    samples: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=32,
        description="Evaluation rows (the first of the declared slice) the activation ranges "
        "are calibrated on.",
    )
    method: Literal["minmax", "entropy", "percentile"] = Field(
        default="minmax", description="How activation ranges are chosen from the calibration."
    )
    per_channel: bool = Field(default=False, description="one weight scale per output channel")
    skip: ModulePatterns = Field(default_factory=list)


class OpenvinoCompressWeightsParams(StepParams):
    """``openvino_compress_weights``: NNCF weight compression of the OpenVINO model."""

    mode: Literal["int8", "int4"] = Field(
        default="int8", description="int8 (asymmetric, per channel) or int4 (symmetric, grouped)."
    )
    group_size: Annotated[int, Field(ge=-1, le=4096)] = Field(
        default=128, description="int4 only: weights sharing one scale (-1: per channel)."
    )
    ratio: Annotated[float, Field(gt=0, le=1)] = Field(
        default=1.0, description="int4 only: fraction of layers in int4, the rest int8."
    )
    skip: ModulePatterns = Field(default_factory=list)

    @model_validator(mode="after")
    def _int4_only(self) -> OpenvinoCompressWeightsParams:
        if self.mode == "int8" and (self.group_size != 128 or self.ratio != 1.0):
            raise ValueError("group_size and ratio apply to mode: int4 only")
        return self


class StepInfo(BaseModel):
    """One registered step: its parameters and when it runs."""

    model_config = ConfigDict(frozen=True)

    params: type[StepParams]
    load_time: bool = Field(
        default=False,
        description="Applied by from_pretrained (a quantization_config), not after loading.",
    )
    summary: str
    runtime: str = Field(
        default="pytorch",
        description="pytorch steps act on the loaded module before any export; a runtime's "
        "own steps act on its converted model, after every pytorch step.",
    )


STEPS: dict[str, StepInfo] = {
    "cast": StepInfo(params=CastParams, summary="cast floating-point weights to float16/bfloat16"),
    "quantize_dynamic": StepInfo(
        params=QuantizeDynamicParams, summary="dynamic int8 quantization of nn.Linear weights"
    ),
    "prune": StepInfo(params=PruneParams, summary="magnitude pruning of nn.Linear weights"),
    "cluster": StepInfo(params=ClusterParams, summary="k-means weight sharing per nn.Linear"),
    "bnb_8bit": StepInfo(
        params=Bnb8bitParams, load_time=True, summary="bitsandbytes 8-bit (CUDA, at load)"
    ),
    "bnb_4bit": StepInfo(
        params=Bnb4bitParams, load_time=True, summary="bitsandbytes 4-bit (CUDA, at load)"
    ),
    "onnx_quantize_dynamic": StepInfo(
        params=OnnxQuantizeDynamicParams,
        runtime="onnxruntime",
        summary="ONNX Runtime dynamic int8 of MatMul/Gemm weights",
    ),
    "onnx_quantize_static": StepInfo(
        params=OnnxQuantizeStaticParams,
        runtime="onnxruntime",
        summary="ONNX Runtime static int8 (QDQ), calibrated on evaluation rows",
    ),
    "openvino_compress_weights": StepInfo(
        params=OpenvinoCompressWeightsParams,
        runtime="openvino",
        summary="NNCF int8/int4 weight compression of the OpenVINO model",
    ),
}
"""The registry: step name → parameters model. Implementations: ``mcval.models.recipes``."""

WEIGHT_CHANGING = frozenset({"cast", "quantize_dynamic", "prune", "cluster"})


def _pydantic_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown parameter"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_step(step: StepLike) -> StepParams:
    """Validated parameters of one step; raises ``ValueError`` with a one-line reason."""
    info = STEPS.get(step.name)
    if info is None:
        hint = difflib.get_close_matches(step.name, list(STEPS), n=1)
        known = ", ".join(STEPS)
        raise ValueError(
            f"unknown recipe step {step.name!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else f"; known steps: {known}")
        )
    try:
        return info.params.model_validate(step.params or {})
    except ValidationError as exc:
        known = ", ".join(info.params.model_fields)
        raise ValueError(f"{step.name}: {_pydantic_message(exc)} (parameters: {known})") from None


_TORCH_ONLY = {
    "quantize_dynamic": "onnx_quantize_dynamic (onnxruntime) or openvino_compress_weights",
    "bnb_8bit": "openvino_compress_weights {mode: int8}",
    "bnb_4bit": "openvino_compress_weights {mode: int4}",
}


def runtime_step_errors(names: Sequence[str], runtime: str) -> list[tuple[int, str]]:
    """A runtime's step needs that runtime and comes after every pytorch step (it acts on
    the exported model, which the pytorch steps can no longer change)."""
    errors: list[tuple[int, str]] = []
    seen_runtime_step: str | None = None
    for index, name in enumerate(names):
        info = STEPS.get(name)
        if info is None:
            continue
        if runtime != "pytorch" and name in _TORCH_ONLY:
            errors.append(
                (
                    index,
                    f"{name} makes packed torch modules that cannot be exported to {runtime}; "
                    f"use {_TORCH_ONLY[name]} instead",
                )
            )
        if info.runtime != "pytorch":
            if info.runtime != runtime:
                errors.append(
                    (
                        index,
                        f"{name} needs model.runtime: {info.runtime} (this submission runs on "
                        f"{runtime}); set the runtime or remove the step",
                    )
                )
            seen_runtime_step = seen_runtime_step or name
        elif seen_runtime_step is not None:
            errors.append(
                (
                    index,
                    f"{name} must come before {seen_runtime_step}: pytorch steps act on the "
                    "checkpoint before it is exported; move it up",
                )
            )
    return errors


def recipe_errors(steps: Sequence[StepLike], runtime: str = "pytorch") -> list[tuple[int, str]]:
    """``(step index, message)`` for every problem (names, parameters, step order, runtime),
    in step order; each message starts with the step's name."""
    errors: list[tuple[int, str]] = []
    names = [s.name for s in steps]
    errors += runtime_step_errors(names, runtime)
    for index, step in enumerate(steps):
        try:
            parse_step(step)
        except ValueError as exc:
            errors.append((index, str(exc)))
    load_time = [i for i, n in enumerate(names) if n in STEPS and STEPS[n].load_time]
    for i in load_time:
        if len(steps) > 1:
            errors.append(
                (
                    i,
                    f"{names[i]} quantizes while the checkpoint loads, so it must be the only "
                    "recipe step; remove the other steps or use quantize_dynamic instead",
                )
            )
    if "quantize_dynamic" in names:
        q = names.index("quantize_dynamic")
        after = [n for n in names[q + 1 :] if n in WEIGHT_CHANGING]
        if after:
            errors.append(
                (
                    q,
                    "quantize_dynamic must be the last step: its packed int8 weights cannot be "
                    f"changed by {', '.join(after)} afterwards; move it to the end",
                )
            )
        if "cast" in names:
            errors.append(
                (
                    names.index("cast"),
                    "cast cannot be combined with quantize_dynamic: torch dynamic int8 "
                    "quantization needs float32 weights; remove the cast step",
                )
            )
    return sorted(errors, key=lambda e: e[0])


def validate_recipe(steps: Sequence[StepLike]) -> list[str]:
    """Every problem of a recipe as one line, ``recipe step N: name: ...``; empty if valid."""
    return [f"recipe step {index + 1}: {message}" for index, message in recipe_errors(steps)]


def load_time_steps(steps: Iterable[StepLike]) -> list[StepLike]:
    """Steps that turn into a ``quantization_config`` for ``from_pretrained``."""
    return [s for s in steps if s.name in STEPS and STEPS[s.name].load_time]
