"""OpenVINO: convert the PyTorch model (or read a shipped IR), compress weights, compile.

``openvino.convert_model`` takes the ``LogitsOnly`` module directly; the model is saved as
IR without fp16 compression (``compress_to_fp16=False``, else fp32 rows would be halved
silently) and read back, so a converted model and a shipped ``.xml``/``.bin`` are sized
and compiled the same way. No extension (custom op library) is ever added to the Core.
Compiled for the CPU with ``INFERENCE_NUM_THREADS = threads``, one stream, the latency
hint and f32 inference precision (the CPU plugin would otherwise run bf16 on CPUs with
AMX, changing quality without the submission saying so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mcval.backends.base import (
    ConvertRequest,
    LogitsOnly,
    RuntimeModel,
    WeightCount,
    example_inputs,
    graph_inputs,
)
from mcval.models.errors import NotApplicableError
from mcval.models.safety import UnsafeModelError

RUNTIME = "openvino"
FILE_FIELD = ("model", "file")


def compile_config(threads: int) -> dict[str, Any]:
    """The properties every OpenVINO measurement compiles with (bench uses the same)."""
    return {
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    }


def constant_weight_count(model: Any) -> WeightCount:
    """Bytes of all Constant nodes of the model (int4/u4 at 4 bits), from their element type
    and shape, not from the .bin size (docs/measurement.md)."""
    count = WeightCount()
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        etype = op.get_output_element_type(0)
        elements = int(np.prod(list(op.get_output_shape(0)))) if op.get_output_shape(0) else 1
        nbytes = (elements * etype.bitwidth + 7) // 8
        count.add(etype.get_type_name(), nbytes, elements)
    return count


def vet_ir(xml: Path, model_dir: Path, max_bytes: int) -> list[Path]:
    """A shipped IR: the .xml and its .bin inside the model directory, within the limit."""
    bin_path = xml.with_suffix(".bin")
    root = model_dir.resolve()
    for f in (xml, bin_path):
        if not f.resolve().is_relative_to(root):
            raise UnsafeModelError(f"{f.name} resolves outside the model directory", FILE_FIELD)
    if not bin_path.is_file():
        raise UnsafeModelError(
            f"the OpenVINO IR needs {bin_path.name} beside {xml.name}", FILE_FIELD
        )
    total = xml.stat().st_size + bin_path.stat().st_size
    if total > max_bytes:
        raise UnsafeModelError(
            f"the OpenVINO IR is {total / 1e9:.2f} GB, over the limit of {max_bytes / 1e9:.2f} GB",
            FILE_FIELD,
        )
    return [xml, bin_path]


def compress(model: Any, params: Any) -> Any:
    """``openvino_compress_weights`` with NNCF (data-free). ``skip`` globs match the
    PyTorch module path the converter keeps in each node's name
    (``__module.model.layers.0.mlp.down_proj/aten::linear/MatMul``)."""
    import fnmatch

    import nncf

    patterns = [".*" + fnmatch.translate(p).removesuffix(r"\Z") + ".*" for p in params.skip]
    ignored = nncf.IgnoredScope(patterns=patterns, validate=False) if patterns else None
    if params.mode == "int8":
        return nncf.compress_weights(
            model, mode=nncf.CompressWeightsMode.INT8_ASYM, ignored_scope=ignored
        )
    return nncf.compress_weights(
        model,
        mode=nncf.CompressWeightsMode.INT4_SYM,
        group_size=params.group_size,
        ratio=params.ratio,
        ignored_scope=ignored,
    )


def convert(request: ConvertRequest) -> RuntimeModel:
    """Convert (or read the shipped IR), apply the steps, compile for the CPU."""
    import openvino as ov

    from mcval.models.recipe_params import STEPS

    if request.device != "cpu":
        raise NotApplicableError("OpenVINO is measured on the CPU only (no GPU plugin here)")
    core = ov.Core()
    notes: list[str] = []
    if request.artefact is not None:
        assert request.model_dir is not None and request.max_bytes is not None
        files = vet_ir(request.artefact, request.model_dir, request.max_bytes)
        model = core.read_model(str(files[0]), str(files[1]))
    else:
        import torch

        names = graph_inputs(request.task, request.accepted)
        wrapper = LogitsOnly(request.model, names).eval()
        args = example_inputs(request.task, names, request.config)
        with torch.inference_mode(False), torch.no_grad():
            model = ov.convert_model(wrapper, example_input=args)
        for port, name in zip(model.inputs, names, strict=True):
            port.get_tensor().set_names({name})
        model.outputs[0].get_tensor().set_names({"logits"})
        if request.task == "image-classification":
            model.reshape(
                {name: _free_batch(port) for port, name in zip(model.inputs, names, strict=True)}
            )
        else:
            model.reshape({name: [-1, -1] for name in names})
    for step in request.steps:
        params = STEPS[step.name].params.model_validate(step.params or {})
        model = compress(model, params)
        notes.append(f"{step.name} ({params.mode}) applied")
    if request.artefact is None or request.steps:
        xml = request.workdir / "model.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        files = [xml, xml.with_suffix(".bin")]
        model = core.read_model(str(xml))
    count = constant_weight_count(model)
    names = [next(iter(p.get_names())) for p in model.inputs]
    compiled = core.compile_model(model, "CPU", compile_config(request.threads))
    request_ = compiled.create_infer_request()
    out = compiled.outputs[0]

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        return request_.infer(feed, share_inputs=True)[out]

    return RuntimeModel(
        RUNTIME, run, names, request.config, count.report(files), notes, (compiled, request_)
    )


def _free_batch(port: Any) -> list[int]:
    shape = [int(d.get_length()) if d.is_static else -1 for d in port.get_partial_shape()]
    return [-1, *shape[1:]]
