"""What ``mcval import-table`` did: files written, cells not converted, tables skipped."""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel


class ImportIssue(BaseModel):
    """A cell that could not be converted (or a value converted on an assumption)."""

    file: str
    table: int
    row: int
    line: int
    column: str
    cell: str
    reason: str

    def describe(self) -> str:
        return (
            f"{self.file}:{self.line}: table {self.table}, row {self.row}, "
            f"column {self.column!r}: {self.cell!r}: {self.reason}"
        )


class SkippedTable(BaseModel):
    """A table that is not a results table."""

    file: str
    table: int
    line: int
    reason: str


class SkippedRow(BaseModel):
    """A table row with no number at all: nothing to check, so no file is written."""

    file: str
    table: int
    row: int
    line: int
    reason: str


class ImportedFile(BaseModel):
    """One submission file written (or that would be written)."""

    path: str
    id: str
    line: int
    todo: list[str]


class ImportReport(BaseModel):
    """Everything ``import-table`` did, for stdout and for callers."""

    source: str
    tables: int
    files: list[ImportedFile] = []
    issues: list[ImportIssue] = []
    notes: list[ImportIssue] = []
    skipped_tables: list[SkippedTable] = []
    skipped_rows: list[SkippedRow] = []
    not_written: list[str] = []


def print_report(report: ImportReport, out: Any = None) -> None:
    """The human summary on stdout: files, cells not converted, notes, skipped tables."""
    out = out or sys.stdout
    print(
        f"{report.source}: {report.tables} table(s), {len(report.files)} submission file(s)",
        file=out,
    )
    for file in report.files:
        if file.path in report.not_written:
            print(f"  kept   {file.path}: it exists (use --force to overwrite)", file=out)
        else:
            print(f"  wrote  {file.path} ({len(file.todo)} TODO)", file=out)
    for table in report.skipped_tables:
        print(f"  skipped table {table.table} (line {table.line}): {table.reason}", file=out)
    for row in report.skipped_rows:
        print(
            f"  skipped row {row.row} of table {row.table} (line {row.line}): {row.reason}",
            file=out,
        )
    if report.issues:
        print(f"{len(report.issues)} cell(s) could not be converted:", file=out)
        for issue in report.issues:
            print(f"  {issue.describe()}", file=out)
    if report.notes:
        print(f"{len(report.notes)} conversion(s) to check:", file=out)
        for note in report.notes:
            print(f"  {note.describe()}", file=out)
