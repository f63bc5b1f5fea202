"""The terminal report of ``mcval validate``: a table per submission, colours when supported.

rich decides whether the terminal supports colour (and honours ``NO_COLOR``); piped output
is plain text, so logs stay readable.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mcval.render.comment import (
    UNMEASURED_EXPLANATION,
    SubmissionReport,
    load_peak_line,
    metric_cells,
)
from mcval.verdict import UNSTABLE_OUTCOME

_STYLES = {
    "pass": "green",
    "fail": "bold red",
    "info": "cyan",
    "error": "yellow",
    "unmeasured": "bold yellow",
    "unstable": "yellow",
    "input": "bold red",
    "unusable": "bold yellow",
    "not_measured": "dim",
    "not_reported": "dim",
    "not_applicable": "dim",
}
_WORDS = {
    "pass": "PASS",
    "fail": "FAIL",
    "error": "ERROR",
    "unmeasured": "RE-RUN",
    "unstable": "⚠ unstable",
    "input": "INVALID",
    "unusable": "UNMEASURED",
    "info": "info",
    "not_measured": "not measured",
    "not_reported": "not reported",
    "not_applicable": "n/a",
}


def render_terminal(reports: Sequence[SubmissionReport], console: Console) -> None:
    """Print every submission's verdict table, findings and environment line."""
    for report in reports:
        style = _STYLES[report.status]
        word = _WORDS[report.status]
        console.print(f"[{style}]{word}[/] {escape(report.id)}  [dim]{escape(report.path)}[/]")
        if report.record is None:
            for error in report.input_errors:
                console.print(f"  [red]error[/] {escape(str(error))}")
            if report.problem is not None:
                console.print(f"  [yellow]{escape(report.problem)}[/]")
            console.print()
            continue
        record = report.record
        console.print(f"  [dim]{escape(record.method_label)} · {escape(record.model_id)}[/]")
        table = Table(show_edge=False, pad_edge=False, header_style="bold")
        for name, justify in (
            ("metric", "left"),
            ("reported", "right"),
            ("measured", "right"),
            ("Δ", "right"),
            ("tolerance", "left"),
            ("verdict", "left"),
        ):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for m in record.report.metrics:
            verdict = f"[{_STYLES[m.status]}]{_WORDS[m.status]}[/]"
            if m.note and m.status in {"fail", "not_applicable", "unstable"}:
                verdict += f" [dim]{escape(m.note)}[/]"
            label, reported, measured, delta, tolerance = metric_cells(m)
            table.add_row(escape(label), reported, measured, delta, escape(tolerance), verdict)
        if record.verdict == "unmeasured":
            console.print(
                f"  [bold yellow]{UNSTABLE_OUTCOME.capitalize()}.[/] {UNMEASURED_EXPLANATION}"
            )
        console.print(table)
        for finding in record.report.findings:
            colour = "red" if finding.severity == "fail" else "yellow"
            where = f"{report.path}:{finding.line}: " if finding.line else ""
            console.print(f"  [{colour}]{finding.severity}[/] {escape(where + finding.message)}")
        for error in record.report.errors:
            console.print(f"  [yellow]error[/] {escape(error)}")
        peak = load_peak_line(record.measured)
        if peak:
            console.print(f"  [dim]{peak}[/]")
        reused = " (result reused: submission unchanged)" if report.reused else ""
        console.print(f"  [dim]runner: {escape(record.environment.summary)}{reused}[/]")
        console.print()
    passed = sum(1 for r in reports if r.status == "pass")
    rerun = sum(1 for r in reports if r.status == "unmeasured")
    again = f"; {rerun} could not be measured stably (re-run)" if rerun else ""
    unusable = sum(1 for r in reports if r.status == "unusable")
    again += f"; {unusable} could not be measured by this runner (re-run)" if unusable else ""
    console.print(f"{passed} of {len(reports)} submission(s) pass{again}")
