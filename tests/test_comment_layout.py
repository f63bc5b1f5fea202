"""The PR comment leads with what needs action (issue 16 item 12): failures and errors
first and expanded, passes collapsed in ``<details>``, tolerances only where they decide,
no ``-0.0 %``."""

from __future__ import annotations

from pathlib import Path

from fixtures.records import make_record

from mcval.errors import InputError
from mcval.figures import Allowance, Delta, format_delta
from mcval.render.comment import SubmissionReport, render_comment
from mcval.results import ResultRecord
from mcval.verdict import MetricVerdict, Verdict

SIZE_TOLERANCE = Allowance(relative=0.01, absolute=0.01, unit="MB")
LATENCY_TOLERANCE = Allowance(relative=0.15)


def row(field: str, status: str, delta: float, tolerance: Allowance, note: str | None = None):
    return MetricVerdict(
        field=field,
        label=field,
        reported=10.0,
        measured=10.0,
        delta=Delta(kind="relative", value=delta),
        tolerance=tolerance,
        status=status,  # type: ignore[arg-type]
        note=note,
    )


def record(sub_id: str, verdict: str, method: str = "INT8") -> ResultRecord:
    base = make_record(sub_id, "org/tiny-bert", method, verdict=verdict)
    metrics = [
        row("weights_mb", "fail" if verdict == "fail" else "pass", -0.00001, SIZE_TOLERANCE),
        row("latency_cpu_ms", "info", 0.5, LATENCY_TOLERANCE, "other hardware"),
    ]
    report = Verdict(submission=sub_id, status=verdict, metrics=metrics)  # type: ignore[arg-type]
    return base.model_copy(update={"report": report})


def report(sub_id: str, verdict: str, method: str = "INT8") -> SubmissionReport:
    return SubmissionReport(
        id=sub_id, path=f"submissions/{sub_id}.yaml", record=record(sub_id, verdict, method)
    )


def test_failures_first_and_expanded_passes_collapsed() -> None:
    reports = [
        report("alpha/one", "pass"),
        report("beta/two", "fail"),
        SubmissionReport(
            id="gamma/three",
            path="submissions/gamma/three.yaml",
            input_errors=[InputError("bad", "submissions/gamma/three.yaml", 2, 1)],
        ),
        report("delta/four", "pass"),
        report("eps/five", "error"),
    ]
    lines = render_comment(reports).splitlines()
    start = lines.index("| Submission | Verdict |") + 2
    assert lines[start : start + 5] == [
        "| gamma/three | ⛔ invalid |",
        "| beta/two | ❌ fail |",
        "| eps/five | ⚠️ error |",
        "| alpha/one | ✅ pass |",
        "| delta/four | ✅ pass |",
    ]
    heads = [line for line in lines if line.startswith(("### ", "<details>"))]
    assert heads == [
        "### ⛔ invalid · gamma/three",
        "### ❌ fail · beta/two — INT8 · org/tiny-bert",
        "### ⚠️ error · eps/five — INT8 · org/tiny-bert",
        "<details><summary>✅ pass · alpha/one — INT8 · org/tiny-bert</summary>",
        "<details><summary>✅ pass · delta/four — INT8 · org/tiny-bert</summary>",
    ]
    # Each pass is one closed block with its table inside; failures are never collapsed.
    text = "\n".join(lines)
    assert text.count("<details>") == text.count("</details>") == 2
    first = lines.index(heads[3])
    assert lines[first + 1] == ""  # Markdown inside <details> needs the blank line
    assert lines.index("</details>", first) > lines.index("`submissions/alpha/one.yaml`")
    fail_at = lines.index(heads[1])
    assert all(not line.startswith("<details>") for line in lines[fail_at : fail_at + 8])


def test_tolerance_is_shown_only_where_it_decides() -> None:
    lines = render_comment([report("beta/two", "fail")]).splitlines()
    size = next(line for line in lines if line.startswith("| Weight size (MB) |"))
    latency = next(line for line in lines if line.startswith("| CPU latency (ms) |"))
    assert size.split(" | ")[4] == "±1 % or ±0.01 MB"
    assert latency.split(" | ")[4] == ""  # information only: nothing is judged against it
    assert latency.endswith("| ℹ️ info — other hardware |")


def test_negative_zero_is_printed_as_zero() -> None:
    assert format_delta(Delta(kind="relative", value=-0.00001)) == "0.0 %"
    assert format_delta(Delta(kind="relative", value=0.0)) == "0.0 %"
    assert format_delta(Delta(kind="absolute", value=-0.001, unit="pp")) == "0.00 pp"
    assert format_delta(Delta(kind="relative", value=-0.0004)) == "0.0 %"
    assert format_delta(Delta(kind="relative", value=-0.0006)) == "-0.1 %"
    text = render_comment([report("beta/two", "fail")])
    assert "-0.0" not in text
    assert "| Weight size (MB) | 10.00 | 10.00 | 0.0 % |" in text


def test_a_collapsed_summary_escapes_submission_text_as_html() -> None:
    """Inside ``<summary>`` Markdown is not parsed: HTML entities, no backslashes."""
    text = render_comment([report("alpha/one", "pass", method="<b>x</b> @everyone *y*")])
    summary = next(line for line in text.splitlines() if line.startswith("<details>"))
    assert summary == (
        "<details><summary>✅ pass · alpha/one — &lt;b&gt;x&lt;/b&gt; @&#8203;everyone *y*"
        " · org/tiny-bert</summary>"
    )


def test_the_documented_example_is_the_golden_comment() -> None:
    """docs/example-comment.md shows what the renderer writes now (the golden file)."""
    root = Path(__file__).resolve().parents[1]
    example = (root / "docs" / "example-comment.md").read_text(encoding="utf-8")
    assert example == (root / "tests" / "golden" / "comment.md").read_text(encoding="utf-8")


def test_speech_rows_say_how_quality_was_computed() -> None:
    from mcval.render.comment import quality_method_line

    details = {
        "normalizer": "whisper-english",
        "resampler": "soxr VHQ",
        "language": "de",
        "task": "translate",
    }
    measurement = {"details": {"quality_details": details}}
    assert quality_method_line(measurement) == (
        "Quality: WER/CER normaliser whisper-english · audio resampled with soxr VHQ · "
        "language de, task translate"
    )
    translation = {"source_language": "eng_Latn", "target_language": "fra_Latn"}
    assert quality_method_line({"details": {"quality_details": translation}}) == (
        "Quality: languages eng_Latn → fra_Latn"
    )
    assert quality_method_line({"details": {"quality_details": {}}}) is None
    assert quality_method_line({}) is None
