"""Loading the evaluation slice: a hub dataset or local files inside the repository.

Sources
    * Hub: ``dataset.path`` is a dataset id (``openslr/librispeech_asr``), loaded with
      ``datasets.load_dataset(path, name, split=split, revision=revision)``.
    * Local: ``dataset.path`` is one of ``json``, ``csv``, ``parquet``, ``text`` and
      ``dataset.data_files`` lists files relative to the repository root (glob patterns
      allowed). Every file must resolve (symlinks followed) inside the repository; anything
      else is refused. Audio and image columns of local files hold paths relative to the
      folder of the data file the row comes from, confined to the repository the same way.

Slice rule (same rows on every run, every machine, every library version)
    Rows are ranked by the SHA-256 digest of ``"<seed>:<row index>"`` (row index = 0-based
    position in the split, local files concatenated in the order given); the first
    ``samples`` rows of that ranking are taken and then put back in dataset order. The rule
    needs no random generator, so it cannot drift between numpy/datasets versions.
    ``samples`` missing means ``DEFAULT_SAMPLES`` (200, as the submission format documents);
    a split with fewer rows is used whole.

Rows are named in errors as ``data/eval.jsonl row 7`` (local files: 1-based row of that
file, which for JSON Lines is its line number) or ``org/name (test) row index 17`` (hub:
0-based index, as the hub's dataset viewer shows it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mcval.tasks.base import TaskDataError

if TYPE_CHECKING:
    from mcval.submission.schema import DatasetSpec

LOCAL_BUILDERS = ("json", "csv", "parquet", "text")
DEFAULT_SAMPLES = 200
MediaKind = Literal["audio", "image"]
MEDIA_ROLES: tuple[MediaKind, ...] = ("audio", "image")
"""Column roles (``mcval.tasks.base.TASK_ROLES``) that hold the media they are named after."""


@dataclass(frozen=True)
class Row:
    """One evaluation row: its values, where it comes from, and the base of relative paths."""

    values: dict[str, Any]
    where: str
    base_dir: Path | None = None


@dataclass
class EvalSlice:
    """The selected rows plus the dataset's column features (for class-label names)."""

    rows: list[Row]
    features: Mapping[str, Any]
    repo_root: Path
    description: str
    columns: list[str] = field(default_factory=list)

    def label_names(self, column: str) -> list[str] | None:
        """Names of a ``ClassLabel`` column (or of a sequence of them), else ``None``."""
        feature = None if "." in column else self.features.get(column)
        if feature is None:
            return None
        inner = getattr(feature, "feature", feature)  # Sequence/List(ClassLabel) → ClassLabel
        names = getattr(inner, "names", None)
        return list(names) if names else None


