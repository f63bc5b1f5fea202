"""``model.file`` from a hub repo: the ``.onnx`` (its external data read from the graph and
vetted before it is fetched) or the OpenVINO ``.xml`` + ``.bin``, size-capped from the
listing before any weights are downloaded, and measured like a local artefact. The fake hub
lays files out as huggingface_hub does: snapshot entries are links into a blob store."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_models import build_tiny_bert_classifier

from mcval.backends import Shipped, load_artefact
from mcval.backends.base import ConvertRequest
from mcval.models import DownloadTooLargeError, HubListing, ModelNotFoundError
from mcval.models.safety import UnsafeModelError
from mcval.models.sources import resolve_hub_artefact
from mcval.policy import Policy
from mcval.submission.schema import ModelSpec

pytestmark = pytest.mark.slow
SHA = "89abcdef0123456789abcdef0123456789abcdef"
SMALL = ["config.json", "tokenizer.json", "tokenizer_config.json"]
ONNX, DATA = "onnx/model.onnx", "onnx/model.onnx.data"
XML, BIN = "openvino/openvino_model.xml", "openvino/openvino_model.bin"


class BlobHub:
    """A hub repo served from a local folder (subfolders too), cached the way
    huggingface_hub caches: ``snapshots/<sha>/<file>`` links to ``blobs/<hash>``."""

    def __init__(self, repo: Path, cache: Path, sizes: dict[str, int] | None = None) -> None:
        self.repo, self.cache, self.sizes = repo, cache, sizes or {}
        self.downloads: list[list[str]] = []

    def listing(self, repo_id: str, revision: str | None) -> HubListing:
        files: dict[str, int | None] = {
            p.relative_to(self.repo).as_posix(): p.stat().st_size
            for p in self.repo.rglob("*")
            if p.is_file()
        }
        return HubListing(commit=SHA, files={**files, **self.sizes})

    def download(self, repo_id: str, commit: str, filenames: list[str]) -> Path:
        self.downloads.append(sorted(filenames))
        snapshot = self.cache / "snapshots" / commit
        for name in filenames:
            data = (self.repo / name).read_bytes()
            blob = self.cache / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = snapshot / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(blob)
        return snapshot

    def cached_snapshot(self, repo_id: str, revision: str | None) -> Path | None:
        return None


@pytest.fixture(scope="module")
def hub_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BERT classifier's hub repo as Optimum / Transformers.js lay them out: configs at
    the top, ``onnx/model.onnx`` with its weights in ``onnx/model.onnx.data``, the IR in
    ``openvino/``; no safetensors (the artefact is what is measured)."""
    import onnx
    import openvino as ov
    from transformers import AutoModelForSequenceClassification

    repo = build_tiny_bert_classifier(tmp_path_factory.mktemp("hub") / "bert")
    model = AutoModelForSequenceClassification.from_pretrained(repo).eval()
    (repo / "onnx").mkdir()
    ids = torch.ones((1, 8), dtype=torch.long)
    plain = repo / "plain.onnx"
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids)),
        str(plain),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={n: {0: "b", 1: "s"} for n in ("input_ids", "attention_mask")},
        dynamo=False,
    )
    graph = onnx.load(str(plain))
    onnx.save(
        graph,
        str(repo / ONNX),
        save_as_external_data=True,
        location=Path(DATA).name,
        size_threshold=0,
    )
    (repo / "openvino").mkdir()
    ov.save_model(ov.convert_model(str(plain)), str(repo / XML), compress_to_fp16=False)
    plain.unlink()
    for weights in repo.glob("*.safetensors"):
        weights.unlink()
    return repo


def _hub(hub_repo: Path, tmp_path: Path, sizes: dict[str, int] | None = None) -> BlobHub:
    return BlobHub(hub_repo, tmp_path / "hf-cache", sizes)


def _logits(shipped: Shipped, runtime: str, workdir: Path) -> np.ndarray:
    import importlib

    request = ConvertRequest(
        task="text-classification",
        model=None,
        config=shipped.config,
        accepted=None,
        workdir=workdir,
        threads=1,
        device="cpu",
        **shipped.request_fields(10**9),
    )
    converted = importlib.import_module(f"mcval.backends.{runtime}_backend").convert(request)
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    return converted(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.numpy()


def _reference(hub_repo: Path) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(hub_repo / ONNX))
    ids = np.array([[2, 10, 11, 12, 3]], dtype=np.int64)
    return session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]


