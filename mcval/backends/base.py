"""The one interface every runtime sits behind, and the model object the tasks drive.

The task handlers call ``model(**inputs).logits`` and read ``model.config``; a
``RuntimeModel`` gives them exactly that for any runtime (ONNX Runtime, OpenVINO,
TorchScript), so quality and the timed call are computed by the same task code on every
runtime, and only ``run`` (numpy or torch in, logits out) is the runtime's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import torch

from mcval.measure.size import MIB, SizeReport

RunFn = Callable[[dict[str, Any]], Any]
RUNTIME_DTYPES: dict[str, str] = {
    # ONNX TensorProto names (lower case)
    "float": "torch.float32", "float16": "torch.float16", "bfloat16": "torch.bfloat16",
    "double": "torch.float64", "int8": "torch.int8", "uint8": "torch.uint8",
    "int16": "torch.int16", "int32": "torch.int32", "int64": "torch.int64", "bool": "torch.bool",
    # OpenVINO element types
    "f32": "torch.float32", "f16": "torch.float16", "bf16": "torch.bfloat16",
    "f64": "torch.float64", "i8": "torch.int8", "u8": "torch.uint8", "i4": "int4",
    "u4": "uint4", "i16": "torch.int16", "i32": "torch.int32", "i64": "torch.int64",
    "boolean": "torch.bool",
}  # fmt: skip
"""A runtime's dtype names in the inspection's terms (``torch.float16``; 4-bit as ``int4``)."""
_INTEGER_WEIGHTS = frozenset({"torch.int8", "torch.uint8", "int4", "uint4"})
LOWBIT_MIN_ELEMENTS = 1024
"""Integer tensors this large are quantized weights, not zero points, shapes or indices."""
DecodeFn = Callable[[np.ndarray, np.ndarray, Any], tuple[np.ndarray, Any]]
"""One decoding call on a graph with a KV cache: ``(input_ids, attention_mask, past)`` →
``(logits of the last position, batch × vocab float32, present)``; ``past`` is None at the
prefill, then whatever the previous call returned (the runtime's own tensors, never copied
through torch)."""


@dataclass
class WeightCount:
    """Bytes of distinct weight tensors of a converted model, by dtype (independent of the
    file sizes, see docs/measurement.md)."""

    total: int = 0
    tensors: int = 0
    elements: int = 0
    by_dtype: dict[str, int] = field(default_factory=dict)
    elements_by_dtype: dict[str, int] = field(default_factory=dict)
    lowbit_tensors: int = 0
    """Weight-sized (``LOWBIT_MIN_ELEMENTS``+) tensors stored in 8 bits or fewer as integers."""
    int8_elements: int = 0

    def add(self, dtype: str, nbytes: int, elements: int) -> None:
        self.total += nbytes
        self.tensors += 1
        self.elements += elements
        self.by_dtype[dtype] = self.by_dtype.get(dtype, 0) + nbytes
        name = RUNTIME_DTYPES.get(dtype, dtype)
        self.elements_by_dtype[name] = self.elements_by_dtype.get(name, 0) + elements
        if name in _INTEGER_WEIGHTS and elements >= LOWBIT_MIN_ELEMENTS:
            self.lowbit_tensors += 1
            if name in ("torch.int8", "torch.uint8"):
                self.int8_elements += elements

    def inspection(self, source: str) -> Any:
        """A ``ModelInspection`` of the stored tensors, for the claim checks that read
        dtypes (an "INT8" row whose graph stores no int8 weight is flagged as a PyTorch row
        is); per-layer statistics (zeros, distinct values) are not read from graphs."""
        import hashlib

        from mcval.models.inspection import ModelInspection

        summary = sorted(self.elements_by_dtype.items())
        digest = hashlib.sha256(f"{source}:{self.tensors}:{summary}".encode()).hexdigest()
        return ModelInspection(
            model_class=f"{source} graph",
            parameters=self.elements,
            dtype_elements=dict(summary),
            dtype_bytes={RUNTIME_DTYPES.get(k, k): v for k, v in self.by_dtype.items()},
            quantized_modules=self.lowbit_tensors,
            quantized_module_types={"integer weight tensors": self.lowbit_tensors}
            if self.lowbit_tensors
            else {},
            int8_weight_elements=self.int8_elements,
            linear_layers=[],
            linear_elements=0,
            linear_zeros=0,
            sparsity=0.0,
            distinct_values_max=None,
            distinct_values_median=None,
            architecture_fingerprint=digest,
            weights_fingerprint=digest,
            source=source,
        )

    def report(self, files: Sequence[Path]) -> SizeReport:
        """The measurement's ``SizeReport`` (sparsity is not read on converted graphs)."""
        fbytes = sum(Path(f).stat().st_size for f in files) if files else None
        return SizeReport(
            weights_bytes=self.total,
            weights_mb=self.total / MIB,
            parameters=self.elements,
            buffer_elements=0,
            tensors=self.tensors,
            dtype_bytes=dict(sorted(self.by_dtype.items(), key=lambda kv: -kv[1])),
            packed_modules=0,
            sparsity=None,
            sparsity_elements=0,
            files=[str(f) for f in files],
            files_bytes=fbytes,
            files_mb=(fbytes / MIB) if fbytes is not None else None,
        )


