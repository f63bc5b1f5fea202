"""The pull-request comment (and job summary): one Markdown document for all submissions.

A hidden marker on the first line lets the bot find its own comment again and edit it in
place. Everything that comes from a submission (team, method, model id, hardware, file
names) goes through ``mcval.render.markdown`` escaping, so a ``|``, ``<script>``, an
``@everyone`` or a copy of the marker in a method name renders as text and can neither
break the table nor ping anyone nor fake the marker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from mcval.errors import InputError
from mcval.figures import FIGURES, Language, format_allowance, format_delta
from mcval.metrics import METRICS, MetricKind
from mcval.render.markdown import code_span, escape_cell, escape_html_text, escape_inline
from mcval.results import ResultRecord
from mcval.verdict import UNSTABLE_OUTCOME, MeasuredFigures, MetricVerdict, Verdict

MARKER = "<!-- mcval:report -->"

ReportStatus = Literal["pass", "fail", "error", "unmeasured", "input", "unusable"]
"""A submission's outcome in the comment: its verdict, ``input`` (the file is invalid) or
``unusable`` (the runner could not measure it, e.g. the hub was unreachable, or in ``ci
report`` the measuring job left no result that can be trusted)."""
BADGES: dict[ReportStatus, str] = {
    "pass": "✅ pass",
    "fail": "❌ fail",
    "error": "⚠️ error",
    "unmeasured": "🔁 re-run",
    "input": "⛔ invalid",
    "unusable": "⚠️ could not be measured",
}
ACTION_ORDER: tuple[ReportStatus, ...] = ("input", "fail", "error", "unusable", "unmeasured")
"""What needs someone's action, most urgent first: these lead the comment, expanded; the
passes follow, collapsed (a comment with ten submissions must not be a wall of tables)."""
DECIDING = frozenset({"pass", "fail"})
"""Verdict rows whose tolerance decided something; the others show none (an ``info`` row
from other hardware was not judged against the ±15 % beside it)."""
LOG_TAIL_LINES = 20
STATUS_CELLS = {
    "pass": "✅ pass",
    "fail": "❌ fail",
    "info": "ℹ️ info",
    "unstable": "⚠️ unstable",
    "not_measured": "— not measured",
    "not_reported": "— not reported",
    "not_applicable": "— n/a",
}


UNMEASURED_EXPLANATION = (
    "The figures marked unstable were disturbed while the runner measured them (the reason "
    "is in their row), so they neither pass nor fail this submission. That is the runner's "
    "problem, not the submission's: run the check again."
)
LOAD_PEAK_FIGURES = ("ram_mb", "vram_mb")


def load_peak_line(measured: MeasuredFigures) -> str | None:
    """The memory peak while loading/compressing, which the RAM/VRAM figures leave out on
    purpose (a recipe's fp32 copy at load is not the compressed model's): said beside them
    so a reader understands why a bf16 row's RAM can be below its fp32 baseline's."""
    parts = [
        f"{FIGURES[key].text['en'].short} {measured.load_peak_mb[key]:.2f} MB"
        for key in LOAD_PEAK_FIGURES
        if key in measured.load_peak_mb
    ]
    if not parts:
        return None
    return (
        f"Peak while loading/compressing: {', '.join(parts)} — not counted in the RAM/VRAM "
        "figures, which are the peaks while the prepared model runs inference"
    )


@dataclass
class SubmissionReport:
    """What one submission contributes to the comment: a result, or why there is none."""

    id: str
    path: str
    record: ResultRecord | None = None
    input_errors: Sequence[InputError] = ()
    reused: bool = False
    problem: str | None = None
    """Why the runner could not measure it (its side, never the submission's): the hub
    unreachable (``mcval validate``), or no usable result from the job (``ci report``)."""
    log: str = ""
    """``ci report``: the measuring job's log; its end is shown when there is no record."""

    @property
    def status(self) -> ReportStatus:
        if self.problem is not None:
            return "unusable"
        if self.input_errors or self.record is None:
            return "input"
        return self.record.verdict


class RunSummary(BaseModel):
    """How many submissions of one run ended in each status.

    The comment's summary line and ``ci report``'s commit status are both written from
    this one object, so they cannot count differently (they did: a cell without a result
    was counted by the status and left out of the comment).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    counts: dict[ReportStatus, NonNegativeInt] = Field(
        default_factory=dict, description="status → number of submissions; zeros left out"
    )

    @classmethod
    def of(cls, reports: Sequence[SubmissionReport]) -> RunSummary:
        counts = {s: sum(1 for r in reports if r.status == s) for s in BADGES}
        return cls(counts={s: n for s, n in counts.items() if n})

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        """``3 submission(s): 2 pass, 1 could not be measured.``"""
        parts = [
            f"{self.counts[s]} {BADGES[s].split(' ', 1)[1]}" for s in BADGES if s in self.counts
        ]
        return f"{self.total} submission(s): {', '.join(parts)}."


def format_value(field: str, value: float | None) -> str:
    """A number as the table shows it: 922.15 MB, 3.83 % for fractions, BLEU as is."""
    if value is None:
        return "—"
    if field.startswith("quality."):
        info = METRICS.get(field.removeprefix("quality."))
        if info is not None and info.kind is MetricKind.FRACTION:
            return f"{value * 100:.2f} %"
    return f"{value:.2f}"


def metric_cells(m: MetricVerdict, language: Language = "en") -> list[str]:
    """A verdict row's label, reported, measured, Δ and tolerance as plain text in
    ``language``, for the comment and the terminal to escape each their own way."""
    figure = FIGURES.get(m.field)
    return [
        figure.text[language].row if figure else m.label,
        format_value(m.field, m.reported),
        format_value(m.field, m.measured),
        format_delta(m.delta, language),
        format_allowance(m.tolerance, language),
    ]


def _metric_row(m: MetricVerdict) -> str:
    verdict = STATUS_CELLS[m.status]
    if m.note and m.status in {"fail", "not_applicable", "info", "unstable"}:
        verdict += f" — {escape_cell(m.note)}"
    label, reported, measured, delta, tolerance = metric_cells(m)
    if m.status not in DECIDING:
        tolerance = ""
    cells = [escape_cell(label), reported, measured, delta, escape_cell(tolerance), verdict]
    return "| " + " | ".join(cells) + " |"


def _verdict_lines(verdict: Verdict, path: str) -> list[str]:
    lines = [
        "| Metric | Reported | Measured | Δ (reported − measured) | Tolerance | Verdict |",
        "| :--- | ---: | ---: | ---: | :--- | :--- |",
        *(_metric_row(m) for m in verdict.metrics),
        "",
    ]
    notes = []
    for finding in verdict.findings:
        icon = "❌" if finding.severity == "fail" else "⚠️"
        where = f"{code_span(path)} line {finding.line}: " if finding.line else ""
        notes.append(f"- {icon} {where}{escape_inline(finding.message)}")
    for error in verdict.errors:
        notes.append(f"- ⚠️ {escape_inline(error)}")
    if notes:
        lines += ["**Findings**", "", *notes, ""]
    return lines


def _log_block(log: str) -> str:
    """The end of a job's log as a fenced block that no fence inside the log can close."""
    tail = "\n".join(log.replace("~~~", "~ ~ ~").splitlines()[-LOG_TAIL_LINES:])
    return f"\n\n~~~~text\n{tail}\n~~~~" if tail.strip() else ""


def quality_method(measurement: dict[str, Any]) -> str | None:
    """How quality was computed, in words: ``WER/CER normaliser whisper-english · audio
    resampled with soxr VHQ · language en, task transcribe`` (``None``: nothing to say)."""
    details = (measurement.get("details") or {}).get("quality_details") or {}
    parts = []
    if details.get("normalizer"):
        parts.append(f"WER/CER normaliser {details['normalizer']}")
    if details.get("resampler"):
        parts.append(f"audio resampled with {details['resampler']}")
    if details.get("language"):
        parts.append(f"language {details['language']}, task {details.get('task', 'transcribe')}")
    if details.get("source_language") or details.get("target_language"):
        source, target = details.get("source_language"), details.get("target_language")
        parts.append(f"languages {source or '?'} → {target or '?'}")
    if details.get("source_prefix"):
        parts.append(f"source prefix {details['source_prefix']!r}")
    return " · ".join(parts) or None


def quality_method_line(measurement: dict[str, Any]) -> str | None:
    """The comment's line under the verdict table saying how quality was computed."""
    method = quality_method(measurement)
    return f"Quality: {escape_inline(method)}" if method else None


def _job_section(report: SubmissionReport) -> list[str]:
    """A ``ci report`` cell without a record: the runner could not measure it, or
    ``mcval validate`` rejected the file (its errors are in the log, not here)."""
    head = f"### {escape_inline(report.id)}\n\n{code_span(report.path)}"
    if report.problem is not None:
        text = (
            f"{head}: ⚠️ **could not be measured**: {report.problem}. Maintainers: see the "
            "workflow run's logs."
        )
    else:
        text = (
            f"{head}: ⛔ **invalid**: `mcval validate` rejected the file; run it locally "
            "to see every problem with its line."
        )
    return [text + _log_block(report.log), ""]


def _section(report: SubmissionReport) -> list[str]:
    badge = BADGES[report.status]
    record = report.record
    if record is None and not report.input_errors:
        return _job_section(report)
    if record is None:
        lines = [f"### {badge} · {escape_inline(report.id)}", ""]
        lines.append(f"{code_span(report.path)} is not a valid submission:")
        lines.append("")
        for error in report.input_errors:
            where = f"line {error.line}" if error.line else "file"
            if error.col:
                where += f", column {error.col}"
            lines.append(f"- {where}: {escape_inline(error.message)}")
        return [*lines, ""]
    if record.verdict == "pass":
        # Collapsed: raw HTML, where Markdown escapes would show, hence HTML escaping.
        title = (
            f"<details><summary>{badge} · {escape_html_text(record.id)} — "
            f"{escape_html_text(record.method_label)} · {escape_html_text(record.model_id)}"
            "</summary>"
        )
    else:
        title = (
            f"### {badge} · {escape_inline(record.id)} — {escape_inline(record.method_label)}"
            f" · {escape_inline(record.model_id)}"
        )
    lines = [title, "", code_span(report.path), ""]
    if record.verdict == "unmeasured":
        lines += [f"**{UNSTABLE_OUTCOME.capitalize()}.** {UNMEASURED_EXPLANATION}", ""]
    lines += _verdict_lines(record.report, report.path)
    how = quality_method_line(record.measurement)
    lines += [how, ""] if how else []
    peak = load_peak_line(record.measured)
    if peak:
        lines += [peak, ""]
    when = record.measured_at.strftime("%Y-%m-%d %H:%M UTC")
    reused = " (unchanged since then: result reused)" if report.reused else ""
    lines.append(f"Runner: {escape_inline(record.environment.summary)} · measured {when}{reused}")
    if record.verdict == "pass":
        lines += ["", "</details>"]
    return [*lines, ""]


def action_first(reports: Sequence[SubmissionReport]) -> list[SubmissionReport]:
    """The reports that need action (:data:`ACTION_ORDER`), then the passes; the given
    order is kept within each status."""
    rank = {status: i for i, status in enumerate(ACTION_ORDER)}
    return sorted(reports, key=lambda r: rank.get(r.status, len(ACTION_ORDER)))


def render_comment(
    reports: Sequence[SubmissionReport],
    *,
    summary: RunSummary | None = None,
    commit: str | None = None,
) -> str:
    """The whole comment: marker, summary table, then one section per submission, those
    that need action first and expanded, the passes collapsed (:func:`action_first`).

    ``summary`` is ``RunSummary.of(reports)``, passed in by a caller that reports it
    elsewhere too (the commit status); ``commit`` adds a last line naming the commit.
    """
    if summary is None:
        summary = RunSummary.of(reports)
    elif summary != RunSummary.of(reports):
        raise ValueError("the summary does not count these reports")
    lines = [MARKER, "## mcval: results check", ""]
    if not reports:
        lines += ["No submission files changed in this pull request.", ""]
        return "\n".join(lines)
    lines += [summary.line(), ""]
    reports = action_first(reports)
    lines += ["| Submission | Verdict |", "| :--- | :--- |"]
    lines += [f"| {escape_cell(r.id)} | {BADGES[r.status]} |" for r in reports]
    lines.append("")
    for report in reports:
        lines += _section(report)
    lines += [
        "<sub>Size and quality must match within tolerance; latency and memory measured on "
        "other hardware are shown for information. Re-run locally with "
        "`mcval validate submissions/<team>/<name>.yaml`.</sub>",
        "",
    ]
    if commit:
        lines += [f"<sub>mcval run for commit {commit[:7]}.</sub>", ""]
    return "\n".join(lines)
