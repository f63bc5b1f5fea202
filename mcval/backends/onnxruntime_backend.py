"""ONNX Runtime: export the PyTorch model (or vet a shipped ``.onnx``), quantize, run.

Export is ``torch.onnx.export`` of ``LogitsOnly`` (logits out, no KV cache) with the dynamo
exporter and external data; when dynamo cannot export an architecture the TorchScript-based
exporter is used and the note says so. Sessions never register custom-op libraries: a
shipped graph is vetted first (``onnx_safety``), and the session gets ``threads`` intra-op
threads and one inter-op thread (sequential execution), as torch does.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mcval.backends.base import (
    ConvertRequest,
    LogitsOnly,
    RuntimeModel,
    WeightCount,
    dynamic_axes,
    example_inputs,
    feeds_of,
    graph_inputs,
)
from mcval.models.errors import NotApplicableError, RecipeError

RUNTIME = "onnxruntime"
OPSET = 18


def export_onnx(request: ConvertRequest, path: Path) -> tuple[list[str], list[str]]:
    """Export ``request.model`` to ``path``; returns the input names and notes."""
    import torch

    names = graph_inputs(request.task, request.accepted)
    wrapper = LogitsOnly(request.model, names).eval()
    args = example_inputs(request.task, names, request.config)
    common = {"input_names": names, "output_names": ["logits"]}
    notes: list[str] = []
    quiet = io.StringIO()
    with (
        torch.inference_mode(False),
        torch.no_grad(),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(quiet),
    ):
        warnings.simplefilter("ignore")
        try:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
            shapes = tuple(
                {0: batch} if request.task == "image-classification" else {0: batch, 1: seq}
                for _ in names
            )  # one entry per name of the ``*args`` parameter
            torch.onnx.export(
                wrapper,
                args,
                str(path),
                dynamo=True,
                external_data=True,
                dynamic_shapes=(shapes,),
                opset_version=OPSET,
                optimize=True,
                **common,
            )
        except Exception as exc:  # the dynamo exporter fails on some architectures
            for leftover in (path, path.with_name(path.name + ".data")):
                leftover.unlink(missing_ok=True)
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            notes.append(
                f"exported with the TorchScript-based ONNX exporter (dynamo failed: {first})"
            )
            axes = dynamic_axes(request.task, names)
            torch.onnx.export(
                wrapper,
                args,
                str(path),
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
                **common,
            )
    return names, notes


def onnx_weight_count(path: Path) -> WeightCount:
    """Bytes of all distinct initializers (external data included) at their stored width,
    counted from the graph's tensor headers, not from file sizes (docs/measurement.md)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    count = WeightCount()
    seen: set[str] = set()
    tensors = [*model.graph.initializer]
    for node in model.graph.node:
        if node.op_type == "Constant":
            tensors += [a.t for a in node.attribute if a.HasField("t")]
    for tensor in tensors:
        key = tensor.name or f"#{id(tensor)}"
        if key in seen:
            continue
        seen.add(key)
        elements = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
        bits = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4}.get(tensor.data_type)
        nbytes = (elements * bits + 7) // 8 if bits else elements * dtype.itemsize
        count.add(onnx.TensorProto.DataType.Name(tensor.data_type).lower(), nbytes, elements)
    return count


def session(path: Path, threads: int, device: str) -> Any:
    """An ``InferenceSession`` with the measurement's thread settings and no extensions."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise NotApplicableError(
                "ONNX Runtime on GPU needs the onnxruntime-gpu package (CUDA provider)"
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def skipped_nodes(path: Path, patterns: list[str]) -> list[str]:
    """Nodes of skipped modules, by the PyTorch module path the exporter kept: the dynamo
    exporter's ``pkg.torch.onnx.name_scopes`` metadata (its optimizer renames folded
    weights), else the weight initializer's name (``model.layers.0.mlp.down_proj.weight``).
    The same globs as the PyTorch steps' ``skip`` select them."""
    import ast
    import fnmatch

    import onnx

    if not patterns:
        return []
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    found = []
    for node in graph.node:
        modules = [n.removesuffix(".weight") for n in node.input if n in weights]
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                modules += [str(m) for m in ast.literal_eval(prop.value)]
        # LogitsOnly holds the model as ``model``: its paths start with ``model.``.
        modules += [m.removeprefix("model.") for m in modules]
        if any(fnmatch.fnmatchcase(m, p) for m in modules for p in patterns):
            found.append(node.name)
    return found


def quantize(path: Path, step: Any, params: Any, request: ConvertRequest, names: list[str]) -> Path:
    """Apply one ``onnx_quantize_*`` step; returns the quantized graph's path."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    target = path.with_name(f"{path.stem}.{step.name}.onnx")
    if step.name == "onnx_quantize_dynamic":
        quantize_dynamic(
            str(path),
            str(target),
            weight_type=QuantType.QInt8 if params.weight_type == "qint8" else QuantType.QUInt8,
            per_channel=params.per_channel,
            nodes_to_exclude=skipped_nodes(path, params.skip),
            use_external_data_format=True,
        )
        return target
    if request.calibration is None:
        raise RecipeError("onnx_quantize_static needs evaluation rows to calibrate on", 0)
    feeds = feeds_of(request.calibration(params.samples), names)
    if not feeds:
        raise RecipeError("onnx_quantize_static: the evaluation slice gave no rows", 0)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    quantize_static(
        str(path),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=params.per_channel,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        calibrate_method=methods[params.method],
        nodes_to_exclude=skipped_nodes(path, params.skip),
        use_external_data_format=True,
    )
    return target


def convert(request: ConvertRequest) -> RuntimeModel:
    """Export (or vet the shipped graph), apply the runtime's steps, open a session."""
    from mcval.models.recipe_params import STEPS

    notes: list[str] = []
    if request.artefact is not None:
        import onnx

        from mcval.backends.onnx_safety import vet_onnx

        assert request.model_dir is not None and request.max_bytes is not None
        vet_onnx(request.artefact, request.model_dir, request.max_bytes)
        path = request.artefact
        graph = onnx.load(str(path), load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        names = [i.name for i in graph.input if i.name not in initializers]
    else:
        path = request.workdir / "model.onnx"
        names, notes = export_onnx(request, path)
    for step in request.steps:
        params = STEPS[step.name].params.model_validate(step.params or {})
        path = quantize(path, step, params, request, names)
        notes.append(f"{step.name} applied")
    sess = session(path, request.threads, request.device)
    names = [i.name for i in sess.get_inputs()]
    count = onnx_weight_count(path)
    files = [path, *[f for f in path.parent.glob(path.name + ".data")]]
    if request.artefact is not None:
        import onnx

        from mcval.backends.onnx_safety import external_files

        files = [
            path,
            *sorted(external_files(onnx.load(str(path), load_external_data=False), path.parent)),
        ]

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        return sess.run(["logits"] if _has_logits(sess) else None, feed)[0]

    return RuntimeModel(RUNTIME, run, names, request.config, count.report(files), notes, sess)


def _has_logits(sess: Any) -> bool:
    return any(o.name == "logits" for o in sess.get_outputs())