class Backend(Protocol):
    """What each runtime module (``mcval.backends.<runtime>_backend``) declares."""

    RUNTIME: str
    OWN_THREAD_POOL: bool
    """Whether the runtime computes on a thread pool of its own (ONNX Runtime, OpenVINO,
    llama.cpp) rather than on torch's (TorchScript); the measuring child then drops torch
    to one thread (``mcval.measure.device_job.quiet_torch_threads``)."""

    def convert(self, request: ConvertRequest) -> RuntimeModel: ...


class RuntimeModel:
    """A converted model as the tasks see it: ``config``, ``dtype`` and a call returning
    an object with ``.logits`` (a float32 torch tensor on CPU).

    ``inputs`` are the graph's input names: the tasks pass whatever their tokenizer made
    (``token_type_ids`` too), and only the names the graph takes are fed to it.
    """

    dtype = torch.float32

    def __init__(
        self,
        runtime: str,
        run: RunFn,
        inputs: Sequence[str],
        config: Any,
        size: SizeReport,
        notes: Sequence[str] = (),
        keep: Any = None,
        *,
        torch_inputs: bool = False,
    ) -> None:
        self.runtime = runtime
        self.run = run
        self.input_names = tuple(inputs)
        self.config = config
        self.size = size
        self.notes = list(notes)
        self.inspection: Any = None
        """``ModelInspection`` of the graph's stored tensors (``WeightCount.inspection``)."""
        self._keep = keep  # session / compiled model / module the ``run`` closure needs
        self.torch_inputs = torch_inputs  # TorchScript: tensors stay on their device
        self.cache: CacheLayout | None = None
        """The graph's KV-cache inputs/outputs (causal LMs); ``forward`` feeds them empty."""
        self.decode: DecodeFn | None = None
        """Set with ``cache``: the generation benchmark's step (``mcval.backends.decoding``)."""
        self.generation_config: Any = None
        """The checkpoint's generation settings (its end-of-sequence ids), as in PyTorch."""
        self.min_warmup_calls = 0
        """Warm-up calls this runtime needs before its calls are steady (the protocol's
        ``warmup_calls`` is raised to it): TorchScript compiles during its first calls."""

    def forward(self, **inputs: Any) -> SimpleNamespace:
        """One call on the runtime; drops inputs the graph does not take."""
        convert = (lambda v: v) if self.torch_inputs else _as_numpy
        feed = {k: convert(v) for k, v in inputs.items() if k in self.input_names}
        if self.cache is not None and not self.torch_inputs:
            feed = {**self.cache.empty(np.shape(feed["input_ids"])[0]), **feed}
        if "position_ids" in self.input_names and "position_ids" not in feed:
            mask = _as_numpy(inputs["attention_mask"])  # a whole sequence (Optimum's graphs)
            feed["position_ids"] = convert(torch.from_numpy(positions(mask, mask.shape[1])))
        if "token_type_ids" in self.input_names and "token_type_ids" not in feed:
            # What transformers does when a task gives none (one-segment inputs): zeros.
            ids = inputs["input_ids"]
            feed["token_type_ids"] = convert(torch.zeros_like(torch.as_tensor(ids)))
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise ValueError(f"the {self.runtime} model needs input(s) {', '.join(missing)}")
        logits = self.run(feed)
        if isinstance(logits, torch.Tensor):
            return SimpleNamespace(logits=logits)
        return SimpleNamespace(logits=torch.from_numpy(np.ascontiguousarray(logits)).float())

    __call__ = forward

    def with_cache(self, layout: CacheLayout | None, decode: DecodeFn | None) -> RuntimeModel:
        """Attach the graph's KV cache (None: the graph has none; generation then re-runs
        the whole sequence per token, and says so)."""
        self.cache, self.decode = layout, (decode if layout is not None else None)
        if layout is not None:
            self.notes.append(
                f"KV cache: {layout.layers} layers of past_key_values in, present out "
                "(generation decodes one token per call)"
            )
        return self

    def eval(self) -> RuntimeModel:
        return self

    def parameters(self) -> Any:
        return iter(())


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def first_line(exc: BaseException) -> str:
    """An exception's first line (at most 160 characters), for a conversion's fallback note."""
    return (str(exc).strip().splitlines() or [""])[0][:160]


