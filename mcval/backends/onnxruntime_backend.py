"""ONNX Runtime: export the PyTorch model (or vet a shipped ``.onnx``), quantize, run.

Export is ``torch.onnx.export`` of ``LogitsOnly`` (logits out) with the dynamo exporter and
external data; when dynamo cannot export an architecture the TorchScript-based exporter is
used and the note says so. A causal LM is exported with its KV cache (``DecoderWithCache``:
past key/values in, present out) so generation decodes one token per call; when that
export fails, the logits-only graph is used and generation re-runs the whole sequence per
token, which the row's notes say. Sessions never register custom-op libraries: a
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
    dynamic_axes,
    example_inputs,
    feeds_of,
    first_line,
    graph_inputs,
    positions,
)
from mcval.models.errors import NotApplicableError, RecipeError

RUNTIME = "onnxruntime"
OWN_THREAD_POOL = True  # the session's intra-op pool (``session``), not torch's
OPSET = 18


def export_with_cache(request: ConvertRequest, path: Path) -> list[str]:
    """Export a causal LM as ``DecoderWithCache`` (dynamo exporter); returns input names."""
    import torch

    layers = decoder_layers(request.config)
    past, present = cache_names(layers)
    names = ["input_ids", "attention_mask", *past]
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    total, cached = torch.export.Dim("total"), torch.export.Dim("past_sequence")
    shapes = ({0: batch, 1: seq}, {0: batch, 1: total}, tuple({0: batch, 2: cached} for _ in past))
    wrapper = DecoderWithCache(request.model, layers).eval()
    with _quiet(), torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            wrapper,
            cache_example(request.config, layers),
            str(path),
            dynamo=True,
            external_data=True,
            dynamic_shapes=shapes,
            opset_version=OPSET,
            optimize=True,
            input_names=names,
            output_names=["logits", *present],
        )
    return names


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters print progress and warn on every architecture: keep the terminal clean."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _remove_partial_export(path: Path) -> None:
    """Delete what a failed export left at ``path`` and its ``.data`` sidecar.

    An exporter that fails part-way may already have written the graph or its
    external-data file. The fallback exporter writes under the same name, so the
    leftovers must go first: otherwise a stale sidecar would sit beside the new graph
    and be counted in its size on disk.
    """
    for leftover in (path, path.with_name(path.name + ".data")):
        leftover.unlink(missing_ok=True)


def export_onnx(request: ConvertRequest, path: Path) -> tuple[list[str], list[str]]:
    """Export ``request.model`` to ``path``; returns the input names and notes."""
    import torch

    notes: list[str] = []
    if request.task == "causal-lm":
        try:
            return export_with_cache(request, path), notes
        except Exception as exc:  # an architecture the cache wrapper cannot export
            _remove_partial_export(path)
            notes.append(
                "exported without a KV cache (generation re-runs the whole sequence per "
                f"token): {first_line(exc)}"
            )
    names = graph_inputs(request.task, request.accepted)
    wrapper = LogitsOnly(request.model, names).eval()
    args = example_inputs(request.task, names, request.config)
    common = {"input_names": names, "output_names": ["logits"]}
    with _quiet(), torch.inference_mode(False), torch.no_grad():
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
            _remove_partial_export(path)
            notes.append(
                "exported with the TorchScript-based ONNX exporter "
                f"(dynamo failed: {first_line(exc)})"
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

    # Into the work directory: never beside a shipped graph (the repository, the hub cache).
    target = request.workdir / f"{path.stem}.{step.name}.onnx"
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
    layout = onnx_cache_layout(path, request.config)
    if layout is not None:  # a decoder with a KV cache calibrates on whole rows: empty past
        feeds = [layout.complete(f) for f in feeds]
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
        shipped = vet_onnx(
            request.artefact,
            request.model_dir,
            request.max_bytes,
            follow_links=not request.hub_snapshot,
        )
        path = request.artefact
        graph = onnx.load(str(path), load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        names = [i.name for i in graph.input if i.name not in initializers]
        check_feedable(names, onnx_cache_layout(path, request.config), path.name)
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
    if request.artefact is not None and not request.steps:
        files = shipped
    elif request.artefact is not None:  # quantized into the work directory
        import onnx

        from mcval.backends.onnx_safety import external_files

        files = [
            path,
            *sorted(external_files(onnx.load(str(path), load_external_data=False), path.parent)),
        ]

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        return sess.run(["logits"] if _has_logits(sess) else None, feed)[0]

    model = RuntimeModel(RUNTIME, run, names, request.config, count.report(files), notes, sess)
    model.inspection = count.inspection("onnx")
    layout = session_cache_layout(sess, request.config)
    return model.with_cache(layout, decoder(sess, layout, request.device) if layout else None)


_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(bfloat16)": np.float32,  # no numpy bfloat16: such a graph's cache cannot be fed
    "tensor(double)": np.float64,
}


def session_cache_layout(sess: Any, config: Any) -> CacheLayout | None:
    """The KV cache of an open session's graph (None: a logits-only graph)."""
    inputs = {i.name: (i.shape, _NUMPY_TYPES.get(i.type, np.float32)) for i in sess.get_inputs()}
    return CacheLayout.find(inputs, [o.name for o in sess.get_outputs()], config)


def onnx_cache_layout(path: Path, config: Any) -> CacheLayout | None:
    """The KV cache of an ``.onnx`` file, read from its protobuf (no session)."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = {}
    for port in graph.input:
        if port.name in initializers:
            continue
        tensor = port.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        inputs[port.name] = (dims, helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    return CacheLayout.find(inputs, [o.name for o in graph.output], config)


def decoder(sess: Any, layout: CacheLayout, device: str) -> Any:
    """One generation step through I/O binding: the present stays an ``OrtValue`` on the
    session's device and is bound as the next call's past (never copied through numpy,
    on the GPU never through host memory); only the last position's logits come back."""
    import onnxruntime as ort

    where = ("cuda", int(device.split(":")[1]) if ":" in device else 0)
    where = where if device.startswith("cuda") else ("cpu", 0)

    def value(array: np.ndarray) -> Any:
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), *where)

    def decode(ids: np.ndarray, mask: np.ndarray, past: Any) -> tuple[np.ndarray, Any]:
        binding = sess.io_binding()
        feed = {"input_ids": ids, "attention_mask": mask}
        if layout.position_ids:
            feed["position_ids"] = positions(mask, ids.shape[1])
        if past is None:
            past = {name: value(array) for name, array in layout.empty(ids.shape[0]).items()}
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, value(array.astype(np.int64, copy=False)))
        for name, ortvalue in past.items():
            binding.bind_ortvalue_input(name, ortvalue)
        binding.bind_output("logits", "cpu")
        for name in layout.present:
            binding.bind_output(name, *where)
        sess.run_with_iobinding(binding)
        outs = binding.get_outputs()
        logits = outs[0].numpy()[:, -1, :]
        return logits, dict(zip(layout.past, outs[1:], strict=True))

    return decode


def _has_logits(sess: Any) -> bool:
    return any(o.name == "logits" for o in sess.get_outputs())
