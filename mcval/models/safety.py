"""Safety rules for untrusted checkpoints, each its own error with a one-line fix.

Submissions come from strangers' pull requests and are measured on the course's own
runner, so nothing in a checkpoint may execute code there: weights come from
safetensors only (unpickling a ``.bin`` can run anything), configs that need custom
Python code (``auto_map``) are refused instead of running them, GGUF files are walked
with explicit bounds (``gguf_checks``) and then parsed by the ``gguf`` package's reader
before transformers or llama.cpp sees them, and local paths must stay inside the repository.
Every check here reads files only; none imports torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, Field

from mcval.models.errors import FieldPath, ModelError, ModelNotFoundError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
"""Weight formats whose loading unpickles (torch.save / pickle)."""
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
MAX_CONFIG_BYTES = 5 * 2**20
"""A config file larger than this is not a config; refusing it keeps parsing bounded."""


class UnsafeModelError(ModelError):
    """Base of the safety rules: the checkpoint or path is refused, never loaded."""


class AbsolutePathError(UnsafeModelError):
    """An absolute (or home-relative, or Windows) path where a repository path is expected."""


class ParentPathError(UnsafeModelError):
    """A path with a ``..`` component."""


class SymlinkOutsideRepositoryError(UnsafeModelError):
    """A path, or a file in the model directory, is a symlink resolving outside the repo."""


class PickleWeightsError(UnsafeModelError):
    """Only pickle-based weights (``.bin``/``.pt``/``.pkl``/...) and no safetensors."""


class NoSafetensorsError(UnsafeModelError):
    """No safetensors weights and no pickles either (e.g. only ONNX or TF files)."""


class CustomCodeError(UnsafeModelError):
    """A config with ``auto_map``: the model needs the repo's own Python code."""


class InvalidSafetensorsError(UnsafeModelError):
    """A ``.safetensors`` file whose header does not parse (corrupt or not safetensors)."""


class InvalidGGUFError(UnsafeModelError):
    """A GGUF file the ``gguf`` parser rejects (bad magic, truncated, corrupt header)."""


class GGUFInfo(BaseModel):
    """What the GGUF header says, read by ``gguf.GGUFReader`` before transformers sees it."""

    version: int
    architecture: str
    tensor_count: int
    kv_count: int
    tensor_types: dict[str, int] = Field(
        description="GGML type name → number of tensors, e.g. {'Q4_1': 211, 'F32': 61}."
    )
    tensor_bytes: int = Field(
        default=0, description="Bytes of all tensor data at its stored (quantized) width."
    )
    type_bytes: dict[str, int] = Field(
        default_factory=dict, description="GGML type name → bytes of its tensors' data."
    )
    file_bytes: int = 0


def check_relative_path(value: str, field: FieldPath = ("model", "id")) -> PurePosixPath:
    """A repository-relative POSIX path, or the rule it breaks (absolute, ``~``, ``..``)."""
    if (
        value.startswith(("/", "~", "\\"))
        or re.match(r"^[A-Za-z]:", value)
        or PurePosixPath(value).is_absolute()
    ):
        raise AbsolutePathError(
            f"{value!r} is an absolute path; write a path relative to the repository root, "
            "e.g. './models/my-model'",
            field,
        )
    if "\\" in value:
        raise AbsolutePathError(
            f"{value!r} contains a backslash; write the path with '/' separators", field
        )
    pure = PurePosixPath(value)
    if ".." in pure.parts:
        raise ParentPathError(
            f"{value!r} contains '..'; the model must be inside the repository, so write its "
            "path from the repository root without '..'",
            field,
        )
    return pure


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def confine_path(value: str, repo_root: Path, field: FieldPath = ("model", "id")) -> Path:
    """Resolve a repository-relative path (symlinks followed) that must stay inside it."""
    pure = check_relative_path(value, field)
    root = repo_root.resolve()
    lexical = root / pure
    resolved = lexical.resolve()
    if not _inside(resolved, root):
        raise SymlinkOutsideRepositoryError(
            f"{value!r} is a symbolic link that resolves outside the repository "
            f"(to {resolved}); commit the model files themselves instead of a link",
            field,
        )
    if not resolved.exists():
        raise ModelNotFoundError(
            f"{value!r} does not exist in the repository; check the path (it is relative to "
            "the repository root)",
            field,
        )
    return resolved


