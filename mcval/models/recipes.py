"""Compression recipes the runner reproduces after loading, one registered step each.

A submission's ``method.recipe`` says how its row was made from the checkpoint, so the
runner measures that method rather than trusting the team's copy of it. Each step
validates its parameters with the torch-free models of ``recipe_params``, acts on the
model in place where it can, and reports what it did. A step this device cannot run
(bitsandbytes on CPU, torch.ao int8 on GPU) makes the result "not applicable: <reason>";
the runner still measures the other device.

bitsandbytes steps quantize while the checkpoint loads: ``plan_recipe`` turns them into
the ``quantization_config`` that ``load_model`` passes to from_pretrained, and
``apply_recipe`` then only confirms the model came out quantized.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcval.models.errors import NotApplicableError, RecipeError
from mcval.models.recipe_params import (
    STEPS,
    Bnb4bitParams,
    Bnb8bitParams,
    CastParams,
    ClusterParams,
    PruneParams,
    QuantizeDynamicParams,
    StepLike,
    StepParams,
    load_time_steps,
    recipe_errors,
)


@dataclass
class RecipeResult:
    """The model after the recipe, what was done, and why a device cannot run it."""

    model: Any
    applied: list[str] = field(default_factory=list)
    not_applicable: str | None = None


@dataclass
class RecipePlan:
    """What to do before loading: a load-time quantization config, or "not applicable"."""

    quantization_config: Any = None
    not_applicable: str | None = None


StepFn = Callable[[Any, Any, str], tuple[Any, str]]
_IMPLEMENTATIONS: dict[str, StepFn] = {}


def _step(name: str) -> Callable[[StepFn], StepFn]:
    def register(fn: StepFn) -> StepFn:
        _IMPLEMENTATIONS[name] = fn
        return fn

    return register


def _torchao_available() -> bool:
    return importlib.util.find_spec("torchao") is not None


def _bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def _check_valid(steps: Sequence[StepLike]) -> list[StepParams]:
    problems = recipe_errors(steps)
    if problems:
        index, message = problems[0]
        raise RecipeError(f"recipe step {index + 1}: {message}", index)
    return [STEPS[s.name].params.model_validate(s.params or {}) for s in steps]


def _bnb_label(name: str) -> str:
    return "bitsandbytes 4-bit" if name == "bnb_4bit" else "bitsandbytes 8-bit"


def _bnb_applicability(name: str, device: str) -> str | None:
    if not device.startswith("cuda"):
        return f"{_bnb_label(name)} needs CUDA"
    if not _bitsandbytes_available():
        return f"{_bnb_label(name)} needs the bitsandbytes package, not installed on this runner"
    return None


def bnb_config(step: StepLike) -> Any:
    """The transformers ``BitsAndBytesConfig`` a bnb recipe step stands for."""
    import torch
    from transformers import BitsAndBytesConfig

    params = STEPS[step.name].params.model_validate(step.params or {})
    if isinstance(params, Bnb4bitParams):
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=params.quant_type,
            bnb_4bit_compute_dtype=getattr(torch, params.compute_dtype),
            bnb_4bit_use_double_quant=params.double_quant,
            llm_int8_skip_modules=params.skip or None,
        )
    assert isinstance(params, Bnb8bitParams)
    return BitsAndBytesConfig(
        load_in_8bit=True,
        llm_int8_threshold=params.threshold,
        llm_int8_skip_modules=params.skip or None,
    )


def plan_recipe(steps: Sequence[StepLike], device: str) -> RecipePlan:
    """Before loading: refuse invalid recipes, spot steps this device can't run, and turn
    a bitsandbytes step into the ``quantization_config`` for ``load_model``."""
    _check_valid(steps)
    for step in steps:
        if step.name == "quantize_dynamic" and device != "cpu" and not _torchao_available():
            return RecipePlan(not_applicable=_QDYN_CPU_ONLY)
    load_time = load_time_steps(steps)
    if not load_time:
        return RecipePlan()
    step = load_time[0]
    reason = _bnb_applicability(step.name, device)
    if reason:
        return RecipePlan(not_applicable=reason)
    return RecipePlan(quantization_config=bnb_config(step))


def apply_recipe(model: Any, steps: Sequence[StepLike], device: str) -> RecipeResult:
    """Apply ``steps`` in order; a step this device can't run stops with not_applicable.

    Raises ``RecipeError`` for a recipe that is invalid or cannot act on this model
    (e.g. pruning a checkpoint that is already quantized).
    """
    params = _check_valid(steps)
    result = RecipeResult(model=model)
    for index, (step, p) in enumerate(zip(steps, params, strict=True)):
        try:
            result.model, summary = _IMPLEMENTATIONS[step.name](result.model, p, device)
        except NotApplicableError as exc:
            result.not_applicable = exc.reason
            return result
        except RecipeError as exc:
            raise RecipeError(
                f"recipe step {index + 1}: {step.name}: {exc.message}", index
            ) from None
        result.applied.append(summary)
    return result


# --- helpers ---------------------------------------------------------------------------


def _already_quantized(model: Any) -> str | None:
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        config = getattr(quantizer, "quantization_config", None)
        return str(getattr(config, "quant_method", "quantized"))
    return None


def _refuse_quantized(model: Any, what: str) -> None:
    method = _already_quantized(model)
    if method is not None:
        raise RecipeError(
            f"the model is already quantized ({method}); {what} works on floating-point "
            "Linear weights only, remove this step"
        )


def _skipped(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def weight_layers(model: Any, skip: list[str] | None = None) -> list[tuple[str, Any, int]]:
    """``(name, module, output_dim)`` of every float Linear-like layer, each module once.

    ``nn.Linear`` stores weights as (out, in); transformers' GPT-2 ``Conv1D`` as (in, out).
    """
    import torch

    layers = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        if id(module) in seen or _skipped(name, skip or []):
            continue
        is_conv1d = type(module).__name__ == "Conv1D" and type(module).__module__.startswith(
            "transformers"
        )
        if type(module) is torch.nn.Linear or is_conv1d:
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.nn.Parameter) and weight.is_floating_point():
                seen.add(id(module))
                layers.append((name, module, 1 if is_conv1d else 0))
    return layers


def _need_layers(model: Any, skip: list[str], what: str) -> list[tuple[str, Any, int]]:
    layers = weight_layers(model, skip)
    if not layers:
        raise RecipeError(
            f"{what} found no floating-point torch.nn.Linear layers in the model"
            + (" (all were skipped)" if skip else "")
        )
    return layers


# --- steps -----------------------------------------------------------------------------


@_step("cast")
def _cast(model: Any, params: CastParams, device: str) -> tuple[Any, str]:
    import torch

    _refuse_quantized(model, "cast")
    dtype = getattr(torch, params.dtype)
    model = model.to(dtype)
    return model, f"cast to {params.dtype}"


_QDYN_CPU_ONLY = (
    "torch dynamic int8 quantization (torch.ao) runs on CPU only; torchao, which has GPU "
    "kernels, is not installed on this runner"
)


@_step("quantize_dynamic")
def _quantize_dynamic(model: Any, params: QuantizeDynamicParams, device: str) -> tuple[Any, str]:
    import torch

    _refuse_quantized(model, "quantize_dynamic")
    layers = _need_layers(model, params.skip, "quantize_dynamic")
    linear = [(n, m) for n, m, _ in layers if type(m) is torch.nn.Linear]
    if not linear:
        raise RecipeError("quantize_dynamic acts on torch.nn.Linear layers; the model has none")
    note = ""
    if any(m.weight.dtype != torch.float32 for _, m in linear):
        model = model.float()
        note = "; weights cast to float32 first (int8 dynamic quantization starts from float32)"
    if _torchao_available():
        model = _quantize_torchao(model, linear)
        return (
            model,
            f"quantize_dynamic({params.dtype}) via torchao: {len(linear)} Linear layers{note}",
        )
    if device != "cpu":
        raise NotApplicableError(_QDYN_CPU_ONLY)
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        per_channel_dynamic_qconfig,
        quantize_dynamic,
    )

    qconfig = per_channel_dynamic_qconfig if params.per_channel else default_dynamic_qconfig
    spec: dict[Any, Any] = (
        {torch.nn.Linear: qconfig} if not params.skip else {n: qconfig for n, _ in linear}
    )
    if params.per_channel:
        note += "; one scale per output channel"
    with warnings.catch_warnings():
        # torch.ao.quantization warns it is deprecated in favour of torchao (absent here).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        model = quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    return (
        model,
        f"quantize_dynamic({params.dtype}) via torch.ao: {len(linear)} Linear layers{note}",
    )


def _quantize_torchao(model: Any, linear: list[tuple[str, Any]]) -> Any:
    """torchao's int8 dynamic-activation / int8-weight quantization of the chosen Linears."""
    import torchao.quantization as tq

    config_cls = getattr(tq, "Int8DynamicActivationInt8WeightConfig", None)
    config = config_cls() if config_cls is not None else tq.int8_dynamic_activation_int8_weight()
    chosen = {n for n, _ in linear}
    tq.quantize_(model, config, filter_fn=lambda module, fqn: fqn in chosen)
    return model


