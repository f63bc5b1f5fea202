"""``mcval import-table`` on the real hand-written course READMEs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mcval.commands.import_table import import_table as run
from mcval.errors import InputError
from mcval.importer import (
    TODO,
    classify_columns,
    import_table,
    load_team_map,
    parse_measure,
    print_report,
    split_quality,
)
from mcval.policy import Policy
from mcval.submission.check import check_paths

FIXTURES = Path(__file__).parent / "fixtures" / "course-2025"
# file → (tables, files written, cells not converted, conversions to check, skipped tables)
EXPECTED = {
    "README-061a1c2.md": (1, 1, 0, 1, 0),
    "README-0c38655.md": (1, 6, 0, 6, 0),
    "README-36b8cd1.md": (1, 4, 0, 0, 0),
    "README-4c9136f.md": (1, 1, 0, 0, 0),
    "README-5e47171.md": (1, 8, 0, 0, 0),
    "README-6216869.md": (1, 1, 0, 2, 0),
    "README-69c0733.md": (2, 3, 8, 1, 1),
    "README-884610d.md": (1, 4, 0, 0, 0),  # + 1 row of dashes only, skipped
    "README-99d2e56.md": (2, 5, 4, 0, 0),  # + 3 rows "Не применимо" / N/A only, skipped
    "README-a6aeb88.md": (1, 1, 2, 0, 0),
    "README-da335a2.md": (1, 5, 0, 0, 0),
    "README-de78f8e.md": (1, 4, 12, 0, 0),
    "README-defcc81.md": (1, 0, 0, 0, 1),
    "README-f1d99ee.md": (1, 6, 0, 6, 0),
    "README-f9e184c.md": (1, 4, 13, 0, 0),
}


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fixture_imports_into_checkable_files(name: str, tmp_path: Path) -> None:
    out = tmp_path / "submissions"
    report = import_table(FIXTURES / name, out, Policy())
    counts = (
        report.tables,
        len(report.files),
        len(report.issues),
        len(report.notes),
        len(report.skipped_tables),
    )
    assert counts == EXPECTED[name]
    written = sorted(out.rglob("*.yaml"))
    assert len(written) == len(report.files)
    if written:
        # What the README cannot say is a placeholder, and check refuses each one until a
        # person writes the real value; nothing else in an imported file is an error, except
        # a BLEU the table wrote as a 0–1 score (listed as a note to check above).
        check = check_paths([out], tmp_path, Policy())
        other = [
            str(e)
            for e in check.errors
            if "is a placeholder; " not in e.message and "looks like a 0–1 score" not in e.message
        ]
        assert other == []
        assert all(not f.ok for f in check.files)
        assert any("'TODO/dataset' is a placeholder" in e.message for e in check.errors)
    for file in written:
        text = file.read_text(encoding="utf-8")
        assert text.startswith(f"# Imported by `mcval import-table` from {name}, table ")
        assert f"# {TODO}: evaluation.dataset:" in text
        assert f"# {TODO}: model.revision:" in text


def test_exact_conversions_with_units_and_hardware(tmp_path: Path) -> None:
    report = import_table(FIXTURES / "README-36b8cd1.md", tmp_path / "submissions", Policy())
    assert [f.id for f in report.files] == [
        "TODO-team/bert-large-ner-original",
        "TODO-team/bert-large-ner-quantized-float16",
        "TODO-team/bert-large-ner-quantized-int8",
        "TODO-team/bert-large-ner-pruning",
    ]
    original = load(tmp_path / "submissions/TODO-team/bert-large-ner-original.yaml")
    assert original == {
        "schema": 1,
        "team": "TODO-team",
        "model": {"id": "dslim/bert-large-NER", "task": "token-classification"},
        "method": {
            "name": "Оригинал",
            "notes": "Imported by mcval import-table from README-36b8cd1.md, table 1, row 1 "
            "(line 9).",
        },
        "evaluation": {
            "dataset": {"path": "TODO/dataset", "split": "test"},
            "metrics": ["entity_f1"],
        },
        "reported": {
            "weights_mb": 1361.92,  # 1.33Gb
            "latency_cpu_ms": 769.1,  # 769.1ms
            "latency_gpu_ms": 31.9,  # 31.9ms (Tesla T4)
            "ram_mb": 2764.8,  # 2.7Gb
            "vram_mb": 1433.6,  # 1.4Gb
            "quality": {"entity_f1": 0.828},  # 82.8% F1
            "hardware": {"gpu": "Tesla T4"},
        },
    }
    int8 = load(tmp_path / "submissions/TODO-team/bert-large-ner-quantized-int8.yaml")
    assert int8["method"]["baseline"] == "TODO-team/bert-large-ner-original"
    assert int8["reported"] == {
        "weights_mb": 424.0,
        "latency_cpu_ms": 166.7,
        "ram_mb": 424.0,
        "vram_mb": 424.0,
        "quality": {"entity_f1": 0.726},
    }


def test_header_units_merged_cells_and_report_lines(tmp_path: Path) -> None:
    out = tmp_path / "submissions"
    report = import_table(FIXTURES / "README-884610d.md", out, Policy(), default_team="rubert_team")
    int8 = load(out / "rubert_team/rubert-base-cased-kvantizatsiya-int8.yaml")
    # "Время инференса (GPU, seconds/text)": bare seconds → ms; "Точность" → accuracy.
    assert int8["reported"] == {
        "weights_mb": 455.0,
        "latency_gpu_ms": 19.614,
        "vram_mb": 500.0,
        "quality": {"accuracy": 0.415},
    }
    assert int8["model"]["task"] == "text-classification"

    report = import_table(FIXTURES / "README-99d2e56.md", tmp_path / "w", Policy())
    fp16 = load(tmp_path / "w/TODO-team/whisper-large-v3-fp16.yaml")
    assert fp16["reported"]["quality"] == {"wer": 0.1468, "cer": 0.049}  # "0.1468 / 0.0490"
    assert fp16["model"] == {
        "id": "openai/whisper-large-v3",
        "task": "automatic-speech-recognition",
    }
    opt = load(tmp_path / "w/TODO-team/opt-125m-gptq-4-bit.yaml")
    assert opt["reported"] == {
        "weights_mb": 123.91,
        "latency_gpu_ms": 320.15,
        "vram_mb": 367.17,  # "VRAM (Inference, MB)" wins over "VRAM (Perplexity, MB)"
        "quality": {"perplexity": 30.93},
    }
    assert [i.describe() for i in report.issues[:2]] == [
        "README-99d2e56.md:14: table 1, row 3, column 'Размер весов (прибл. MB)': "
        "'2481.61 (эфф.) / 2940.31 (общ.)': '2481.61 (эфф.) / 2940.31 (общ.)' is not a number "
        'with a unit; expected a size (e.g. 922.15, "96.66 MB", "1.33 GB")',
        "README-99d2e56.md:58: table 2, row 1, column 'VRAM (Perplexity, MB)': '1579.18': "
        "no submission field for this column",
    ]


def test_quality_cells_not_mcval_metrics_are_reported(tmp_path: Path) -> None:
    report = import_table(FIXTURES / "README-f9e184c.md", tmp_path / "s", Policy())
    assert report.issues[0].describe() == (
        "README-f9e184c.md:72: table 1, row 4, column 'Использование VRAM (MB)': "
        "'412.35 Mb Mb': '412.35 Mb Mb' is not a number with a unit; expected a size "
        '(e.g. 922.15, "96.66 MB", "1.33 GB")'
    )
    assert report.issues[1].model_dump() == {
        "file": "README-f9e184c.md",
        "table": 1,
        "row": 1,
        "line": 69,
        "column": "Качество (Precision, Recall, F1-Score))",
        "cell": "0.8474 precision 0.8342 recall 0.8239 f1-score",
        "reason": "precision 0.8474: not a metric mcval computes for image-classification "
        "(not kept)",
    }


def test_notes_for_assumptions(tmp_path: Path) -> None:
    report = import_table(FIXTURES / "README-6216869.md", tmp_path / "s", Policy())
    assert [n.reason for n in report.notes] == [
        "bleu given twice (0.635248, 0.636546); kept the first",
        "BLEU 0.635248 looks like a 0–1 score; mcval's BLEU is 0–100: check it",
    ]
    data = load(tmp_path / "s/TODO-team/qwen2.5-1.5b-instruct-original.yaml")
    assert data["model"]["task"] == "translation"
    assert data["reported"]["quality"] == {"bleu": 0.635248}
    assert data["reported"]["weights_mb"] == 5888.802734
    report = import_table(FIXTURES / "README-061a1c2.md", tmp_path / "v", Policy())
    data = load(tmp_path / "v/TODO-team/vit-base-patch16-224-in21k-original.yaml")
    assert data["model"]["task"] == "image-classification"
    assert data["reported"]["quality"] == {"accuracy": 0.3225}  # "Accuracy 32.25% on CPU, …"
    assert report.notes[0].reason == "33.6% has no metric name (not kept)"


def test_team_map_default_team_and_placeholder(tmp_path: Path) -> None:
    team_map = tmp_path / "teams.yaml"
    team_map.write_text("dslim/bert-large-NER: ner_team\n", encoding="utf-8")
    out = tmp_path / "submissions"
    report = import_table(
        FIXTURES / "README-da335a2.md", out, Policy(), load_team_map(team_map), "fallback"
    )
    assert {f.id.split("/")[0] for f in report.files} == {"ner_team"}
    text = (out / "ner_team/bert-large-ner-clustering-128-clusters.yaml").read_text()
    assert "team: ner_team\n" in text
    assert "# TODO(mcval import): the table does not say which team" not in text
    placeholder = import_table(FIXTURES / "README-4c9136f.md", tmp_path / "p", Policy())
    text = (tmp_path / "p" / placeholder.files[0].id).with_suffix(".yaml").read_text()
    assert (
        "# TODO(mcval import): the table does not say which team this row is; set `team` and "
        "move the file to submissions/<team>/ (or rerun with --team-map / --default-team)\n"
        "team: TODO-team\n"
    ) in text
    team_map.write_text("- not a mapping\n", encoding="utf-8")
    with pytest.raises(InputError, match="the team map is a YAML mapping"):
        load_team_map(team_map)


def test_allowed_dataset_is_the_placeholder_when_the_policy_restricts(tmp_path: Path) -> None:
    policy = Policy.model_validate(
        {"allowed_datasets": {"token-classification": ["eriktks/conll2003"]}}
    )
    import_table(FIXTURES / "README-4c9136f.md", tmp_path / "submissions", policy)
    (file,) = (tmp_path / "submissions").rglob("*.yaml")
    assert load(file)["evaluation"]["dataset"]["path"] == "eriktks/conll2003"
    errors = check_paths([tmp_path / "submissions"], tmp_path, policy).errors
    assert [e.message.split(":")[0] for e in errors] == ["team"]  # only the team is unknown


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "submissions"
    import_table(FIXTURES / "README-4c9136f.md", out, Policy())
    (file,) = out.rglob("*.yaml")
    file.write_text("edited by hand\n", encoding="utf-8")
    report = import_table(FIXTURES / "README-4c9136f.md", out, Policy())
    assert report.not_written == [str(file)]
    assert file.read_text(encoding="utf-8") == "edited by hand\n"
    import_table(FIXTURES / "README-4c9136f.md", out, Policy(), force=True)
    assert file.read_text(encoding="utf-8").startswith("# Imported by")


def test_run_prints_the_report_and_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".git").mkdir()
    out = tmp_path / "submissions"
    ns: dict[str, Any] = {"out": out, "team_map": None, "default_team": "demo", "repo": tmp_path}
    assert run(FIXTURES / "README-a6aeb88.md", **ns) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("README-a6aeb88.md: 1 table(s), 1 submission file(s)")
    assert printed[1] == f"  wrote  {out / 'demo/original.yaml'} (6 TODO)"
    assert printed[2] == "2 cell(s) could not be converted:"
    assert printed[3].startswith("  README-a6aeb88.md:69: table 1, row 1, column 'Размер весов'")
    assert run(FIXTURES / "README-36b8cd1.md", **ns) == 0


@pytest.mark.parametrize(
    ("cell", "field", "unit", "expected"),
    [
        ("96.66Mb", "weights_mb", "MB", (96.66, None, None)),
        ("1.33Gb", "weights_mb", "MB", (1361.92, None, None)),
        ("431 MB", "ram_mb", "MB", (431.0, None, None)),
        ("769.1ms", "latency_cpu_ms", "ms", (769.1, None, None)),
        ("12.9 ms (Tesla T4)", "latency_gpu_ms", "ms", (12.9, "Tesla T4", None)),
        ("0.029138", "latency_gpu_ms", "s", (29.138, None, None)),
        ("N/A", "vram_mb", "MB", (None, None, None)),
        (
            "0.42+-0.0005 (tokens/sec)",
            "latency_gpu_ms",
            "ms",
            (None, None, "a throughput (tokens per second), not the time of one call"),
        ),
        (
            "2.38095 (sec/tokens)",
            "latency_gpu_ms",
            "ms",
            (None, None, "'(sec/tokens)' is a unit, not the time of one call in ms"),
        ),
        (
            "1.5 ± 0.1",
            "latency_cpu_ms",
            "ms",
            (None, None, "a value with a spread; write the median alone"),
        ),
    ],
)
def test_parse_measure(
    cell: str, field: str, unit: str, expected: tuple[float | None, str | None, str | None]
) -> None:
    assert parse_measure(cell, field, unit) == expected


@pytest.mark.parametrize(
    ("cell", "header", "expected"),
    [
        ("1.34% CER 3.83% WER", "Качество", [("cer", "1.34", True), ("wer", "3.83", True)]),
        (
            "0.8474 precision 0.8342 recall 0.8239 f1-score",
            "Quality",
            [("precision", "0.8474", False), ("recall", "0.8342", False), ("f1", "0.8239", False)],
        ),
        ("PPL 12.3", "Качество (PPL, BLEU, Accuracy)", [("perplexity", "12.3", False)]),
        ("Accuracy 80.00%", "Quality", [("accuracy", "80.00", True)]),
        (
            "0.1468 / 0.0490",
            "Качество (WER / CER)",
            [("wer", "0.1468", False), ("cer", "0.0490", False)],
        ),
        ("27.62", "Качество (Perplexity GPU)", [("perplexity", "27.62", False)]),
    ],
)
def test_split_quality(cell: str, header: str, expected: list[tuple[str, str, bool]]) -> None:
    parsed = split_quality(cell, header)
    assert parsed.values == expected
    assert parsed.problems == []


def test_ambiguous_quality_cell() -> None:
    parsed = split_quality("0.63", "Качество (PPL, BLEU, Accuracy)")
    assert parsed.values == []
    assert parsed.problems == ["which metric is it? the header names: perplexity, bleu, accuracy"]


def test_column_roles() -> None:
    columns = classify_columns(
        [
            "Модель",
            "Метод",
            "Размер весов (прибл. MB)",
            "Время инференса (GPU, seconds/text)",
            "Использование RAM (MB) (пиковое процесса)",
            "VRAM (Perplexity, MB)",
            "VRAM (Inference, MB)",
            "Ускорение",
            "Качество (WER / CER)",
        ]
    )
    assert columns.roles == {
        "model": 0,
        "method": 1,
        "weights_mb": 2,
        "latency_gpu_ms": 3,
        "ram_mb": 4,
        "vram_mb": 6,
        "quality": 8,
    }
    assert columns.ignored == [5, 7]
    assert columns.units["latency_gpu_ms"] == "s"


NO_NUMBERS = """\
# Results