def check_directory_links(directory: Path, repo_root: Path, field: FieldPath) -> None:
    """Refuse a model directory whose files are symlinks to places outside the repository."""
    root = repo_root.resolve()
    for entry in sorted(directory.iterdir()):
        if entry.is_symlink() and not _inside(entry.resolve(), root):
            raise SymlinkOutsideRepositoryError(
                f"{entry.name!r} in the model directory is a symbolic link to "
                f"{entry.resolve()}, outside the repository; commit the file itself instead",
                field,
            )


def read_json(path: Path, field: FieldPath) -> Any:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelError(f"{path.name} is larger than {MAX_CONFIG_BYTES // 2**20} MiB", field)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        message = f"{path.name} is not valid JSON ({exc}); fix or regenerate it"
        raise ModelError(message, field) from None


def read_config(directory: Path, field: FieldPath = ("model", "id")) -> dict[str, Any] | None:
    """``config.json`` of a model directory as a dict, or None when there is none."""
    path = directory / "config.json"
    if not path.is_file():
        return None
    data = read_json(path, field)
    if not isinstance(data, dict):
        raise ModelError("config.json must hold a JSON object", field)
    return data


def check_no_custom_code(directory: Path, field: FieldPath = ("model", "id")) -> None:
    """Refuse configs with ``auto_map``: their classes are Python files mcval never runs."""
    for path in sorted(directory.glob("*config.json")):
        data = read_json(path, field)
        if isinstance(data, dict) and "auto_map" in data:
            auto_map = data["auto_map"]
            classes = ", ".join(
                f"{k} → {v}" for k, v in (auto_map.items() if isinstance(auto_map, dict) else [])
            ) or repr(auto_map)
            raise CustomCodeError(
                f"{path.name} has 'auto_map' ({classes}): the model needs its own "
                "Python code, which mcval never runs (trust_remote_code stays off); use an "
                "architecture built into transformers, or remove 'auto_map' if the model does "
                "not need it",
                field,
            )


def _convert_hint(class_name: str, hub: bool) -> str:
    where = (
        "push model.safetensors to the hub repo and pin the new revision"
        if hub
        else "commit model.safetensors"
    )
    return (
        f"convert them on your machine: `model = {class_name}.from_pretrained(dir); "
        f"model.save_pretrained(dir, safe_serialization=True)`, then {where}"
    )


def pickle_refusal(
    found: list[str], class_name: str = "AutoModel", *, hub: bool = False, field: FieldPath = ()
) -> PickleWeightsError:
    """The error for a checkpoint that has pickle weights only (also used for hub listings)."""
    listed = ", ".join(sorted(found)[:5]) + (" ..." if len(found) > 5 else "")
    return PickleWeightsError(
        f"the checkpoint has only pickle weights ({listed}); mcval loads safetensors only, "
        f"because unpickling can run arbitrary code; {_convert_hint(class_name, hub)}",
        field or ("model", "id"),
    )


