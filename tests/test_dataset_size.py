"""Issue 15, item 8: a hub dataset split larger than ``max_download_gb`` is refused before
any data is downloaded (the hub's file sizes decide; tests are offline, so the hub's
answers are stood in for at the two calls mcval makes)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mcval.submission.schema import DatasetSpec
from mcval.tasks.data import load_slice
from mcval.tasks.dataset_size import (
    DatasetFiles,
    DatasetTooLargeError,
    HubDatasetMetadata,
    check_dataset_download,
)

GB = 10**9
SHA = "0123456789abcdef0123456789abcdef01234567"
SPEC = DatasetSpec(path="org/huge", name="clean", split="test", revision=SHA)


class FakeMetadata:
    def __init__(self, files: DatasetFiles) -> None:
        self.result = files
        self.asked: list[str] = []

    def files(self, spec: DatasetSpec) -> DatasetFiles:
        self.asked.append(spec.path)
        return self.result


def test_split_over_the_limit_is_refused_with_its_size() -> None:
    files = DatasetFiles(
        sizes={"clean/test-0.parquet": 15 * GB, "clean/test-1.parquet": 15 * GB, "README.md": 9},
        split_files=["clean/test-0.parquet", "clean/test-1.parquet"],
    )
    with pytest.raises(DatasetTooLargeError) as info:
        check_dataset_download(SPEC, 20 * GB, FakeMetadata(files))
    assert info.value.message == (
        "hub dataset 'org/huge' (name clean, split test) needs 30.00 GB, over this course's "
        "limit of 20.00 GB (mcval.toml: measure.max_download_gb); choose a smaller dataset or "
        "split, or put the evaluation rows in local data_files"
    )


def test_only_the_split_is_counted_when_the_loader_resolves_it() -> None:
    files = DatasetFiles(
        sizes={"clean/train-0.parquet": 900 * GB, "clean/test-0.parquet": 2 * GB},
        split_files=["clean/test-0.parquet"],
    )
    assert check_dataset_download(SPEC, 20 * GB, FakeMetadata(files)) == 2 * GB


def test_unresolved_split_counts_the_whole_repository() -> None:
    files = DatasetFiles(
        sizes={"a.parquet": 15 * GB, "b.parquet": 15 * GB, "README.md": 10**6}, split_files=None
    )
    with pytest.raises(DatasetTooLargeError, match=r"needs 30\.00 GB"):
        check_dataset_download(SPEC, 20 * GB, FakeMetadata(files))


def test_a_size_the_hub_does_not_report_is_refused() -> None:
    files = DatasetFiles(sizes={"test.parquet": None}, split_files=["test.parquet"])
    with pytest.raises(DatasetTooLargeError, match="does not report the size of every file"):
        check_dataset_download(SPEC, 20 * GB, FakeMetadata(files))


def test_hub_metadata_reads_sizes_and_the_splits_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two calls to the hub, answered as huggingface_hub and datasets answer them."""
    import datasets
    import huggingface_hub

    calls: list[tuple[str, Any]] = []

    def dataset_info(self: Any, repo_id: str, **kwargs: Any) -> Any:
        calls.append(("info", (repo_id, kwargs)))
        siblings = [
            SimpleNamespace(rfilename="clean/test-0.parquet", size=3 * GB),
            SimpleNamespace(rfilename="clean/train-0.parquet", size=500 * GB),
        ]
        return SimpleNamespace(siblings=siblings)

    def load_dataset_builder(path: str, name: str | None, **kwargs: Any) -> Any:
        calls.append(("builder", (path, name, kwargs)))
        url = f"hf://datasets/org/huge@{SHA}/clean/test-0.parquet"
        return SimpleNamespace(config=SimpleNamespace(data_files={"test": [url]}))

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(datasets, "load_dataset_builder", load_dataset_builder)
    files = HubDatasetMetadata().files(SPEC)
    assert files == DatasetFiles(
        sizes={"clean/test-0.parquet": 3 * GB, "clean/train-0.parquet": 500 * GB},
        split_files=["clean/test-0.parquet"],
    )
    assert calls[0] == ("info", ("org/huge", {"revision": SHA, "files_metadata": True}))
    assert check_dataset_download(SPEC, 4 * GB, HubDatasetMetadata()) == 3 * GB


def test_load_slice_refuses_before_load_dataset_is_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets
    from huggingface_hub import constants

    (tmp_path / "mcval.toml").write_text("[measure]\nmax_download_gb = 1\n")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    big = DatasetFiles(sizes={"test.parquet": 2 * GB}, split_files=["test.parquet"])
    monkeypatch.setattr(HubDatasetMetadata, "files", lambda self, spec: big)
    loads: list[Any] = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: loads.append(a))
    with pytest.raises(DatasetTooLargeError, match=r"needs 2\.00 GB, over this course.s limit of"):
        load_slice(SPEC, tmp_path, {"text": "text"})
    assert loads == []