| Модель | Метод | Размер весов | Время инференса (CPU, ms) | Качество (Accuracy) |
| :--- | :---: | :---: | :---: | :---: |
| bert-base-uncased | Оригинал | 417.7 | 12.1 | 91.2% |
| bert-base-uncased | INT8 | - | N/A | — |
| org/model-x | Оригинал | | | |
"""


def test_rows_without_numbers_are_skipped_and_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(NO_NUMBERS, encoding="utf-8")
    out = tmp_path / "submissions"
    report = import_table(readme, out, Policy(), default_team="t1")
    assert [f.id for f in report.files] == ["t1/bert-base-uncased-original"]
    assert [(r.table, r.row, r.line, r.reason) for r in report.skipped_rows] == [
        (1, 2, 6, "no number in the row"),
        (1, 3, 7, "no number in the row"),
    ]
    print_report(report)
    printed = capsys.readouterr().out
    assert "  skipped row 2 of table 1 (line 6): no number in the row\n" in printed
    assert sorted(p.name for p in out.rglob("*.yaml")) == ["bert-base-uncased-original.yaml"]


def test_model_id_without_organisation_gets_a_todo(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(NO_NUMBERS, encoding="utf-8")
    import_table(readme, tmp_path / "submissions", Policy(), default_team="t1")
    text = (tmp_path / "submissions/t1/bert-base-uncased-original.yaml").read_text()
    assert (
        f"# {TODO}: model.id: 'bert-base-uncased' has no organisation; write the full hub id "
        "'org/name' as huggingface.co shows it (e.g. google-bert/bert-base-uncased)\n"
    ) in text