def safetensors_weight_names(
    files: list[str], index: dict[str, Any] | None, class_name: str, *, hub: bool, field: FieldPath
) -> list[str]:
    """Which top-level files transformers will read as weights; refuses pickle-only sets."""
    if index is not None:
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelError(f"{SAFE_WEIGHTS_INDEX_NAME} has no 'weight_map'", field)
        shards = sorted({str(v) for v in weight_map.values()})
        for shard in shards:
            if "/" in shard or "\\" in shard or not shard.endswith(".safetensors"):
                raise UnsafeModelError(
                    f"{SAFE_WEIGHTS_INDEX_NAME} names {shard!r}; shards must be .safetensors "
                    "files next to the index",
                    field,
                )
            if shard not in files:
                raise ModelNotFoundError(
                    f"{SAFE_WEIGHTS_INDEX_NAME} names the shard {shard!r}, which is missing",
                    field,
                )
        return shards
    if SAFE_WEIGHTS_NAME in files:
        return [SAFE_WEIGHTS_NAME]
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise pickle_refusal(pickles, class_name, hub=hub, field=field)
    others = [f for f in files if f.endswith(".safetensors")]
    detail = (
        f"found {', '.join(others)}, but transformers reads {SAFE_WEIGHTS_NAME} (or sharded "
        f"files with {SAFE_WEIGHTS_INDEX_NAME}); rename it"
        if others
        else f"save the model with save_pretrained(dir, safe_serialization=True) to get "
        f"{SAFE_WEIGHTS_NAME}"
    )
    raise NoSafetensorsError(f"no {SAFE_WEIGHTS_NAME} in the checkpoint; {detail}", field)


def local_safetensors_weights(
    directory: Path,
    class_name: str = "AutoModel",
    field: FieldPath = ("model", "id"),
    *,
    hub: bool = False,
) -> list[Path]:
    """The safetensors weight files of a local model directory, each header validated."""
    files = sorted(p.name for p in directory.iterdir() if p.is_file())
    index_path = directory / SAFE_WEIGHTS_INDEX_NAME
    index = read_json(index_path, field) if index_path.is_file() else None
    names = safetensors_weight_names(files, index, class_name, hub=hub, field=field)
    paths = [directory / n for n in names]
    for path in paths:
        validate_safetensors(path, field)
    return paths


def validate_safetensors(path: Path, field: FieldPath = ("model", "id")) -> int:
    """Parse a safetensors header with the safetensors library; returns its tensor count."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return len(list(handle.keys()))
    except Exception as exc:  # the library raises several unrelated types on bad input
        raise InvalidSafetensorsError(
            f"{path.name} is not a valid safetensors file ({exc}); re-save the model with "
            "save_pretrained(dir, safe_serialization=True)",
            field,
        ) from None


def validate_gguf(path: Path, field: FieldPath = ("model", "gguf_file")) -> GGUFInfo:
    """Validate a GGUF file: first the bounded walk of ``gguf_checks`` (header, metadata,
    tensor table: counts, dimensions, known types, every tensor's data inside the file), so
    no parser meets an unchecked count or offset; then the ``gguf`` package's reader, whose
    tensor table must agree with the walk's."""
    from gguf import GGUFReader

    from mcval.models.gguf_checks import walk_gguf

    try:
        table = walk_gguf(path)
        reader = GGUFReader(str(path))
        arch_field = reader.fields.get("general.architecture")
        if arch_field is None:
            raise ValueError("no 'general.architecture' key in the metadata")
        architecture = bytes(arch_field.parts[arch_field.data[0]]).decode("utf-8")
        version_field = reader.fields["GGUF.version"]
        version = int(version_field.parts[version_field.data[0]][0])
        types: dict[str, int] = {}
        for tensor in reader.tensors:
            name = tensor.tensor_type.name
            types[name] = types.get(name, 0) + 1
        reader_bytes = sum(int(t.n_bytes) for t in reader.tensors)
        if types != table.type_counts() or reader_bytes != table.tensor_bytes:
            raise ValueError("the gguf reader and the bounded walk disagree on the tensor table")
        return GGUFInfo(
            version=version,
            architecture=architecture,
            tensor_count=len(reader.tensors),
            kv_count=len(reader.fields),
            tensor_types=types,
            tensor_bytes=table.tensor_bytes,
            type_bytes=table.type_bytes(),
            file_bytes=table.file_bytes,
        )
    except Exception as exc:  # the parser fails in many ways on a corrupt file; all mean invalid
        raise InvalidGGUFError(
            f"{path.name} is not a valid GGUF file ({exc or type(exc).__name__}); "
            "re-export it (e.g. with llama.cpp's convert_hf_to_gguf.py) and commit it again",
            field,
        ) from None
