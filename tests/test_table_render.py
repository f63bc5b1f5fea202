"""Rows, cells, changes against the baseline and the footnote of the README table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fixtures.records import RUNNER, make_record, whisper_family

from mcval.policy import Policy
from mcval.render.pending import PendingRow
from mcval.render.readme import GENERATED_MARKER
from mcval.render.table import (
    format_number,
    order_rows,
    quality_change,
    render_block,
    render_footnote,
    render_rows,
)

RU_HEADER = (
    "| Модель | Команда | Метод | Размер весов | Время инференса (CPU, ms) | "
    "Время инференса (GPU, ms) | Использование RAM (MB) | Использование VRAM (MB) | "
    "Качество (PPL, BLEU, Accuracy) |"
)


def english(**table: object) -> Policy:
    return Policy.model_validate({"table": {"language": "en", **table}})


def test_seed_row_and_changes_against_the_baseline_ru() -> None:
    lines = render_rows(whisper_family(), Policy())
    assert lines == [
        RU_HEADER,
        "| :--- | :--- | :---: | :---: | :---: | :---: | :---: | :---: | :---: |",
        "| openai/whisper-small | ml_masters | Whisper | 922.15 | 377.65 | 156.32 | 922.80 | "
        "931.01 | 1.34% CER 3.83% WER |",
        "| openai/whisper-small | ml_masters | FP16 | 461.08 (×2.0 меньше) | — | "
        "98.10 (×1.6 быстрее) | — | 480.50 (×1.9 меньше) | "
        "1.34% CER 3.84% WER (±0.00 п.п. CER, +0.01 п.п. WER) |",
        "| openai/whisper-small | ml_masters | INT8 dynamic | 241.57 (×3.8 меньше) | "
        "121.80 (×3.1 быстрее) | — | 410.20 (×2.2 меньше) | — | "
        "1.52% CER 4.23% WER (+0.18 п.п. CER, +0.40 п.п. WER) |",
    ]


def test_english_and_policy_columns() -> None:
    policy = english(columns=["method", "model", "weights_mb", "quality"])
    lines = render_rows(whisper_family(), policy)
    assert lines[0] == "| Method | Model | Weights (MB) | Quality (PPL, BLEU, Accuracy) |"
    assert lines[1] == "| :---: | :--- | :---: | :---: |"
    assert lines[4] == (
        "| INT8 dynamic | openai/whisper-small | 241.57 (×3.8 smaller) | "
        "1.52% CER 4.23% WER (+0.18 pp CER, +0.40 pp WER) |"
    )


def test_slower_larger_and_more() -> None:
    base = make_record("t/base", "m/x", "FP32", weights_mb=100.0, latency_cpu_ms=10.0, ram_mb=50.0)
    worse = make_record(
        "t/worse",
        "m/x",
        "Pruned",
        baseline="t/base",
        weights_mb=125.0,
        latency_cpu_ms=31.0,
        ram_mb=100.0,
    )
    row = render_rows([base, worse], english(columns=["weights_mb", "latency_cpu_ms", "ram_mb"]))[3]
    assert row == "| 125.00 (×1.2 larger) | 31.00 (×3.1 slower) | 100.00 (×2.0 more) |"


def test_quality_change_units() -> None:
    assert quality_change({"perplexity": 13.1}, {"perplexity": 12.3}) == "+0.80 PPL"
    assert quality_change({"bleu": 25.0, "chrf": 50.0}, {"bleu": 27.1}) == "-2.10 BLEU"
    assert quality_change({"accuracy": 0.9}, {"macro_f1": 0.8}) is None
    assert quality_change({"accuracy": 0.9}, {"accuracy": 0.9}, "ru") == "±0.00 п.п. Accuracy"


def test_format_number() -> None:
    assert format_number(922.15) == "922.15"
    assert format_number(922.8) == "922.80"
    assert format_number(None) == "—"


def test_grouping_by_root_model_and_team_baseline_first() -> None:
    records = [
        make_record("zeta/qwen-gptq", "TheBloke/Qwen-GPTQ", "GPTQ", baseline="zeta/qwen"),
        make_record("alpha/qwen", "Qwen/Qwen2.5-1.5B", "FP32"),
        make_record("zeta/qwen", "Qwen/Qwen2.5-1.5B", "FP32"),
        make_record("zeta/qwen-awq", "Qwen/Qwen2.5-1.5B", "AWQ", baseline="zeta/qwen"),
        make_record(
            "zeta/qwen-awq-pruned", "Qwen/Qwen2.5-1.5B", "AWQ + prune", baseline="zeta/qwen-awq"
        ),
        make_record("beta/bert", "google-bert/bert-base-uncased", "Original"),
        make_record("beta/orphan", "x/y", "Orphan", baseline="beta/not-in-table"),
    ]
    order = [
        (row.record.id, row.baseline.id if row.baseline else None) for row in order_rows(records)
    ]
    assert order == [
        ("beta/bert", None),
        ("alpha/qwen", None),
        ("zeta/qwen", None),
        ("zeta/qwen-awq", "zeta/qwen"),
        ("zeta/qwen-awq-pruned", "zeta/qwen-awq"),
        ("zeta/qwen-gptq", "zeta/qwen"),
        ("beta/orphan", None),
    ]


def test_order_does_not_depend_on_input_order() -> None:
    records = whisper_family()
    assert render_rows(records, Policy()) == render_rows(list(reversed(records)), Policy())


def test_submission_text_is_escaped_in_cells() -> None:
    record = make_record(
        "team_x/evil",
        "org/model",
        "INT8 | <script>alert(1)</script> @everyone\n`x` [a](http://e.example)",
        weights_mb=1.0,
    )
    line = render_rows([record], english(columns=["team", "method", "weights_mb"]))[2]
    assert line == (
        "| team_x | INT8 \\| &lt;script&gt;alert(1)&lt;/script&gt; @&#8203;everyone "
        "\\`x\\` \\[a\\](http://e.example) | 1.00 |"
    )


def test_footnote_environment_date_and_plot_link() -> None:
    records = whisper_family()
    text = render_footnote(records, english(), "docs/results plot.svg")
    assert text == (
        f"All values measured by mcval on the reference runner: {RUNNER}; newest result "
        "2026-11-21. Weights and memory in MB (2^20 bytes), times are the median of one call "
        "in ms; in parentheses, the change against the team's baseline row; “—”: not "
        "applicable or not measured. Plot: [results plot.svg](docs/results%20plot.svg). "
        f"Generated by `mcval table` from submissions/ and results/; do not edit by hand. "
        f"{GENERATED_MARKER}"
    )
    ru = render_footnote(records, Policy(), "results.svg")
    assert ru.startswith(f"Все значения измерены mcval на эталонной машине: {RUNNER}; ")
    assert "последний результат — 2026-11-21." in ru
    assert "График: [results.svg](results.svg)." in ru


def test_footnote_names_other_environments_and_uses_utc_dates() -> None:
    late = datetime(2026, 11, 22, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    records = [
        *whisper_family(),
        make_record("b/x", "m/x", "X", environment="AMD EPYC · no GPU", measured_at=late),
    ]
    text = render_footnote(records, english(), "results.svg")
    assert text.startswith(
        f"All values measured by mcval on the reference runner: {RUNNER} "
        "(1 row(s) measured on: AMD EPYC · no GPU (1)); newest result 2026-11-23."
    )


def test_empty_table() -> None:
    block = render_block([], english(columns=["model", "method"]), "results.svg")
    assert block == [
        "| Model | Method |",
        "| :--- | :---: |",
        "",
        "No verified results yet. Generated by `mcval table`; do not edit by hand. "
        + GENERATED_MARKER,
    ]


def test_rows_reported_but_not_verified_follow_in_their_own_table_en() -> None:
    """Issue 16 item 7: after the verified table and its footnote, a bold label (ours, by
    its marker) and a table of the teams' own numbers with a status column; baselines
    first; submission text escaped; the policy's columns respected."""
    pending = [
        PendingRow(
            id="t/int8",
            team="t",
            model_id="org/m",
            method_name="INT8 <dyn>",
            baseline="t/fp32",
            reported={"weights_mb": 4.5},
            status="fail",
        ),
        PendingRow(
            id="t/fp32",
            team="t",
            model_id="org/m",
            method_name="fp32",
            reported={"weights_mb": 16.7312},
            quality={"accuracy": 0.5},
        ),
    ]
    policy = english(columns=["model", "method", "weights_mb", "quality"])
    block = render_block(whisper_family(), policy, "results.svg", pending)
    verified = render_block(whisper_family(), policy, "results.svg")
    assert block[: len(verified)] == verified
    assert block[len(verified) :] == [
        "",
        "**Reported by teams, not verified yet** (2 row(s)): the values are the teams' own "
        "(`reported:` in submissions/), not confirmed by mcval; a row moves to the table "
        f"above once its result is verified. {GENERATED_MARKER}",
        "",
        "| Model | Method | Weights (MB) | Quality (PPL, BLEU, Accuracy) | Status |",
        "| :--- | :---: | :---: | :---: | :--- |",
        "| org/m | fp32 | 16.73 | 50.00% Accuracy | not measured yet |",
        "| org/m | INT8 &lt;dyn&gt; | 4.50 | — | measured: does not match |",
    ]
    assert render_block(whisper_family(), policy, "results.svg", []) == verified


def test_footnote_names_the_wer_normaliser_of_the_rows() -> None:
    records = whisper_family()
    for record, normalizer in zip(records, ["basic", "whisper-english", "basic"], strict=False):
        record.measurement = {"details": {"quality_details": {"normalizer": normalizer}}}
    text = render_footnote(records, english(), "results.svg")
    assert "WER/CER are computed after the text normaliser: `basic` (2 rows), " in text
    assert "`whisper-english` (1 rows)." in text
    one = render_footnote(records[:1], Policy(), "results.svg")
    assert f"WER/CER посчитаны после нормализатора текста: `basic`. {GENERATED_MARKER}" in one
    for record in records:
        record.measurement = {}
    assert "WER/CER" not in render_footnote(records, english(), "results.svg")