@pytest.mark.parametrize(("runtime", "file"), [("onnxruntime", ONNX), ("openvino", XML)])
def test_hub_file_is_fetched_vetted_and_measured(
    hub_repo: Path, tmp_path: Path, runtime: str, file: str
) -> None:
    hub = _hub(hub_repo, tmp_path)
    spec = ModelSpec.model_validate(
        {"id": "org/bert-onnx", "revision": SHA, "task": "text-classification",
         "runtime": runtime, "file": file}
    )  # fmt: skip
    shipped = load_artefact(spec, tmp_path, Policy(), hub=hub)
    assert shipped.hub_snapshot and shipped.warnings == []
    assert shipped.artefact == tmp_path / "hf-cache" / "snapshots" / SHA / file
    assert shipped.artefact.is_symlink()  # as huggingface_hub lays a snapshot out
    if runtime == "onnxruntime":  # the graph first, its external data once vetted
        assert hub.downloads == [sorted([*SMALL, ONNX]), sorted([*SMALL, ONNX, DATA])]
    else:
        assert hub.downloads == [sorted([*SMALL, XML]), sorted([*SMALL, XML, BIN])]
    np.testing.assert_allclose(
        _logits(shipped, runtime, tmp_path / "work"), _reference(hub_repo), atol=1e-5
    )


def test_size_limit_is_checked_before_any_weights_are_fetched(
    hub_repo: Path, tmp_path: Path
) -> None:
    hub = _hub(hub_repo, tmp_path, {BIN: 3 * 10**9})
    with pytest.raises(DownloadTooLargeError) as info:
        resolve_hub_artefact("org/bert-onnx", SHA, XML, max_download_bytes=2 * 10**9, hub=hub)
    assert hub.downloads == []
    assert info.value.field == ("model", "file")
    assert str(info.value).startswith(
        "hub model 'org/bert-onnx' needs 3.00 GB for model.file with its weights and configs, "
        "over this course's limit of 2.00 GB"
    )


def test_onnx_external_data_is_sized_before_it_is_fetched(hub_repo: Path, tmp_path: Path) -> None:
    """The graph is small, its external data (named inside it) is not: only the graph and
    configs were downloaded when the limit refuses the row."""
    hub = _hub(hub_repo, tmp_path, {DATA: 3 * 10**9})
    with pytest.raises(DownloadTooLargeError):
        resolve_hub_artefact("org/bert-onnx", SHA, ONNX, max_download_bytes=2 * 10**9, hub=hub)
    assert hub.downloads == [sorted([*SMALL, ONNX])]


def _retarget(hub_repo: Path, tmp_path: Path, location: str) -> Path:
    """A copy of the hub repo whose graph keeps its weights at ``location``."""
    import onnx

    copy = tmp_path / "evil-repo"
    shutil.copytree(hub_repo, copy)
    graph = onnx.load(str(copy / ONNX), load_external_data=False)
    for tensor in graph.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(graph, str(copy / ONNX))
    return copy


@pytest.mark.parametrize("location", ["../../../../etc/passwd", "/etc/passwd", "../config.json"])
def test_external_data_outside_the_repo_folder_is_refused_unfetched(
    hub_repo: Path, tmp_path: Path, location: str
) -> None:
    """The rule of local files: external data anywhere inside the repo (``../config.json``
    from ``onnx/`` is the repo's own file), never outside it; an outside location is refused
    with only the graph and configs fetched."""
    hub = BlobHub(_retarget(hub_repo, tmp_path, location), tmp_path / "hf-cache")
    if location == "../config.json":
        shipped = resolve_hub_artefact("org/x", SHA, ONNX, max_download_bytes=10**9, hub=hub)
        assert shipped.artefact.name == "model.onnx"  # inside the repo: allowed, fetched
        assert hub.downloads[-1] == sorted({*SMALL, ONNX, "config.json"})
        return
    with pytest.raises(UnsafeModelError) as info:
        resolve_hub_artefact("org/x", SHA, ONNX, max_download_bytes=10**9, hub=hub)
    assert f"keeps its data at {location!r}, outside the model directory" in str(info.value)
    assert hub.downloads == [sorted([*SMALL, ONNX])]  # the graph only, never the target


def test_a_missing_hub_file_names_the_ones_there(hub_repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_hub_artefact(
            "org/x", SHA, "model.onnx", max_download_bytes=10**9, hub=_hub(hub_repo, tmp_path)
        )
    assert str(info.value) == (
        "hub model 'org/x' has no file 'model.onnx'; its .onnx/.xml files: "
        "onnx/model.onnx, openvino/openvino_model.xml"
    )
    assert info.value.field == ("model", "file")


def test_a_custom_op_in_a_hub_graph_is_refused_before_a_session(
    hub_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    import onnxruntime

    copy = tmp_path / "custom-repo"
    shutil.copytree(hub_repo, copy)
    graph = onnx.load(str(copy / ONNX), load_external_data=False)
    graph.graph.node[0].domain = "evil.ops"
    graph.opset_import.add(domain="evil.ops", version=1)
    onnx.save(graph, str(copy / ONNX))
    resolved = resolve_hub_artefact(
        "org/x", SHA, ONNX, max_download_bytes=10**9, hub=BlobHub(copy, tmp_path / "hf-cache")
    )
    opened: list[Any] = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: opened.append(a))
    shipped = Shipped(resolved.artefact, resolved.directory, None, hub_snapshot=True)
    with pytest.raises(UnsafeModelError) as info:
        _logits(shipped, "onnxruntime", tmp_path / "work")
    assert "uses the custom operator" in str(info.value) and "'evil.ops'" in str(info.value)
    assert opened == []
