"""Evaluation slice loading: local files, confinement, the slice rule, column errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mcval.errors import InputError
from mcval.submission.schema import DatasetSpec
from mcval.tasks.base import TaskDataError, resolve_columns, resolve_metrics
from mcval.tasks.data import cell, load_slice, media_source, select_indices


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def spec(**fields: object) -> DatasetSpec:
    return DatasetSpec.model_validate(fields)


def test_select_indices_rule_is_sha256_ranking_back_in_dataset_order() -> None:
    chosen = select_indices(50, 5, seed=3)
    ranked = sorted(range(50), key=lambda i: hashlib.sha256(f"3:{i}".encode()).digest())
    assert chosen == sorted(ranked[:5])
    assert chosen == select_indices(50, 5, seed=3)
    assert chosen != select_indices(50, 5, seed=4)
    assert select_indices(7, 10, seed=0) == list(range(7))
    assert len(select_indices(500, None, seed=0)) == 200  # DEFAULT_SAMPLES


def test_local_jsonl_slice_rows_named_by_file_and_row(tmp_path: Path) -> None:
    rows = [{"text": f"row {i}", "label": i % 2} for i in range(30)]
    write_jsonl(tmp_path / "data" / "eval.jsonl", rows)
    data = load_slice(
        spec(path="json", data_files=["data/eval.jsonl"], split="test", samples=4, seed=1),
        tmp_path,
        {"text": "text", "label": "label"},
    )
    expected = select_indices(30, 4, seed=1)
    assert [r.values["text"] for r in data.rows] == [f"row {i}" for i in expected]
    assert [r.where for r in data.rows] == [f"data/eval.jsonl row {i + 1}" for i in expected]
    assert data.rows[0].base_dir == (tmp_path / "data").resolve()


def test_several_files_keep_their_own_row_numbers_and_folders(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a" / "one.jsonl", [{"text": "a1"}, {"text": "a2"}])
    write_jsonl(tmp_path / "b" / "two.jsonl", [{"text": "b1"}])
    data = load_slice(
        spec(path="json", data_files=["a/one.jsonl", "b/two.jsonl"]), tmp_path, {"text": "text"}
    )
    assert [(r.values["text"], r.where) for r in data.rows] == [
        ("a1", "a/one.jsonl row 1"),
        ("a2", "a/one.jsonl row 2"),
        ("b1", "b/two.jsonl row 1"),
    ]
    assert data.rows[2].base_dir == (tmp_path / "b").resolve()


def test_csv_and_glob(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x1.csv").write_text("sentence,label\nhi,0\n", encoding="utf-8")
    (tmp_path / "d" / "x2.csv").write_text("sentence,label\nho,1\n", encoding="utf-8")
    data = load_slice(spec(path="csv", data_files=["d/x*.csv"]), tmp_path, {"text": "sentence"})
    assert [r.values["sentence"] for r in data.rows] == ["hi", "ho"]


def test_data_file_outside_repository_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    write_jsonl(tmp_path / "secret.jsonl", [{"text": "x"}])
    (repo / "link.jsonl").symlink_to(tmp_path / "secret.jsonl")
    with pytest.raises(TaskDataError) as err:
        load_slice(spec(path="json", data_files=["../secret.jsonl"]), repo, {"text": "text"})
    assert str(err.value) == (
        "evaluation.dataset.data_files entry '../secret.jsonl' resolves outside the repository"
    )
    with pytest.raises(TaskDataError, match=r"'link\.jsonl' resolves outside the repository"):
        load_slice(spec(path="json", data_files=["link.jsonl"]), repo, {"text": "text"})
    with pytest.raises(TaskDataError, match="must be relative to the repository root"):
        load_slice(spec(path="json", data_files=["/etc/passwd"]), repo, {"text": "text"})


def test_missing_file_and_missing_column(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError) as err:
        load_slice(spec(path="json", data_files=["nope.jsonl"]), tmp_path, {"text": "text"})
    assert str(err.value) == "evaluation.dataset.data_files: 'nope.jsonl' does not exist"
    write_jsonl(tmp_path / "e.jsonl", [{"sentence": "x", "label": 0}])
    with pytest.raises(TaskDataError) as err:
        load_slice(spec(path="json", data_files=["e.jsonl"]), tmp_path, {"text": "text"})
    assert str(err.value) == (
        "evaluation.columns: column 'text' (role 'text') is not in json files e.jsonl; "
        "its columns are: sentence, label. Map the role with evaluation.columns, "
        "e.g. {text: <column>}"
    )


def test_empty_slice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("text,label\n", encoding="utf-8")
    with pytest.raises(TaskDataError) as err:
        load_slice(spec(path="csv", data_files=["empty.csv"]), tmp_path, {"text": "text"})
    assert str(err.value) == "empty.csv has no rows: the evaluation slice would be empty"


def test_hub_ids_that_look_like_local_paths_are_refused(tmp_path: Path) -> None:
    for bad in ("../data", "a/b/c", "./x"):
        with pytest.raises(TaskDataError, match="neither a hub dataset id"):
            load_slice(spec(path=bad), tmp_path, {})
    with pytest.raises(TaskDataError, match="data_files needs path: one of json, csv"):
        load_slice(spec(path="org/name", data_files=["x.jsonl"]), tmp_path, {})


def test_loader_names_and_local_folders_never_reach_load_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15.6, in the measuring child too: a bare loader name (``fasta``, ``conll``)
    or an ``org/name`` that is a folder of the repository (or of the working directory)
    would make ``load_dataset`` read files there, unconfined; refused before it is called."""
    import datasets

    calls: list[str] = []
    monkeypatch.setattr(datasets, "load_dataset", lambda path, *a, **k: calls.append(path))
    (tmp_path / "submissions/mallory").mkdir(parents=True)
    (tmp_path / "submissions/mallory/x.fasta").write_text(">a\nACGT\n")
    monkeypatch.chdir(tmp_path)
    for bad in ("fasta", "conll", "submissions/mallory"):
        with pytest.raises(TaskDataError, match="neither a hub dataset id"):
            load_slice(spec(path=bad), tmp_path, {})
    assert calls == []


