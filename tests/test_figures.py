"""One definition per concept: the figures, the SHA pattern, and records written before."""

from __future__ import annotations

import json
import typing
from pathlib import Path

from fixtures.records import make_record

from mcval.figures import FIGURE_KEYS, FIGURES, Allowance, Delta, format_allowance, format_delta
from mcval.policy import Policy, TableColumn
from mcval.render.comment import metric_cells
from mcval.render.table import HEADERS
from mcval.results import RECORD_VERSION, load_record, save_record
from mcval.submission.schema import SHA_PATTERN, Reported, is_commit_sha
from mcval.verdict import MeasuredFigures, MetricVerdict


def test_every_place_that_holds_figures_holds_exactly_the_registry() -> None:
    """The schema, the measured figures and the table columns name the same five figures
    in the same order; adding one to the registry without the others fails here."""
    assert [f for f in Reported.model_fields if f in FIGURES] == list(FIGURE_KEYS)
    assert set(Reported.model_fields) - set(FIGURES) == {"quality", "hardware"}
    assert [f for f in MeasuredFigures.model_fields if f in FIGURES] == list(FIGURE_KEYS)
    columns = typing.get_args(TableColumn)
    assert [c for c in columns if c in FIGURES] == list(FIGURE_KEYS)
    assert Policy().table.columns == list(columns)


def test_table_headers_come_from_the_registry_word_for_word() -> None:
    assert HEADERS["ru"]["latency_cpu_ms"] == "Время инференса (CPU, ms)"
    assert HEADERS["ru"]["weights_mb"] == "Размер весов"
    assert HEADERS["en"]["vram_mb"] == "VRAM usage (MB)"
    assert list(HEADERS["ru"]) == list(typing.get_args(TableColumn))


def test_figures_know_their_unit_device_and_tolerance() -> None:
    weights, gpu = FIGURES["weights_mb"], FIGURES["latency_gpu_ms"]
    assert (weights.unit, weights.device, weights.tolerance) == ("MB", None, "weights_mb")
    assert (gpu.unit, gpu.device, gpu.tolerance) == ("ms", "gpu", "latency_ms")
    assert {f.key for f in FIGURES.values() if f.device == "cpu"} == {"latency_cpu_ms", "ram_mb"}


def test_numbers_are_written_in_the_table_language() -> None:
    points = Delta(kind="absolute", value=-0.33, unit="pp")
    assert (format_delta(points), format_delta(points, "ru")) == ("-0.33 pp", "-0.33 п.п.")
    assert format_delta(Delta(kind="relative", value=0.033)) == "+3.3 %"
    assert format_delta(None) == ""
    both = Allowance(relative=0.01, absolute=0.01, unit="MB")
    assert format_allowance(both) == "±1 % or ±0.01 MB"
    assert format_allowance(both, "ru") == "±1 % или ±0.01 MB"
    assert format_allowance(Allowance(factor=10.0)) == "×10"


def test_one_sha_pattern() -> None:
    sha = "973afd24965f72e36ca33b3055d56a652f456b46"
    assert is_commit_sha(sha)
    assert not is_commit_sha(sha + "\n")  # a full match: nothing may follow
    assert not is_commit_sha(sha.upper()) and not is_commit_sha(sha[:12])
    assert SHA_PATTERN == r"^[0-9a-f]{40}$"


def test_a_version_1_record_is_still_read(tmp_path: Path) -> None:
    """Version 1 kept a row's difference and tolerance as English text; reading it drops
    them (a reused record is judged again) instead of dropping the whole result."""
    record = make_record("t/row", "org/model", "fp32")
    path = save_record(tmp_path, record)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["record_version"] = 1
    data["report"]["metrics"] = [
        {
            "field": "weights_mb",
            "label": "Weight size (MB)",
            "reported": 16.73,
            "measured": 16.73,
            "delta": "+0.0 %",
            "tolerance": "±1 % or ±0.01 MB",
            "status": "pass",
        }
    ]
    path.write_text(json.dumps(data), encoding="utf-8")
    old = load_record(path)
    assert old.record_version == RECORD_VERSION == 2
    (row,) = old.report.metrics
    assert (row.status, row.delta, row.tolerance) == ("pass", None, None)
    assert old.measured == record.measured


def test_a_verdict_row_is_written_in_the_language_asked() -> None:
    row = MetricVerdict(
        field="weights_mb",
        label="Weight size (MB)",
        reported=16.9,
        measured=16.73,
        delta=Delta(kind="relative", value=0.0102),
        tolerance=Allowance(relative=0.01, absolute=0.01, unit="MB"),
        status="fail",
    )
    assert metric_cells(row) == ["Weight size (MB)", "16.90", "16.73", "+1.0 %", "±1 % or ±0.01 MB"]
    assert metric_cells(row, "ru")[0::4] == ["Размер весов (MB)", "±1 % или ±0.01 MB"]
    accuracy = row.model_copy(
        update={
            "field": "quality.accuracy",
            "label": "Accuracy",
            "reported": 0.81,
            "measured": 0.8125,
            "delta": Delta(kind="absolute", value=-0.25, unit="pp"),
            "tolerance": Allowance(absolute=1.0, unit="pp"),
        }
    )
    cells = ["Accuracy", "81.00 %", "81.25 %", "-0.25 п.п.", "±1 п.п."]
    assert metric_cells(accuracy, "ru") == cells