def graph_inputs(task: str, accepted: set[str] | None) -> list[str]:
    """The inputs a task's export takes (``token_type_ids`` only if the model has them)."""
    if task == "image-classification":
        return ["pixel_values"]
    names = ["input_ids", "attention_mask"]
    if task != "causal-lm" and accepted is not None and "token_type_ids" in accepted:
        names.append("token_type_ids")
    return names


class LogitsOnly(torch.nn.Module):
    """The exported function: named tensor inputs in, logits out (no cache, no dicts), so
    every runtime gets the same single-output graph."""

    def __init__(self, model: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.causal = bool(getattr(getattr(model, "config", None), "is_decoder", False)) or (
            "CausalLM" in type(model).__name__
        )

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        kwargs: dict[str, Any] = dict(zip(self.names, args, strict=True))
        if self.causal:
            kwargs["use_cache"] = False
        out = self.model(**kwargs)
        return out if isinstance(out, torch.Tensor) else out.logits


def example_inputs(task: str, names: Sequence[str], config: Any) -> tuple[torch.Tensor, ...]:
    """Small example tensors to trace/export with (batch 2, 8 tokens or a 3×S×S image)."""
    if task == "image-classification":
        size = int(getattr(config, "image_size", 224) or 224)
        if isinstance(getattr(config, "image_size", None), (list, tuple)):
            size = int(config.image_size[-1])
        channels = int(getattr(config, "num_channels", 3) or 3)
        return (torch.randn(2, channels, size, size),)
    generator = torch.Generator().manual_seed(0)
    vocab = int(getattr(config, "vocab_size", 100) or 100)
    ids = torch.randint(3, max(4, vocab), (2, 8), generator=generator)
    tensors = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    return tuple(tensors[n] for n in names)


def dynamic_axes(task: str, names: Sequence[str]) -> dict[str, dict[int, str]]:
    """Batch (and sequence) dimensions left free in the exported graph."""
    if task == "image-classification":
        return {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch", 1: "sequence"} if task in _PER_TOKEN else {0: "batch"}
    return axes


_PER_TOKEN = ("causal-lm", "token-classification")


@dataclass
class ConvertRequest:
    """What a backend needs to convert a loaded PyTorch model (after the PyTorch steps)."""

    task: str
    model: Any
    """The ``torch.nn.Module`` (or None when ``artefact`` ships the converted model)."""
    config: Any
    accepted: set[str] | None
    workdir: Path
    threads: int
    device: str
    steps: Sequence[Any] = ()
    """The runtime's own recipe steps (``mcval.models.recipe_params``), in order."""
    calibration: Callable[[int], list[dict[str, np.ndarray]]] | None = None
    """``samples`` → feeds of evaluation rows (static quantization only)."""
    artefact: Path | None = None
    model_dir: Path | None = None
    max_bytes: int | None = None
    hub_snapshot: bool = False
    """``model_dir`` is a hub snapshot: its files are huggingface_hub's links into the blob
    store, so the artefact's files are confined by the paths they name, not link targets."""
    submission: Any = None
    """The ``Submission`` (llama.cpp sizes its context to the sequences it will run)."""


def feeds_of(batches: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """Calibration feeds restricted to the graph's inputs, as numpy."""
    return [{n: _as_numpy(b[n]) for n in names if n in b} for b in batches]


_PAST = re.compile(r"past_key_values\.(\d+)\.(key|value)")
_PRESENT = "present.{}.{}"


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    """Input and output names of a decoder graph with a KV cache: Optimum's convention
    (``past_key_values.0.key`` in, ``present.0.key`` out), so a graph a student exported with
    Optimum and one mcval exports are driven by the same code."""
    kinds = [(i, kv) for i in range(layers) for kv in ("key", "value")]
    past = [f"past_key_values.{i}.{kv}" for i, kv in kinds]
    return past, [_PRESENT.format(i, kv) for i, kv in kinds]


@dataclass(frozen=True)
class CacheLayout:
    """A decoder graph's KV cache: which inputs take the past and which outputs return the
    present (``[batch, heads, sequence, head_dim]``), and whether it takes ``position_ids``."""

    past: tuple[str, ...]
    present: tuple[str, ...]
    heads: tuple[int, ...]
    head_dims: tuple[int, ...]
    dtype: np.dtype
    position_ids: bool = False

    @property
    def layers(self) -> int:
        return len(self.past) // 2

    def empty(self, batch: int) -> dict[str, np.ndarray]:
        """The past of a first call: zero tokens long."""
        return {
            name: np.zeros((batch, heads, 0, dim), dtype=self.dtype)
            for name, heads, dim in zip(self.past, self.heads, self.head_dims, strict=True)
        }

    def complete(self, feed: dict[str, Any]) -> dict[str, Any]:
        """A whole-sequence feed (calibration rows): an empty past, and positions from the
        attention mask when the graph takes them."""
        ids = np.asarray(feed["input_ids"])
        out = {**self.empty(ids.shape[0]), **feed}
        if self.position_ids and "position_ids" not in feed:
            out["position_ids"] = positions(np.asarray(feed["attention_mask"]), ids.shape[1])
        return out

    @classmethod
    def find(
        cls,
        inputs: Mapping[str, tuple[Sequence[Any], Any]],
        outputs: Sequence[str],
        config: Any,
    ) -> CacheLayout | None:
        """The layout of a graph from its ports (``name → (shape, numpy dtype)``; symbolic
        dimensions as anything not an int), or None when it has no complete KV cache: every
        ``past_key_values.N.key|value`` input needs its ``present.N.key|value`` output."""
        found = sorted(
            (int(m.group(1)), m.group(2) != "key", name)
            for name in inputs
            if (m := _PAST.fullmatch(name))
        )
        if not found:
            return None
        present = [_PRESENT.format(i, "value" if v else "key") for i, v, _ in found]
        if any(p not in outputs for p in present) or "logits" not in outputs:
            return None
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        attn_heads = int(getattr(text, "num_attention_heads", 0) or 0)
        kv_heads = int(getattr(text, "num_key_value_heads", 0) or attn_heads)
        head_dim = int(
            getattr(text, "head_dim", 0)
            or (int(getattr(text, "hidden_size", 0) or 0) // max(1, attn_heads))
        )
        heads, dims = [], []
        for _, _, name in found:
            shape = list(inputs[name][0])
            if len(shape) != 4:
                return None
            heads.append(shape[1] if isinstance(shape[1], int) and shape[1] > 0 else kv_heads)
            dims.append(shape[3] if isinstance(shape[3], int) and shape[3] > 0 else head_dim)
        if min(heads) <= 0 or min(dims) <= 0:
            return None
        return cls(
            past=tuple(n for _, _, n in found),
            present=tuple(present),
            heads=tuple(heads),
            head_dims=tuple(dims),
            dtype=np.dtype(inputs[found[0][2]][1]),
            position_ids="position_ids" in inputs,
        )


def positions(mask: np.ndarray, length: int) -> np.ndarray:
    """``position_ids`` of the last ``length`` tokens from the attention mask, as
    transformers' ``generate`` computes them (padding at position 1)."""
    pos = np.cumsum(mask, axis=-1, dtype=np.int64) - 1
    pos[mask == 0] = 1
    return pos[:, -length:]


class DecoderWithCache(torch.nn.Module):
    """The exported function of a causal LM with a KV cache: ``input_ids``,
    ``attention_mask`` (past + new tokens) and the flat past (key, value per layer,
    ``[batch, kv_heads, past, head_dim]``, possibly zero long) in; logits and the flat
    present out. One graph serves the prefill (empty past), every decoding step, and the
    perplexity windows, so the row's weights, size and quality are those of the graph
    that generates.

    The cache is a transformers ``DynamicCache`` whose layers are given the past tensors
    directly (its lazy start would concatenate onto a 1-D empty tensor, which OpenVINO's
    converter cannot type)."""

    def __init__(self, model: torch.nn.Module, layers: int) -> None:
        super().__init__()
        import inspect

        self.model = model
        self.layers = layers
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for layer, key, value in zip(cache.layers, past[0::2], past[1::2], strict=True):
            layer.lazy_initialization(key, value)
            layer.keys, layer.values = key, value
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=True,
            **{self.cache_arg: cache},
        )
        present = getattr(out, "cache", None) or out.past_key_values
        flat: list[torch.Tensor] = []
        for layer in present.layers:
            flat += [layer.keys, layer.values]
        return (out.logits, *flat)


def decoder_layers(config: Any) -> int:
    """Decoder layers of a causal LM's config (``n_layer`` for GPT-2 via its attribute map)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.num_hidden_layers)


def cache_example(config: Any, layers: int) -> tuple[torch.Tensor, ...]:
    """Example inputs to export ``DecoderWithCache`` with: batch 2, 3 new tokens after 4
    past ones (distinct sizes, so the exporter keeps the dimensions apart)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", 0) or heads)
    head_dim = int(getattr(text, "head_dim", 0) or text.hidden_size // heads)
    generator = torch.Generator().manual_seed(0)
    vocab = int(getattr(text, "vocab_size", 100) or 100)
    ids = torch.randint(3, max(4, vocab), (2, 3), generator=generator)
    mask = torch.ones((2, 7), dtype=torch.long)
    past = [torch.randn(2, kv_heads, 4, head_dim, generator=generator) for _ in range(2 * layers)]
    return (ids, mask, *past)


FEEDABLE = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "pixel_values")
"""Graph inputs mcval can feed, besides a KV cache's ``past_key_values.N.key|value``."""


def check_feedable(
    names: Sequence[str], layout: CacheLayout | None, file: str, stateful: bool = False
) -> None:
    """Refuse, at load and with the fix, a shipped graph whose inputs mcval cannot feed
    (rather than failing inside the timed call): a stateful OpenVINO LM (Optimum Intel's
    default, its cache inside the model, fed ``beam_idx``), or inputs of unknown meaning."""
    from mcval.models.errors import LoadError

    field = ("model", "file")
    if stateful or "beam_idx" in names:
        raise LoadError(
            f"model.file {file} is a stateful OpenVINO model (its KV cache is internal state, "
            "fed beam_idx), which mcval does not drive; export it stateless "
            "(optimum-cli export openvino --disable-stateful), or leave model.file out and "
            "the runner converts the checkpoint",
            field,
        )
    known = set(FEEDABLE) | set(layout.past if layout is not None else ())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LoadError(
            f"model.file {file} takes input(s) {', '.join(unknown)} that mcval cannot feed; "
            f"it feeds {', '.join(FEEDABLE)} and a KV cache named past_key_values.N.key / "
            "past_key_values.N.value with outputs present.N.key / present.N.value (Optimum's "
            "names)",
            field,
        )