def test_unreachable_hub_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match=r"^cannot load hub dataset 'nobody/none' \(name None"):
        load_slice(spec(path="nobody/none"), tmp_path, {})


def test_dotted_columns_and_media_paths(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "d" / "t.jsonl",
        [{"translation": {"en": "hi", "de": "hallo"}, "audio": "clips/a.wav"}],
    )
    (tmp_path / "d" / "clips").mkdir()
    (tmp_path / "d" / "clips" / "a.wav").write_bytes(b"RIFF")
    data = load_slice(
        spec(path="json", data_files=["d/t.jsonl"]),
        tmp_path,
        {"source": "translation.en", "target": "translation.de", "audio": "audio"},
    )
    row = data.rows[0]
    assert (cell(row, "translation.en"), cell(row, "translation.de")) == ("hi", "hallo")
    assert media_source(row, "audio", tmp_path) == (tmp_path / "d" / "clips" / "a.wav").resolve()
    with pytest.raises(
        TaskDataError, match=r"^d/t.jsonl row 1: no value at column 'translation.fr'"
    ):
        cell(row, "translation.fr")


def test_media_path_escaping_the_repository_is_refused(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", [{"audio": "../../etc/passwd"}, {"audio": "missing.wav"}])
    data = load_slice(spec(path="json", data_files=["t.jsonl"]), tmp_path, {"audio": "audio"})
    with pytest.raises(TaskDataError) as err:
        media_source(data.rows[0], "audio", tmp_path)
    assert str(err.value) == (
        "t.jsonl row 1: audio path '../../etc/passwd' resolves outside the repository"
    )
    with pytest.raises(TaskDataError) as err:
        media_source(data.rows[1], "audio", tmp_path)
    assert str(err.value) == "t.jsonl row 2: audio file 'missing.wav' does not exist"


def test_roles_and_metrics_resolution() -> None:
    assert resolve_columns("text-classification", {"text": "sentence"}) == {
        "text": "sentence",
        "label": "label",
    }
    assert resolve_columns("text-classification", {"text_pair": "s2"})["text_pair"] == "s2"
    with pytest.raises(InputError, match="unknown role\\(s\\) 'txt' for text-classification"):
        resolve_columns("text-classification", {"txt": "x"})
    assert resolve_metrics("automatic-speech-recognition", []) == ["cer", "wer"]
    with pytest.raises(InputError, match="'bleu' cannot be computed for causal-lm"):
        resolve_metrics("causal-lm", ["bleu"])


def test_task_data_error_is_an_input_error() -> None:
    assert issubclass(TaskDataError, InputError)
