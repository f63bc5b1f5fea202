"""OpenVINO: convert the PyTorch model (or read a shipped IR), compress weights, compile.

``openvino.convert_model`` takes the ``LogitsOnly`` module directly; the model is saved as
IR without fp16 compression (``compress_to_fp16=False``, else fp32 rows would be halved
silently) and read back, so a converted model and a shipped ``.xml``/``.bin`` are sized
and compiled the same way. No extension (custom op library) is ever added to the Core.
Compiled for the CPU with ``INFERENCE_NUM_THREADS = threads``, one stream, the latency
hint and f32 inference precision (the CPU plugin would otherwise run bf16 on CPUs with
AMX, changing quality without the submission saying so).

A causal LM is converted with its KV cache (``DecoderWithCache``, the same function the
ONNX export takes): stateless, past key/values as inputs and present as outputs, so the
generation benchmark decodes one token per call as on ONNX Runtime; when the architecture
cannot be converted that way, the logits-only model is used and the notes say so.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mcval.backends.base import (
    CacheLayout,
    ConvertRequest,
    DecoderWithCache,
    LogitsOnly,
    RuntimeModel,
    WeightCount,
    cache_example,
    cache_names,
    check_feedable,
    decoder_layers,
    example_inputs,
    first_line,
    graph_inputs,
    positions,
)
from mcval.models.errors import NotApplicableError
from mcval.models.safety import UnsafeModelError

RUNTIME = "openvino"
OWN_THREAD_POOL = True  # the CPU plugin's ``INFERENCE_NUM_THREADS``, not torch's
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


def vet_ir(xml: Path, model_dir: Path, max_bytes: int, *, follow_links: bool = True) -> list[Path]:
    """A shipped IR: the .xml and its .bin inside the model directory, within the limit
    (``follow_links=False``: a hub snapshot, whose files link into the blob store)."""
    import os

    bin_path = xml.with_suffix(".bin")
    root = model_dir.resolve() if follow_links else Path(os.path.abspath(model_dir))
    for f in (xml, bin_path):
        where = f.resolve() if follow_links else Path(os.path.abspath(f))
        if not where.is_relative_to(root):
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
        files = vet_ir(
            request.artefact,
            request.model_dir,
            request.max_bytes,
            follow_links=not request.hub_snapshot,
        )
        model = core.read_model(str(files[0]), str(files[1]))
        check_feedable(
            [p.get_any_name() for p in model.inputs],
            ir_cache_layout(model, request.config),
            request.artefact.name,
            stateful=bool(model.get_variables()),
        )
    else:
        model = None
        if request.task == "causal-lm":
            try:
                model = convert_with_cache(request)
            except Exception as exc:  # an architecture the cache wrapper cannot convert
                notes.append(
                    "converted without a KV cache (generation re-runs the whole sequence per "
                    f"token): {first_line(exc)}"
                )
        if model is None:
            model = convert_logits_only(request)
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
    layout = ir_cache_layout(model, request.config)
    compiled = core.compile_model(model, "CPU", compile_config(request.threads))
    request_ = compiled.create_infer_request()
    out = compiled.output("logits") if layout is not None else compiled.outputs[0]

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        return request_.infer(feed, share_inputs=True)[out]

    converted = RuntimeModel(
        RUNTIME, run, names, request.config, count.report(files), notes, (compiled, request_)
    )
    converted.inspection = count.inspection("openvino")
    return converted.with_cache(layout, decoder(compiled, request_, layout) if layout else None)


def convert_logits_only(request: ConvertRequest) -> Any:
    """``LogitsOnly`` converted: named inputs, ``logits`` out, free batch (and sequence)."""
    import openvino as ov
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
    return model


def convert_with_cache(request: ConvertRequest) -> Any:
    """A causal LM as ``DecoderWithCache``: Optimum's port names, batch and lengths free,
    each past ``[batch, kv_heads, past, head_dim]``."""
    import openvino as ov
    import torch

    layers = decoder_layers(request.config)
    past, present = cache_names(layers)
    args = cache_example(request.config, layers)
    wrapper = DecoderWithCache(request.model, layers).eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings on every architecture
        model = ov.convert_model(wrapper, example_input=args)
    names = ["input_ids", "attention_mask", *past]
    for port, name in zip(model.inputs, names, strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(model.outputs, ["logits", *present], strict=True):
        port.get_tensor().set_names({name})
    shapes: dict[str, list[int]] = {"input_ids": [-1, -1], "attention_mask": [-1, -1]}
    for name, example in zip(past, args[2:], strict=True):
        shapes[name] = [-1, int(example.shape[1]), -1, int(example.shape[3])]
    model.reshape(shapes)
    return model


def ir_cache_layout(model: Any, config: Any) -> CacheLayout | None:
    """The KV cache of a read or converted model (None: logits only, or a stateful model
    whose cache is internal state, which mcval does not drive)."""
    inputs = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        dims = (
            [int(d.get_length()) if d.is_static else None for d in shape]
            if shape.rank.is_static
            else []
        )
        inputs[port.get_any_name()] = (dims, port.get_element_type().to_dtype())
    outputs = [name for port in model.outputs for name in port.get_names()]
    return CacheLayout.find(inputs, outputs, config)


def decoder(compiled: Any, request_: Any, layout: CacheLayout) -> Any:
    """One generation step: the present comes back as numpy arrays (a stateless model's
    outputs are copied out of the request, since the next call reuses its buffers) and is
    fed as the next call's past; only the last position's logits are kept."""
    logits_port = compiled.output("logits")
    present_ports = [compiled.output(name) for name in layout.present]

    def decode(ids: np.ndarray, mask: np.ndarray, past: Any) -> tuple[np.ndarray, Any]:
        feed: dict[str, np.ndarray] = {"input_ids": ids, "attention_mask": mask}
        if layout.position_ids:
            feed["position_ids"] = positions(mask, ids.shape[1])
        feed.update(past if past is not None else layout.empty(ids.shape[0]))
        result = request_.infer(feed, share_inputs=True)
        present = {
            name: result[port] for name, port in zip(layout.past, present_ports, strict=True)
        }
        return result[logits_port][:, -1, :], present

    return decode


def _free_batch(port: Any) -> list[int]:
    shape = [int(d.get_length()) if d.is_static else -1 for d in port.get_partial_shape()]
    return [-1, *shape[1:]]