@_step("prune")
def _prune(model: Any, params: PruneParams, device: str) -> tuple[Any, str]:
    import torch.nn.utils.prune as prune

    _refuse_quantized(model, "prune")
    layers = _need_layers(model, params.skip, "prune")
    if params.method == "unstructured" and params.scope == "global":
        prune.global_unstructured(
            [(m, "weight") for _, m, _ in layers],
            pruning_method=prune.L1Unstructured,
            amount=params.amount,
        )
    else:
        for _, module, out_dim in layers:
            if params.method == "unstructured":
                prune.l1_unstructured(module, "weight", amount=params.amount)
            else:
                dim = out_dim if (params.dim or "rows") == "rows" else 1 - out_dim
                prune.ln_structured(module, "weight", amount=params.amount, n=2, dim=dim)
    for _, module, _ in layers:
        prune.remove(module, "weight")  # permanent: the mask is folded into the weight
    how = (
        params.method
        if params.method == "unstructured"
        else f"structured by {params.dim or 'rows'}"
    )
    scope = ", global" if params.scope == "global" else ""
    return model, f"prune {params.amount:g} ({how}{scope}): {len(layers)} Linear layers"


def kmeans_1d(values: Any, clusters: int, iterations: int) -> tuple[Any, Any]:
    """Deterministic 1-D k-means: centroids start evenly spaced between min and max.

    Returns ``(centroids, assignment)``. Assignment uses the midpoints between sorted
    centroids (``searchsorted``), so memory stays O(n) for layers of millions of weights.
    """
    import torch

    x = values.reshape(-1).float()
    k = max(1, min(clusters, x.numel()))
    centroids = torch.linspace(x.min().item(), x.max().item(), k, device=x.device)
    assign = torch.zeros_like(x, dtype=torch.long)
    for _ in range(iterations):
        bounds = (centroids[1:] + centroids[:-1]) / 2
        assign = torch.searchsorted(bounds, x)
        sums = torch.zeros(k, device=x.device).scatter_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        updated, _ = torch.sort(updated)
        if torch.equal(updated, centroids):
            break
        centroids = updated
    bounds = (centroids[1:] + centroids[:-1]) / 2
    assign = torch.searchsorted(bounds, x)
    return centroids, assign


