"""Where a submission's checkpoint comes from: a hub repo, a repository directory, a GGUF.

Every source ends as a local directory that passed the safety rules, so transformers
only ever loads from disk with ``local_files_only=True``. Hub checkpoints are listed
first (names and sizes) and refused before any byte of weights is downloaded when
they are pickle-only, too large for the runner's disk, or need custom code; then only
the files transformers needs are fetched, through huggingface_hub's normal cache, at
the exact commit that was listed (a moving branch cannot change between the two).
A GGUF file is validated first (``safety.validate_gguf``); for PyTorch it is refused
when its tensors are quantized (transformers would dequantize them, and the row would be
measured as something it is not): such a file is measured by ``model.runtime: llama.cpp``.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from mcval.models.errors import (
    DownloadTooLargeError,
    FieldPath,
    HubUnavailableError,
    ModelError,
    ModelNotFoundError,
    QuantizedGGUFError,
)
from mcval.models.safety import (
    SAFE_WEIGHTS_INDEX_NAME,
    GGUFInfo,
    UnsafeModelError,
    check_directory_links,
    check_no_custom_code,
    check_relative_path,
    confine_path,
    local_safetensors_weights,
    read_config,
    read_json,
    safetensors_weight_names,
    validate_gguf,
    validate_safetensors,
)
from mcval.submission.schema import is_commit_sha

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
SMALL_FILE_SUFFIXES = (".json", ".txt", ".model", ".spm", ".tiktoken", ".jinja", ".vocab")
"""Top-level non-weight files worth fetching: configs, tokenizers, chat templates."""
ID_FIELD: FieldPath = ("model", "id")
REVISION_FIELD: FieldPath = ("model", "revision")
GGUF_FIELD: FieldPath = ("model", "gguf_file")
GGUF_FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})
"""GGUF tensor types holding plain floats; every other type holds quantized blocks, which
transformers dequantizes on load, so such a file would not be measured as what it is."""


def check_gguf_tensor_types(path: Path, info: GGUFInfo, field: FieldPath = GGUF_FIELD) -> None:
    """Refuse a GGUF with quantized tensors for transformers: it dequantizes them while
    loading, so a Q4 file would be timed and sized as fp32. The llama.cpp runtime measures
    quantized GGUF as GGUF; transformers gets float GGUF (F32/F16/BF16) only."""
    quantized = {t: n for t, n in info.tensor_types.items() if t not in GGUF_FLOAT_TYPES}
    if not quantized:
        return
    counts = sorted(
        info.tensor_types.items(), key=lambda tn: (tn[0] in GGUF_FLOAT_TYPES, -tn[1], tn[0])
    )
    found = ", ".join(f"{n} × {t}" for t, n in counts)
    kinds = "/".join(t for t, _ in counts if t in quantized)
    raise QuantizedGGUFError(
        f"model.gguf_file: {path.name} holds quantized tensors ({found}), which transformers "
        "dequantizes to floating point while loading, so the row would be timed and sized as "
        f"a floating-point model, not as {kinds}; set model.runtime: llama.cpp to measure it "
        "as GGUF (or convert it to F16/F32 GGUF or a safetensors checkpoint)",
        field,
    )


def vet_gguf(path: Path, field: FieldPath = GGUF_FIELD, *, quantized: bool = False) -> GGUFInfo:
    """Validate the GGUF (``validate_gguf``) and, unless ``quantized`` (llama.cpp measures
    it as it is), refuse quantized tensors, both before any loader sees the file."""
    info = validate_gguf(path, field)
    if not quantized:
        check_gguf_tensor_types(path, info, field)
    return info


class HubListing(BaseModel):
    """A hub repo's files at one commit, with sizes in bytes (None when the hub omits it)."""

    commit: str
    files: dict[str, int | None]


class HubClient(Protocol):
    """The three hub operations sources need; tests substitute a local fake."""

    def listing(self, repo_id: str, revision: str | None) -> HubListing: ...

    def download(self, repo_id: str, commit: str, filenames: list[str]) -> Path: ...

    def cached_snapshot(self, repo_id: str, revision: str | None) -> Path | None: ...


