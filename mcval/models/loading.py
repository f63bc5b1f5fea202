"""Load a submission's checkpoint with transformers, after the source and safety rules.

from_pretrained always gets ``use_safetensors=True``, ``trust_remote_code=False`` and
``local_files_only=True``: the files on disk were vetted by ``mcval.models.sources``
and nothing else may be fetched or executed. Checkpoints that carry a
``quantization_config`` (GPTQ, AWQ, compressed-tensors, bitsandbytes, ...) load as they
are; when this runner lacks their backend or device, that device's figures are "not
applicable" (``NotApplicableError``), never a crash.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcval.models.errors import LoadError, NotApplicableError, RecipeError
from mcval.models.sources import HubClient, ResolvedSource, resolve_source


def _takes_disable_mmap() -> bool:
    """Whether this transformers' ``from_pretrained`` has ``disable_mmap`` (5.x does)."""
    import inspect

    from transformers import PreTrainedModel

    return "disable_mmap" in inspect.signature(PreTrainedModel.from_pretrained).parameters


@dataclass
class LoadedModel:
    """A model in memory plus where it came from (a dataclass: it holds an nn.Module)."""

    model: Any
    source: str
    """Local directory it was loaded from (repository dir or hub cache snapshot)."""
    files: list[Path]
    """Weight files on disk: safetensors shards, or the GGUF file."""
    files_bytes: int
    warnings: list[str] = field(default_factory=list)
    quantization: str | None = None
    """quant_method of the checkpoint's or the load-time quantization_config, e.g. 'gptq'."""
    quantization_config_type: str | None = None
    """Class of the quantization config transformers built, e.g. 'GPTQConfig'."""
    gguf_file: str | None = None
    """GGUF file name inside ``source`` (give it to the tokenizer too)."""
    resolved: ResolvedSource | None = None
    config: Any = None
    """The model's config (labels, limits): what a runtime conversion keeps of the module."""
    artefact: dict[str, Any] = field(default_factory=dict)
    """``to_runtime`` keywords of a shipped ``model.file`` (path, directory, size limit)."""
    preprocessor: Any = None
    """Set when the library brings its own (timm's transforms); else the task loads one."""


_BACKENDS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    # quant_method: (label, packages transformers needs, needs CUDA)
    "bitsandbytes": ("bitsandbytes", ("bitsandbytes",), True),
    "gptq": ("GPTQ", ("optimum", "gptqmodel"), False),
    "awq": ("AWQ", ("gptqmodel",), False),
    "compressed-tensors": ("compressed-tensors", ("compressed_tensors",), False),
    "aqlm": ("AQLM", ("aqlm",), False),
    "hqq": ("HQQ", ("hqq",), False),
    "quanto": ("quanto", ("optimum.quanto",), False),
    "torchao": ("torchao", ("torchao",), False),
    "eetq": ("EETQ", ("eetq",), True),
    "exl2": ("EXL2", ("exllamav2",), True),
    "vptq": ("VPTQ", ("vptq",), True),
    "fbgemm_fp8": ("FBGEMM FP8", ("fbgemm_gpu",), True),
}


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def _bnb_label(config: dict[str, Any]) -> str:
    four = config.get("load_in_4bit") or config.get("_load_in_4bit")
    return "bitsandbytes 4-bit" if four else "bitsandbytes 8-bit"


def check_quantization_backend(config: dict[str, Any], device: str) -> None:
    """Raise NotApplicableError when this runner cannot load a quantized checkpoint here."""
    method = str(config.get("quant_method", ""))
    if method not in _BACKENDS:
        return
    label, packages, needs_cuda = _BACKENDS[method]
    if method == "bitsandbytes":
        label = _bnb_label(config)
    if needs_cuda and not device.startswith("cuda"):
        raise NotApplicableError(f"{label} needs CUDA")
    missing = [p for p in packages if not _installed(p)]
    if missing:
        raise NotApplicableError(
            f"{label} checkpoints need the {', '.join(missing)} package"
            f"{'s' if len(missing) > 1 else ''}, not installed on this runner"
        )


