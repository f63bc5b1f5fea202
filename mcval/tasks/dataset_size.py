"""A hub dataset's download size, checked against ``measure.max_download_gb`` before download.

Why: ``load_dataset`` downloads every file of a split whole (the rows are sampled
afterwards), and ``max_download_gb`` covered models only, so a submission naming a
multi-terabyte dataset would fill the runner's disk. The files the loader would read for
the declared config and split come from ``datasets``' own resolution (the builder's
``data_files``: metadata only), their sizes from the hub's file listing
(``HfApi.dataset_info(files_metadata=True)``); a size the hub does not report, or a split
whose files cannot be resolved, counts the whole repository.

Streaming is not used: the slice rule ranks every row of the split by a seeded digest, so
taking the first rows of a stream would pick different rows than the published rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mcval.tasks.base import TaskDataError

if TYPE_CHECKING:
    from mcval.submission.schema import DatasetSpec

_NOT_DATA = {".gitattributes", "README.md", ".gitignore"}


class DatasetTooLargeError(TaskDataError):
    """The split's files are larger than ``measure.max_download_gb``."""


@dataclass(frozen=True)
class DatasetFiles:
    """What the hub says about a dataset repository at one revision."""

    sizes: dict[str, int | None]  # repository path → bytes (None: not reported)
    split_files: list[str] | None  # paths the loader reads for the split; None: unknown


class DatasetMetadata(Protocol):
    def files(self, spec: DatasetSpec) -> DatasetFiles: ...


def _repo_path(url: str, repo_id: str) -> str:
    """``hf://datasets/org/name@rev/data/x.parquet`` → ``data/x.parquet``."""
    match = re.match(rf"hf://datasets/{re.escape(repo_id)}(?:@[^/]+)?/(.+)$", url)
    return match[1] if match else url


class HubDatasetMetadata:
    """The real hub: file sizes from ``HfApi.dataset_info``, the split's files from
    ``datasets.load_dataset_builder`` (reads the dataset card and listing, no data)."""

    def files(self, spec: DatasetSpec) -> DatasetFiles:
        import datasets
        from huggingface_hub import HfApi

        try:
            info = HfApi().dataset_info(spec.path, revision=spec.revision, files_metadata=True)
        except Exception as exc:
            raise TaskDataError(
                f"cannot list hub dataset {spec.path!r} to check its size before download: {exc}"
            ) from exc
        sizes = {s.rfilename: s.size for s in info.siblings or []}
        split_files: list[str] | None = None
        try:
            builder = datasets.load_dataset_builder(spec.path, spec.name, revision=spec.revision)
            files = (builder.config.data_files or {}).get(spec.split)
            if files:
                split_files = [_repo_path(str(f), spec.path) for f in files]
        except Exception:  # unresolvable: count the whole repository
            split_files = None
        return DatasetFiles(sizes=sizes, split_files=split_files)


def download_bytes(files: DatasetFiles) -> int | None:
    """Bytes the loader downloads for the split; None when a size is unknown."""
    if files.split_files and all(p in files.sizes for p in files.split_files):
        wanted = files.split_files
    else:
        wanted = [p for p in files.sizes if p not in _NOT_DATA]
    sizes = [files.sizes[p] for p in wanted]
    if any(size is None for size in sizes):
        return None
    return sum(size for size in sizes if size is not None)


def check_dataset_download(
    spec: DatasetSpec, max_bytes: int, metadata: DatasetMetadata | None = None
) -> int:
    """Refuse a hub dataset split larger than ``max_bytes`` before any data is downloaded;
    returns the bytes it needs."""
    files = (metadata or HubDatasetMetadata()).files(spec)
    needed = download_bytes(files)
    where = f"hub dataset {spec.path!r} (name {spec.name}, split {spec.split})"
    if needed is None:
        raise DatasetTooLargeError(
            f"{where}: the hub does not report the size of every file, so it cannot be "
            "checked against measure.max_download_gb before download; use a dataset whose "
            "files the hub lists with sizes, or local data_files"
        )
    if needed > max_bytes:
        raise DatasetTooLargeError(
            f"{where} needs {needed / 1e9:.2f} GB, over this course's limit of "
            f"{max_bytes / 1e9:.2f} GB (mcval.toml: measure.max_download_gb); choose a smaller "
            "dataset or split, or put the evaluation rows in local data_files"
        )
    return needed