class HuggingFaceHub:
    """The real hub, through huggingface_hub and its cache (``HF_HOME`` / ``cache_dir``)."""

    def __init__(self, cache_dir: Path | None = None, timeout_s: float = 30.0) -> None:
        self.cache_dir = cache_dir
        self.timeout_s = timeout_s

    def listing(self, repo_id: str, revision: str | None) -> HubListing:
        """File names and sizes at ``revision``; hub errors become one-line ModelErrors."""
        from huggingface_hub import HfApi
        from huggingface_hub.errors import (
            GatedRepoError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            info = HfApi().model_info(
                repo_id, revision=revision, files_metadata=True, timeout=self.timeout_s
            )
        except GatedRepoError:
            raise ModelNotFoundError(
                f"hub model {repo_id!r} is gated (its license must be accepted per user); "
                "the runner cannot accept it: use an ungated copy or commit the files",
                ID_FIELD,
            ) from None
        except RepositoryNotFoundError:
            raise ModelNotFoundError(
                f"hub model {repo_id!r} does not exist or is private; check model.id "
                "(it is 'org/name' as in the hub URL)",
                ID_FIELD,
            ) from None
        except RevisionNotFoundError:
            raise ModelNotFoundError(
                f"revision {revision!r} does not exist in hub model {repo_id!r}; use a commit "
                "sha from the repo's history",
                REVISION_FIELD,
            ) from None
        except OfflineModeIsEnabled:
            raise HubUnavailableError(
                f"cannot list the files of hub model {repo_id!r}: offline mode is on "
                "(HF_HUB_OFFLINE=1) and the model is not in the local cache; unset "
                "HF_HUB_OFFLINE or download it first with "
                f"`hf download {repo_id}" + (f" --revision {revision}`" if revision else "`"),
                ID_FIELD,
            ) from None
        except Exception as exc:  # httpx/OS-level network errors have no common base
            raise HubUnavailableError(  # its sentence names the runner and asks for a re-run
                f"listing the files of {repo_id!r} failed ({type(exc).__name__}: {exc}); "
                "check the network",
                ID_FIELD,
            ) from None
        files: dict[str, int | None] = {}
        for sibling in info.siblings or []:
            size = sibling.size
            if size is None and sibling.lfs is not None:
                size = sibling.lfs.size
            files[sibling.rfilename] = size
        return HubListing(commit=str(info.sha or revision or ""), files=files)

    def download(self, repo_id: str, commit: str, filenames: list[str]) -> Path:
        """Fetch exactly ``filenames`` at ``commit`` into the cache; returns the snapshot dir."""
        from huggingface_hub import snapshot_download

        try:
            path = snapshot_download(
                repo_id,
                revision=commit,
                cache_dir=self.cache_dir,
                allow_patterns=[_escape_glob(n) for n in filenames],
            )
        except Exception as exc:  # network and disk errors alike end the measurement
            raise HubUnavailableError(
                f"downloading {repo_id!r} at {commit[:12]} failed ({type(exc).__name__}: {exc})",
                ID_FIELD,
            ) from None
        return Path(path)

    def cached_snapshot(self, repo_id: str, revision: str | None) -> Path | None:
        """A snapshot already in the cache (for offline runs), or None."""
        from huggingface_hub import snapshot_download

        try:
            return Path(
                snapshot_download(
                    repo_id, revision=revision, cache_dir=self.cache_dir, local_files_only=True
                )
            )
        except Exception:  # not cached (LocalEntryNotFoundError) or a broken cache entry
            return None


def _escape_glob(name: str) -> str:
    """An fnmatch pattern matching exactly ``name`` (hub filenames may hold '[' or '*')."""
    return re.sub(r"([\[\]*?])", r"[\1]", name)


class ResolvedSource(BaseModel):
    """A checkpoint on local disk that passed every safety rule, ready for from_pretrained."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kind: Literal["local", "hub"]
    model_id: str = Field(description="model.id as the submission wrote it.")
    directory: Path = Field(description="Directory given to from_pretrained.")
    weight_files: list[Path] = Field(description="safetensors shards, or the one GGUF file.")
    gguf_file: str | None = Field(default=None, description="GGUF path inside `directory`.")
    gguf: GGUFInfo | None = None
    revision: str | None = Field(default=None, description="model.revision as written.")
    commit: str | None = Field(default=None, description="Hub commit sha actually used.")
    config: dict[str, Any] | None = Field(default=None, description="config.json, if any.")
    warnings: list[str] = Field(default_factory=list)

    @property
    def files_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.weight_files)

    @property
    def quantization_config(self) -> dict[str, Any] | None:
        qc = (self.config or {}).get("quantization_config")
        return qc if isinstance(qc, dict) else None


def is_local_id(model_id: str, repo_root: Path) -> bool:
    """Same rule as ``mcval check``: './' prefix, or an existing path in the repository."""
    return model_id.startswith("./") or (repo_root / model_id).exists()


def revision_warnings(revision: str | None) -> list[str]:
    """A pinned commit makes a hub measurement reproducible; anything else is a warning."""
    if revision is None:
        return [
            "model.revision is not set, so the hub repo's current 'main' is measured; pin it "
            "to a 40-character commit sha so the result stays reproducible"
        ]
    if not is_commit_sha(revision):
        return [
            f"model.revision {revision!r} is not a 40-character commit sha (a branch or tag "
            "can move); pin the commit sha so the result stays reproducible"
        ]
    return []


def resolve_source(
    model_id: str,
    revision: str | None,
    gguf_file: str | None,
    repo_root: Path,
    *,
    max_download_bytes: int,
    class_name: str = "AutoModel",
    hub: HubClient | None = None,
    quantized_gguf: bool = False,
) -> ResolvedSource:
    """Apply the source and safety rules and return the local checkpoint to load.

    ``quantized_gguf``: the GGUF is measured as GGUF (llama.cpp), so quantized tensors are
    accepted; it is validated all the same."""
    if gguf_file is not None:
        pure = check_relative_path(gguf_file, GGUF_FIELD)
        if pure.suffix.lower() != ".gguf":
            raise ModelError(f"gguf_file {gguf_file!r} must name a .gguf file", GGUF_FIELD)
    if is_local_id(model_id, repo_root) or not HUB_ID_RE.match(model_id):
        check_relative_path(model_id, ID_FIELD)
        if not is_local_id(model_id, repo_root):
            raise ModelNotFoundError(
                f"{model_id!r} is neither a hub id 'org/name' nor a path in the repository; "
                "write a hub id, or './path/to/model' for files committed to the repository",
                ID_FIELD,
            )
        resolved = _resolve_local(model_id, revision, gguf_file, repo_root, class_name)
    else:
        resolved = _resolve_hub(
            model_id, revision, gguf_file, max_download_bytes, class_name, hub or HuggingFaceHub()
        )
    if resolved.gguf is not None and not quantized_gguf:
        check_gguf_tensor_types(resolved.weight_files[0], resolved.gguf)
    return resolved


def _resolve_local(
    model_id: str, revision: str | None, gguf_file: str | None, repo_root: Path, class_name: str
) -> ResolvedSource:
    path = confine_path(model_id, repo_root, ID_FIELD)
    warnings: list[str] = []
    if revision is not None:
        warnings.append(
            "model.revision is ignored for a model directory in the repository (the pull "
            "request's commit pins it)"
        )
    if path.is_file() and path.suffix.lower() == ".gguf" and gguf_file is None:
        path, gguf_file = path.parent, path.name
    if not path.is_dir():
        raise ModelNotFoundError(
            f"{model_id!r} is not a directory; model.id names the directory holding "
            "config.json and model.safetensors (or set model.gguf_file for a GGUF file)",
            ID_FIELD,
        )
    check_directory_links(path, repo_root, ID_FIELD)
    check_no_custom_code(path, ID_FIELD)
    common: dict[str, Any] = {
        "kind": "local",
        "model_id": model_id,
        "directory": path,
        "revision": revision,
        "config": read_config(path, ID_FIELD),
        "warnings": warnings,
    }
    if gguf_file is not None:
        inside = path.relative_to(repo_root.resolve()) / PurePosixPath(gguf_file)
        gguf_path = confine_path(inside.as_posix(), repo_root, GGUF_FIELD)
        if not gguf_path.is_file():
            raise ModelNotFoundError(f"gguf_file {gguf_file!r} is not a file", GGUF_FIELD)
        return _gguf_source(gguf_path, gguf_file, **common)
    weights = local_safetensors_weights(path, class_name, ID_FIELD)
    return ResolvedSource(weight_files=weights, **common)


def _gguf_source(gguf_path: Path, gguf_file: str, **fields: Any) -> ResolvedSource:
    """A source whose weights are the one GGUF file, validated here so no path skips it (the
    quantized-tensor rule, which depends on the runtime, is ``resolve_source``'s)."""
    return ResolvedSource(
        weight_files=[gguf_path],
        gguf_file=gguf_file,
        gguf=vet_gguf(gguf_path, quantized=True),
        **fields,
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def _check_size(repo_id: str, total: int, max_bytes: int, what: str) -> None:
    if total > max_bytes:
        raise DownloadTooLargeError(
            f"hub model {repo_id!r} needs {_gb(total)} of {what}, over this course's limit of "
            f"{_gb(max_bytes)} (mcval.toml: measure.max_download_gb); choose a smaller model "
            "or ask the maintainers to raise the limit",
            ID_FIELD,
        )


def _resolve_hub(
    repo_id: str,
    revision: str | None,
    gguf_file: str | None,
    max_bytes: int,
    class_name: str,
    hub: HubClient,
) -> ResolvedSource:
    warnings = revision_warnings(revision)
    try:
        listing = hub.listing(repo_id, revision)
    except HubUnavailableError as exc:
        cached = hub.cached_snapshot(repo_id, revision)
        if cached is None:
            raise
        warnings.append(f"the hub was unreachable, so the cached snapshot was used ({exc})")
        return _from_cached_snapshot(repo_id, revision, gguf_file, cached, class_name, warnings)
    files = listing.files
    common: dict[str, Any] = {
        "kind": "hub",
        "model_id": repo_id,
        "revision": revision,
        "commit": listing.commit,
        "warnings": warnings,
    }
    if gguf_file is not None:
        if gguf_file not in files:
            available = sorted(f for f in files if f.lower().endswith(".gguf"))
            raise ModelNotFoundError(
                f"hub model {repo_id!r} has no file {gguf_file!r}"
                + (f"; its GGUF files: {', '.join(available)}" if available else ""),
                GGUF_FIELD,
            )
        _check_size(repo_id, files[gguf_file] or 0, max_bytes, "GGUF weights")
        snapshot = hub.download(repo_id, listing.commit, [gguf_file])
        return _gguf_source(snapshot / gguf_file, gguf_file, directory=snapshot, **common)
    top_level = sorted(f for f in files if "/" not in f)
    small = [f for f in top_level if f.endswith(SMALL_FILE_SUFFIXES)]
    index = None
    if SAFE_WEIGHTS_INDEX_NAME in files:
        snapshot = hub.download(repo_id, listing.commit, [SAFE_WEIGHTS_INDEX_NAME])
        index = read_json(snapshot / SAFE_WEIGHTS_INDEX_NAME, ID_FIELD)
    weights = safetensors_weight_names(top_level, index, class_name, hub=True, field=ID_FIELD)
    total = sum(files[f] or 0 for f in weights + small)
    _check_size(repo_id, total, max_bytes, "safetensors weights and configs")
    if small:
        snapshot = hub.download(repo_id, listing.commit, small)
        check_no_custom_code(snapshot, ID_FIELD)
    snapshot = hub.download(repo_id, listing.commit, small + weights)
    check_no_custom_code(snapshot, ID_FIELD)
    paths = [snapshot / w for w in weights]
    for path in paths:
        validate_safetensors(path, ID_FIELD)
    config = read_config(snapshot, ID_FIELD)
    return ResolvedSource(directory=snapshot, weight_files=paths, config=config, **common)


def _from_cached_snapshot(
    repo_id: str,
    revision: str | None,
    gguf_file: str | None,
    snapshot: Path,
    class_name: str,
    warnings: list[str],
) -> ResolvedSource:
    """Offline runs reuse a cached snapshot; the same rules apply to its files."""
    check_no_custom_code(snapshot, ID_FIELD)
    commit = snapshot.name if is_commit_sha(snapshot.name) else None
    common: dict[str, Any] = {
        "kind": "hub",
        "model_id": repo_id,
        "directory": snapshot,
        "revision": revision,
        "commit": commit,
        "config": read_config(snapshot, ID_FIELD),
        "warnings": warnings,
    }
    if gguf_file is not None:
        gguf_path = snapshot / gguf_file
        if not gguf_path.is_file():
            raise ModelNotFoundError(
                f"the cached snapshot of {repo_id!r} has no file {gguf_file!r}", GGUF_FIELD
            )
        return _gguf_source(gguf_path, gguf_file, **common)
    weights = local_safetensors_weights(snapshot, class_name, ID_FIELD, hub=True)
    return ResolvedSource(weight_files=weights, **common)


FILE_FIELD: FieldPath = ("model", "file")
ARTEFACT_SUFFIXES = (".onnx", ".xml")


class ResolvedArtefact(BaseModel):
    """A shipped runtime artefact (``model.file``) on local disk with its model directory
    (config and tokenizer), from the repository or a hub snapshot."""

    artefact: Path
    directory: Path
    commit: str | None = None
    warnings: list[str] = Field(default_factory=list)


def resolve_hub_artefact(
    repo_id: str,
    revision: str | None,
    file: str,
    *,
    max_download_bytes: int,
    hub: HubClient | None = None,
) -> ResolvedArtefact:
    """``model.file`` of a hub repo: listed first, then fetched as safetensors are — sizes
    checked against the limit from the listing before a byte of weights is downloaded.

    ``.xml``: the IR and its ``.bin`` (both listed, sizes summed) with the configs.
    ``.onnx``: the graph alone first (its size checked), so its external-data locations can
    be read and vetted — each inside the repo directory, listed, the total within the
    limit — before any external data is fetched; ONNX Runtime's vetting (custom-op domains,
    the same confinement) then runs on the downloaded copy as on a local file.
    """
    hub = hub or HuggingFaceHub()
    pure = check_relative_path(file, FILE_FIELD)
    warnings = revision_warnings(revision)
    listing = hub.listing(repo_id, revision)
    files = listing.files
    if file not in files:
        shipped = sorted(f for f in files if f.lower().endswith(ARTEFACT_SUFFIXES))
        raise ModelNotFoundError(
            f"hub model {repo_id!r} has no file {file!r}"
            + (f"; its .onnx/.xml files: {', '.join(shipped)}" if shipped else ""),
            FILE_FIELD,
        )
    small = sorted(f for f in files if "/" not in f and f.endswith(SMALL_FILE_SUFFIXES))
    needed = [file]
    if pure.suffix.lower() == ".xml":
        weights = str(pure.with_suffix(".bin"))
        if weights not in files:
            raise ModelNotFoundError(
                f"hub model {repo_id!r} has {file} but not its weights {weights}", FILE_FIELD
            )
        needed.append(weights)
    total = sum(files[f] or 0 for f in needed + small)
    _check_artefact_size(repo_id, total, max_download_bytes)
    snapshot = hub.download(repo_id, listing.commit, [*small, file])
    check_no_custom_code(snapshot, ID_FIELD)
    artefact = snapshot / pure
    if pure.suffix.lower() == ".onnx":
        extra = _onnx_external_names(artefact, pure, files, repo_id)
        total += sum(files[f] or 0 for f in extra)
        _check_artefact_size(repo_id, total, max_download_bytes)
        needed += extra
    if len(needed) > 1:
        snapshot = hub.download(repo_id, listing.commit, sorted({*small, *needed}))
    read_config(snapshot, ID_FIELD)
    return ResolvedArtefact(
        artefact=snapshot / pure, directory=snapshot, commit=listing.commit, warnings=warnings
    )


def _check_artefact_size(repo_id: str, total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise DownloadTooLargeError(
            f"hub model {repo_id!r} needs {_gb(total)} for model.file with its weights and "
            f"configs, over this course's limit of {_gb(max_bytes)} (mcval.toml: "
            "measure.max_download_gb); choose a smaller model or ask the maintainers",
            FILE_FIELD,
        )


def _onnx_external_names(
    graph_file: Path, pure: PurePosixPath, listed: dict[str, int | None], repo_id: str
) -> list[str]:
    """Repo paths of the external data a downloaded ``.onnx`` names (relative to its own
    folder, as ONNX Runtime reads them), each refused when it leaves the repo directory or
    is not in the listing — before it is downloaded."""
    import posixpath

    from mcval.backends.onnx_safety import external_locations

    names: list[str] = []
    for tensor, location in external_locations(graph_file):
        joined = PurePosixPath(posixpath.normpath(PurePosixPath(pure.parent, location or ".")))
        if (
            not location
            or PurePosixPath(location).is_absolute()
            or "\\" in location
            or joined.parts[:1] == ("..",)
        ):
            raise UnsafeModelError(
                f"the ONNX tensor {tensor!r} keeps its data at {location!r}, outside the "
                "model directory; external data must sit beside the .onnx file",
                FILE_FIELD,
            )
        if str(joined) not in listed:
            raise ModelNotFoundError(
                f"hub model {repo_id!r} lacks {joined}, the external data of {pure}", FILE_FIELD
            )
        if str(joined) not in names:
            names.append(str(joined))
    return names