def select_indices(total: int, samples: int | None, seed: int) -> list[int]:
    """Indices of the slice, in dataset order (see the module docstring for the rule)."""
    wanted = DEFAULT_SAMPLES if samples is None else samples
    if wanted >= total:
        return list(range(total))
    ranked = sorted(range(total), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
    return sorted(ranked[:wanted])


def confine(repo_root: Path, relative: str | Path, what: str) -> Path:
    """``repo_root / relative`` resolved; refuses absolute paths and anything outside."""
    root = repo_root.resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise TaskDataError(f"{what} {str(relative)!r} must be relative to the repository root")
    resolved = (root / rel).resolve()
    if not resolved.is_relative_to(root):
        raise TaskDataError(f"{what} {str(relative)!r} resolves outside the repository")
    return resolved


def _local_files(spec: DatasetSpec, repo_root: Path) -> list[Path]:
    files: list[Path] = []
    for pattern in spec.data_files or []:
        if any(c in pattern for c in "*?["):
            confine(repo_root, Path(pattern).parent, "evaluation.dataset.data_files entry")
            matches = sorted(p for p in repo_root.resolve().glob(pattern) if p.is_file())
            if not matches:
                raise TaskDataError(f"evaluation.dataset.data_files: {pattern!r} matches no file")
            files.extend(
                confine(repo_root, p.relative_to(repo_root.resolve()), "data file") for p in matches
            )
        else:
            path = confine(repo_root, pattern, "evaluation.dataset.data_files entry")
            if not path.is_file():
                raise TaskDataError(f"evaluation.dataset.data_files: {pattern!r} does not exist")
            files.append(path)
    if not files:
        raise TaskDataError(f"a local {spec.path} dataset needs evaluation.dataset.data_files")
    return files


def _check_hub_id(path: str, repo_root: Path) -> None:
    """Hub ids only (``org/name``): no local folder and no loader built into ``datasets``
    (``fasta``, ``conll``…) sneaking in through ``load_dataset``'s path lookup, which
    would read files relative to the working directory, unconfined and unfingerprinted."""
    parts = path.split("/")
    if (
        len(parts) != 2
        or any(p in ("", ".", "..") for p in parts)
        or path.startswith(("/", "~"))
        or "\\" in path
        or (repo_root / parts[0]).exists()
        or Path(parts[0]).exists()
    ):
        raise TaskDataError(
            f"evaluation.dataset.path {path!r} is neither a hub dataset id ('org/name') nor one "
            f"of {', '.join(LOCAL_BUILDERS)} with data_files"
        )


def _check_download_size(spec: DatasetSpec, repo_root: Path) -> None:
    """The split must fit ``measure.max_download_gb`` (checked before download); offline,
    nothing can be downloaded, so there is nothing to check."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    from mcval.policy import load_policy
    from mcval.tasks.dataset_size import check_dataset_download

    limit = load_policy(repo_root).measure.max_download_gb
    check_dataset_download(spec, int(limit * 1e9))


def _cast_media(ds: Any, media: Mapping[str, MediaKind]) -> Any:
    """Turn off decoding of Audio/Image features: mcval decodes them itself (soundfile/PIL)."""
    import datasets

    for column in {c.split(".")[0] for c in media}:
        feature = ds.features.get(column)
        if isinstance(feature, datasets.Audio):
            ds = ds.cast_column(column, datasets.Audio(decode=False))
        elif isinstance(feature, datasets.Image):
            ds = ds.cast_column(column, datasets.Image(decode=False))
    return ds


def media_columns(columns: Mapping[str, str]) -> dict[str, MediaKind]:
    """Column name → media kind for the media roles among ``columns`` (role → column), so
    a task never declares what its role names already say."""
    return {columns[kind]: kind for kind in MEDIA_ROLES if kind in columns}


def load_slice(
    spec: DatasetSpec,
    repo_root: Path,
    columns: Mapping[str, str],
    media: Mapping[str, MediaKind] | None = None,
) -> EvalSlice:
    """Load the declared slice and check that every mapped column exists.

    ``columns`` maps role → column name (dotted names reach into dict columns); ``media``
    maps column name → kind for columns whose values are audio or images.
    """
    import datasets

    media = media or {}
    repo_root = repo_root.resolve()
    sources: list[tuple[str, Path | None, int]] = []  # (label, base dir, row count)
    if spec.path in LOCAL_BUILDERS:
        if spec.name is not None or spec.revision is not None:
            raise TaskDataError(
                "evaluation.dataset.name and .revision apply to hub datasets, not local files"
            )
        parts = []
        for file in _local_files(spec, repo_root):
            try:
                part = datasets.load_dataset(
                    spec.path, data_files={spec.split: [str(file)]}, split=spec.split
                )
            except Exception as exc:  # parse errors of the user's file
                if "corresponds to no data" in str(exc):  # datasets' words for 0 rows
                    raise TaskDataError(
                        f"{file.relative_to(repo_root)} has no rows: the evaluation slice "
                        "would be empty"
                    ) from exc
                raise TaskDataError(
                    f"cannot read {file.relative_to(repo_root)} as {spec.path}: {exc}"
                ) from exc
            parts.append(part)
            sources.append((str(file.relative_to(repo_root)), file.parent, len(part)))
        try:
            ds = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        except Exception as exc:
            raise TaskDataError(
                f"the data files do not share the same columns and types: {exc}"
            ) from exc
        description = f"{spec.path} files {', '.join(s[0] for s in sources)}"
    else:
        if spec.data_files:
            raise TaskDataError(
                f"evaluation.dataset.data_files needs path: one of {', '.join(LOCAL_BUILDERS)}"
            )
        _check_hub_id(spec.path, repo_root)
        _check_download_size(spec, repo_root)
        try:
            ds = datasets.load_dataset(
                spec.path, spec.name, split=spec.split, revision=spec.revision
            )
        except Exception as exc:
            raise TaskDataError(
                f"cannot load hub dataset {spec.path!r} (name {spec.name}, split {spec.split}, "
                f"revision {spec.revision}): {exc}"
            ) from exc
        description = f"{spec.path} ({spec.split})"

    names = list(ds.column_names)
    for role, column in columns.items():
        if column.split(".")[0] not in names:
            raise TaskDataError(
                f"evaluation.columns: column {column!r} (role {role!r}) is not in {description}; "
                f"its columns are: {', '.join(names)}. Map the role with evaluation.columns, "
                f"e.g. {{{role}: <column>}}"
            )
    ds = _cast_media(ds, media)
    indices = select_indices(len(ds), spec.samples, spec.seed)
    if not indices:
        raise TaskDataError(f"the evaluation slice of {description} is empty (no rows)")
    selected = ds.select(indices).to_list()
    rows = [
        Row(
            values=values, where=_where(index, sources, description), base_dir=_base(index, sources)
        )
        for index, values in zip(indices, selected, strict=True)
    ]
    return EvalSlice(
        rows=rows, features=ds.features, repo_root=repo_root, description=description, columns=names
    )


def _locate(index: int, sources: Sequence[tuple[str, Path | None, int]]) -> tuple[int, int]:
    offset = 0
    for n, (_, _, count) in enumerate(sources):
        if index < offset + count:
            return n, index - offset
        offset += count
    raise IndexError(index)


def _where(index: int, sources: Sequence[tuple[str, Path | None, int]], description: str) -> str:
    if not sources:
        return f"{description} row index {index}"
    n, local = _locate(index, sources)
    return f"{sources[n][0]} row {local + 1}"


def _base(index: int, sources: Sequence[tuple[str, Path | None, int]]) -> Path | None:
    if not sources:
        return None
    return sources[_locate(index, sources)[0]][1]


def cell(row: Row, column: str) -> Any:
    """The value of ``column`` in ``row``; a dotted name reaches into dict columns."""
    if column in row.values:
        return row.values[column]
    value: Any = row.values
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            raise TaskDataError(f"{row.where}: no value at column {column!r}")
        value = value[part]
    return value


def text_cell(row: Row, column: str, role: str, allow_empty: bool = True) -> str:
    """A text value, checked to be a string."""
    value = cell(row, column)
    if not isinstance(value, str):
        raise TaskDataError(
            f"{row.where}: column {column!r} (role {role!r}) must hold text, "
            f"not {type(value).__name__}"
        )
    if not allow_empty and not value.strip():
        raise TaskDataError(f"{row.where}: column {column!r} (role {role!r}) is empty")
    return value


def media_source(row: Row, column: str, repo_root: Path) -> Path | bytes:
    """Where an audio/image cell's content is: a confined local file, or encoded bytes.

    Accepts a path string (local data files only, relative to the data file's folder) or
    the ``{"bytes": ..., "path": ...}`` mapping of an undecoded hub Audio/Image feature.
    """
    value = cell(row, column)
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if not isinstance(value, str) or not value:
        raise TaskDataError(f"{row.where}: column {column!r} holds no file path or file bytes")
    if row.base_dir is None:
        raise TaskDataError(
            f"{row.where}: column {column!r} holds a path ({value!r}) but no file bytes; "
            "paths are read only for local data files"
        )
    base = row.base_dir.resolve()
    candidate = Path(value)
    if candidate.is_absolute():
        raise TaskDataError(
            f"{row.where}: {column} path {value!r} must be relative to the data file's folder"
        )
    resolved = (base / candidate).resolve()
    if not resolved.is_relative_to(repo_root.resolve()):
        raise TaskDataError(f"{row.where}: {column} path {value!r} resolves outside the repository")
    if not resolved.is_file():
        raise TaskDataError(f"{row.where}: {column} file {value!r} does not exist")
    return resolved
