"""A hand-written README results table → one submission file a row (``mcval import-table``,
whose command is ``mcval.commands.import_table``).

The 2025 course table was filled in by hand, so the importer reads it the way a person
would and says what it could not read:

- **Which tables.** Every top-level table (found with mistune, see
  :mod:`mcval.render.readme`) that has a model or method column and at least one
  measurement column (weights, latency, RAM/VRAM). Other tables (a transposed
  comparison, a plan of next steps) are listed as skipped, with the reason.
- **Columns** are recognised by words in their header, in Russian or English
  ("Размер весов", "Model size", "Inf_GPU (ms)", "VRAM usage (MB)", "Качество (WER /
  CER)"…). A unit in the header ("seconds/text", "ms", "GB") is the unit of bare numbers
  below it; otherwise bare numbers are in the course's units (MB = MiB, ms).
- **Cells** are converted with :func:`mcval.submission.units.parse_quantity` (``96.66Mb``,
  ``1.33Gb``, ``769.1ms``); a note in parentheses after a latency or memory value
  (``12.9 ms (Tesla T4)``) is the hardware and is kept in ``reported.hardware``; ``N/A``,
  ``-`` and the like mean "not reported". Quality cells are split into metrics
  (``1.34% CER 3.83% WER``, ``0.8474 precision 0.8342 recall 0.8239 f1-score``,
  ``PPL 12.3``, ``Accuracy 80.00%``), or take the metric(s) named by the header.
- **Team**: a team column, else ``--team-map`` (YAML, model id → team), else
  ``--default-team``, else the placeholder ``TODO-team``.
- **Baselines**: in each (team, model) group the row whose method says original /
  baseline / FP32 / оригинал is the baseline of the others.

What the README does not say (revision, dataset, benchmark input, and anything guessed
such as the task) is marked ``# TODO(mcval import): …`` right above the section; a value
that cannot be guessed (``TODO-team``, ``TODO/dataset``) is a placeholder that ``mcval
check`` refuses until a person writes the real one. A row with no number at all is not
written (there would be nothing to check) and is listed as skipped; a model id without
an organisation (``bert-base-uncased``) gets a TODO to write the full hub id. Every cell that
could not be converted is in the report (file, table, row, line, column, cell, reason);
conversions that needed an assumption are listed separately as notes.
"""

from mcval.importer.read import classify_columns, parse_measure, split_quality
from mcval.importer.report import (
    ImportedFile,
    ImportIssue,
    ImportReport,
    SkippedRow,
    SkippedTable,
    print_report,
)
from mcval.importer.write import TODO, import_table, load_team_map

__all__ = [
    "TODO",
    "ImportIssue",
    "ImportReport",
    "ImportedFile",
    "SkippedRow",
    "SkippedTable",
    "classify_columns",
    "import_table",
    "load_team_map",
    "parse_measure",
    "print_report",
    "split_quality",
]
