"""The one interface every runtime sits behind, and the model object the tasks drive.

The task handlers call ``model(**inputs).logits`` and read ``model.config``; a
``RuntimeModel`` gives them exactly that for any runtime (ONNX Runtime, OpenVINO,
TorchScript), so quality and the timed call are computed by the same task code on every
runtime, and only ``run`` (numpy or torch in, logits out) is the runtime's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from mcval.measure.size import MIB, SizeReport

RunFn = Callable[[dict[str, Any]], Any]


@dataclass
class WeightCount:
    """Bytes of distinct weight tensors of a converted model, by dtype (independent of the
    file sizes, see docs/measurement.md)."""

    total: int = 0
    tensors: int = 0
    elements: int = 0
    by_dtype: dict[str, int] = field(default_factory=dict)

    def add(self, dtype: str, nbytes: int, elements: int) -> None:
        self.total += nbytes
        self.tensors += 1
        self.elements += elements
        self.by_dtype[dtype] = self.by_dtype.get(dtype, 0) + nbytes

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
        self._keep = keep  # session / compiled model / module the ``run`` closure needs
        self.torch_inputs = torch_inputs  # TorchScript: tensors stay on their device

    def forward(self, **inputs: Any) -> SimpleNamespace:
        """One call on the runtime; drops inputs the graph does not take."""
        convert = (lambda v: v) if self.torch_inputs else _as_numpy
        feed = {k: convert(v) for k, v in inputs.items() if k in self.input_names}
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
    submission: Any = None
    """The ``Submission`` (llama.cpp sizes its context to the sequences it will run)."""


def feeds_of(batches: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """Calibration feeds restricted to the graph's inputs, as numpy."""
    return [{n: _as_numpy(b[n]) for n in names if n in b} for b in batches]
