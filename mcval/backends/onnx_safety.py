"""Vetting an ONNX graph before ONNX Runtime opens it (a student's ``model.file``).

An ``.onnx`` file is data, but two of its features reach outside the data: external-data
``location`` fields name files ONNX Runtime reads (``../../etc/passwd``), and a node in a
custom-op domain would need a native library registered. So the protobuf is parsed
without its external data, every location must resolve inside the model directory, every
node must be in a standard domain (or a function the model defines from standard ops),
and the file plus its external data must fit the size limit — all before a session exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcval.models.safety import UnsafeModelError

FILE_FIELD = ("model", "file")
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
"""Operator domains ONNX Runtime implements itself (``com.microsoft``: its contrib ops,
which its own quantizer and optimizer emit)."""


def _graphs(graph: Any) -> Iterator[Any]:
    """The graph and every subgraph (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _tensors(model: Any) -> Iterator[Any]:
    """Every stored tensor: initializers, sparse ones, and Constant/attribute tensors."""
    for graph in _graphs(model.graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
    for function in model.functions:
        for node in function.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t


def external_locations(path: Path) -> list[tuple[str, str]]:
    """``(tensor name, location)`` of every external-data tensor of an ``.onnx`` file, read
    without its data (a hub model.file's external data is vetted before it is fetched)."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a broken protobuf raises DecodeError and others
        raise UnsafeModelError(f"not a valid ONNX file: {exc}", FILE_FIELD) from None
    found = []
    for tensor in _tensors(model):
        if uses_external_data(tensor):
            info = {entry.key: entry.value for entry in tensor.external_data}
            found.append((tensor.name, info.get("location", "")))
    return found


def external_files(
    model: Any, model_dir: Path, base: Path | None = None, *, follow_links: bool = True
) -> set[Path]:
    """The external-data files the graph names, relative to ``base`` (the .onnx file's
    folder, where ONNX Runtime looks; default ``model_dir``), each inside ``model_dir``.

    ``follow_links=False`` for a hub snapshot: its files are huggingface_hub's own links into
    the blob store, so containment is checked on the paths as named (no ``..``, not
    absolute), not on where the links lead."""
    import os

    from onnx.external_data_helper import uses_external_data

    root = model_dir.resolve() if follow_links else Path(os.path.abspath(model_dir))
    start = (base or model_dir).resolve() if follow_links else Path(os.path.abspath(base or root))
    files: set[Path] = set()
    for tensor in _tensors(model):
        if not uses_external_data(tensor):
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        named = Path(os.path.normpath(start / location))
        target = named.resolve() if follow_links else named
        if not location or Path(location).is_absolute() or not target.is_relative_to(root):
            raise UnsafeModelError(
                f"the ONNX tensor {tensor.name!r} keeps its data at {location!r}, outside the "
                "model directory; external data must sit beside the .onnx file",
                FILE_FIELD,
            )
        if not target.is_file():
            raise UnsafeModelError(
                f"the ONNX external data file {location!r} is missing", FILE_FIELD
            )
        files.add(named)
    return files


def check_domains(model: Any) -> None:
    """Refuse any node outside the standard domains (a custom op needs a native library,
    which mcval never registers)."""
    local = {(f.domain, f.name) for f in model.functions}
    graphs = [*_graphs(model.graph), *model.functions]
    for graph in graphs:
        for node in graph.node:
            if node.domain in STANDARD_DOMAINS or (node.domain, node.op_type) in local:
                continue
            raise UnsafeModelError(
                f"the ONNX graph uses the custom operator {node.op_type!r} of domain "
                f"{node.domain!r}; custom-op libraries are never loaded, only standard "
                f"ONNX operators ({', '.join(sorted(d or 'ai.onnx' for d in STANDARD_DOMAINS))})",
                FILE_FIELD,
            )


def vet_onnx(
    path: Path, model_dir: Path, max_bytes: int, *, follow_links: bool = True
) -> list[Path]:
    """Check an ``.onnx`` artefact; returns its files (graph + external data)."""
    import onnx

    size = path.stat().st_size
    if size > max_bytes:
        raise UnsafeModelError(
            f"the ONNX file is {size / 1e9:.2f} GB, over the limit of {max_bytes / 1e9:.2f} GB",
            FILE_FIELD,
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a broken protobuf raises DecodeError and others
        raise UnsafeModelError(f"not a valid ONNX file: {exc}", FILE_FIELD) from None
    extra = external_files(model, model_dir, path.parent, follow_links=follow_links)
    total = size + sum(f.stat().st_size for f in extra)
    if total > max_bytes:
        raise UnsafeModelError(
            f"the ONNX model with its external data is {total / 1e9:.2f} GB, over the limit "
            f"of {max_bytes / 1e9:.2f} GB",
            FILE_FIELD,
        )
    check_domains(model)
    return [path, *sorted(extra)]