@_step("cluster")
def _cluster(model: Any, params: ClusterParams, device: str) -> tuple[Any, str]:
    import torch

    _refuse_quantized(model, "cluster")
    layers = _need_layers(model, params.skip, "cluster")
    done: set[int] = set()
    with torch.no_grad():
        for _, module, _ in layers:
            weight = module.weight
            if id(weight) in done:  # tied weights are clustered once
                continue
            done.add(id(weight))
            flat = weight.data.reshape(-1)
            keep = flat != 0 if params.keep_zeros else torch.ones_like(flat, dtype=torch.bool)
            if not bool(keep.any()):
                continue
            centroids, assign = kmeans_1d(flat[keep], params.clusters, params.iterations)
            shared = flat.clone()
            shared[keep] = centroids[assign].to(flat.dtype)
            weight.data.copy_(shared.reshape(weight.shape))
    zeros = ", zeros kept" if params.keep_zeros else ""
    return model, f"cluster {params.clusters} values per layer{zeros}: {len(layers)} Linear layers"


def _bnb_step(name: str) -> StepFn:
    def confirm(model: Any, params: Any, device: str) -> tuple[Any, str]:
        reason = _bnb_applicability(name, device)
        if reason:
            raise NotApplicableError(reason)
        flag = "is_loaded_in_4bit" if name == "bnb_4bit" else "is_loaded_in_8bit"
        if not getattr(model, flag, False):
            raise RecipeError(
                f"{name} quantizes while loading: pass plan_recipe(steps, device)"
                ".quantization_config to load_model"
            )
        return model, f"{_bnb_label(name)} (applied while loading)"

    return confirm


_IMPLEMENTATIONS["bnb_8bit"] = _bnb_step("bnb_8bit")
_IMPLEMENTATIONS["bnb_4bit"] = _bnb_step("bnb_4bit")
# A runtime's own steps are implemented by its backend (mcval.backends), on the converted model.
_TORCH_STEPS = {name for name, info in STEPS.items() if info.runtime == "pytorch"}
assert set(_IMPLEMENTATIONS) == _TORCH_STEPS, "every registered step needs an implementation"