def gguf_float_dtype(tensor_types: dict[str, int]) -> str:
    """The torch dtype a float GGUF is measured in: its half type when it has one (llama.cpp
    keeps the norms in F32 beside F16/BF16 weights), else float32. transformers' GGUF loader
    builds the model in float32 whatever the file holds (dtype "auto" included), so an F16
    GGUF would be timed and sized as fp32. Quantized GGUF never gets here: the source rules
    refuse it (``sources.check_gguf_tensor_types``)."""
    if "BF16" in tensor_types:
        return "bfloat16"
    if "F16" in tensor_types:
        return "float16"
    return "float32"


def _max_download_bytes(policy: Any) -> int:
    return int(float(policy.measure.max_download_gb) * 1e9)


def load_model(
    spec: Any,
    repo_root: Path,
    device: str,
    policy: Any,
    model_class: type,
    dtype: Any = None,
    *,
    quantization_config: Any = None,
    hub: HubClient | None = None,
) -> LoadedModel:
    """Resolve, vet and load ``spec`` (a ``ModelSpec``) onto ``device``.

    ``dtype`` None keeps the checkpoint's own dtype ("auto"): an fp16 checkpoint (an F16
    GGUF too, see ``gguf_float_dtype``) is measured as fp16. ``quantization_config`` is the
    load-time config of a recipe's bitsandbytes step (``mcval.models.recipes.plan_recipe``).
    Raises ``ModelError`` subclasses (the team's to fix) and ``NotApplicableError`` (this
    device can't).
    """
    resolved = resolve_source(
        spec.id,
        spec.revision,
        spec.gguf_file,
        repo_root,
        max_download_bytes=_max_download_bytes(policy),
        class_name=model_class.__name__,
        hub=hub,
    )
    warnings = list(resolved.warnings)
    checkpoint_qc = resolved.quantization_config
    if checkpoint_qc is not None:
        if quantization_config is not None:
            raise RecipeError(
                f"the checkpoint is already quantized ({checkpoint_qc.get('quant_method')}); "
                "a bitsandbytes recipe step cannot quantize it again, remove the step",
                0,
            )
        check_quantization_backend(checkpoint_qc, device)
    elif quantization_config is not None:
        as_dict = quantization_config.to_dict() if hasattr(quantization_config, "to_dict") else {}
        check_quantization_backend({**as_dict, "quant_method": "bitsandbytes"}, device)
    if resolved.gguf is not None and dtype is None:
        dtype = gguf_float_dtype(resolved.gguf.tensor_types)
    kwargs: dict[str, Any] = {
        "use_safetensors": True,
        "trust_remote_code": False,
        "local_files_only": True,
        "dtype": dtype if dtype is not None else "auto",
    }
    if resolved.gguf_file is not None:
        kwargs["gguf_file"] = resolved.gguf_file
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device != "cpu":
        kwargs["device_map"] = {"": device}
    elif resolved.gguf_file is None and _takes_disable_mmap():
        # Read the weights into the process's own memory: a memory-mapped file stays mapped
        # (and its touched pages resident) while any tensor of it lives, so a recipe that
        # replaces most weights (dynamic int8) would be charged the fp32 file in ram_mb.
        kwargs["disable_mmap"] = True
    quantized = checkpoint_qc is not None or quantization_config is not None
    try:
        model = model_class.from_pretrained(str(resolved.directory), **kwargs)
    except ImportError as exc:
        if quantized:
            raise NotApplicableError(f"the quantized checkpoint cannot load here: {exc}") from None
        raise LoadError(f"transformers could not load the model: {exc}") from None
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
        if quantized and ("GPU" in str(exc) or "CUDA" in str(exc)):
            raise NotApplicableError(f"the quantized checkpoint needs a GPU: {exc}") from None
        raise LoadError(
            f"transformers could not load {spec.id!r} as {model_class.__name__} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); check "
            "that model.task matches the checkpoint"
        ) from None
    model.eval()
    hf_quantizer = getattr(model, "hf_quantizer", None)
    qc_obj = getattr(hf_quantizer, "quantization_config", None) if hf_quantizer else None
    method = None
    if checkpoint_qc is not None:
        method = str(checkpoint_qc.get("quant_method"))
    elif quantization_config is not None:
        method = "bitsandbytes"
    return LoadedModel(
        model=model,
        source=str(resolved.directory),
        files=list(resolved.weight_files),
        files_bytes=resolved.files_bytes,
        warnings=warnings,
        quantization=method,
        quantization_config_type=type(qc_obj).__name__ if qc_obj is not None else None,
        gguf_file=resolved.gguf_file,
        resolved=resolved,
    )
