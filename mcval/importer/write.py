"""Each row of a hand-written table → one submission file (``mcval import-table``'s work).

The rows come from ``mcval.importer.read``; this module fills what the README does not
say with placeholders marked ``TODO(mcval import)``, picks each row's team and baseline,
writes the YAML and reports every cell it could not convert.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mcval.errors import InputError
from mcval.figures import FIGURE_KEYS, FIGURES
from mcval.importer.read import (
    NOT_APPLICABLE,
    NOT_GIVEN,
    Columns,
    classify_columns,
    guess_task,
    is_results_table,
    parse_measure,
    quality_value,
    split_quality,
    task_metric,
)
from mcval.importer.report import (
    ImportedFile,
    ImportIssue,
    ImportReport,
    SkippedRow,
    SkippedTable,
)
from mcval.metrics import METRICS, TASK_METRICS
from mcval.policy import Policy
from mcval.render.readme import SourceTable, parse_markdown
from mcval.submission.schema import TEAM_PATTERN
from mcval.submission.units import UnitError

TODO = "TODO(mcval import)"
PLACEHOLDER_TEAM = "TODO-team"
PLACEHOLDER_MODEL = "TODO/model-id"
PLACEHOLDER_DATASET = "TODO/dataset"
PLACEHOLDER_METHOD = "TODO method"

_BASELINE_METHOD = re.compile(r"оригинал|original|baseline|базов|исходн|\bfp32\b", re.I)
_MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_TRANSLIT = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        [
            *("a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o"),
            *("p", "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e"),
            *("yu", "ya"),
        ],
        strict=True,
    )
)


@dataclass
class _Row:
    """A row being turned into a submission."""

    table: int
    row: int
    line: int
    source: str
    model: str | None
    method: str | None
    team: str | None
    reported: dict[str, float] = field(default_factory=dict)
    hardware: dict[str, str] = field(default_factory=dict)
    quality: list[tuple[str, str, bool]] = field(default_factory=list)  # (metric, number, %)
    quality_cell: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # role → header text


def slugify(text: str) -> str:
    """ASCII file-name part: Cyrillic transliterated, everything else to '-'."""
    out = []
    for char in text.casefold():
        out.append(_TRANSLIT.get(char, char))
    slug = re.sub(r"[^a-z0-9._]+", "-", "".join(out)).strip("-._")
    return slug[:60].strip("-._")


def load_team_map(path: Path) -> dict[str, str]:
    """``--team-map``: a YAML mapping of model id (as in the table) → team."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read the team map: {exc}", path) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise InputError("the team map is a YAML mapping 'model id: team'", path)
    for team in data.values():
        if not re.match(TEAM_PATTERN, team):
            raise InputError(f"team {team!r}: use letters, digits, '.', '_' and '-'", path)
    return dict(data)


class _Importer:
    def __init__(
        self,
        readme: Path,
        policy: Policy,
        team_map: dict[str, str],
        default_team: str | None,
    ) -> None:
        self.readme = readme
        self.name = readme.name
        self.policy = policy
        self.team_map = team_map
        self.default_team = default_team
        self.issues: list[ImportIssue] = []
        self.notes: list[ImportIssue] = []

    def issue(self, row: _Row, column: str, cell: str, reason: str, note: bool = False) -> None:
        entry = ImportIssue(
            file=self.name,
            table=row.table,
            row=row.row,
            line=row.line,
            column=column,
            cell=cell,
            reason=reason,
        )
        (self.notes if note else self.issues).append(entry)

    def rows(
        self, number: int, table: SourceTable, columns: Columns, lines: list[str]
    ) -> list[_Row]:
        rows = []
        for index, cells in enumerate(table.rows):
            if not any(c.strip() for c in cells):
                continue
            line_index = table.row_line(index)

            def cell(role: str, cells: list[str] = cells) -> str | None:
                i = columns.roles.get(role)
                return cells[i].strip() if i is not None else None

            row = _Row(
                table=number,
                row=index + 1,
                line=line_index + 1,
                source=lines[line_index].rstrip("\r\n"),
                model=cell("model"),
                method=cell("method"),
                team=cell("team"),
                headers={role: columns.headers[i] for role, i in columns.roles.items()},
            )
            for i in columns.ignored:
                if cells[i].strip():
                    self.issue(
                        row, columns.headers[i], cells[i], "no submission field for this column"
                    )
            for name in FIGURE_KEYS:
                text = cell(name)
                if text is None:
                    continue
                value, hardware, problem = parse_measure(text, name, columns.units[name])
                if problem:
                    self.issue(row, columns.headers[columns.roles[name]], text, problem)
                if value is not None:
                    row.reported[name] = value
                device = FIGURES[name].device
                if hardware and device is not None:
                    row.hardware.setdefault(device, hardware)
            quality = cell("quality")
            if (
                quality
                and quality.casefold() not in NOT_GIVEN
                and not NOT_APPLICABLE.match(quality)
            ):
                row.quality_cell = quality
                parsed = split_quality(quality, row.headers["quality"])
                for problem in parsed.problems:
                    # a cell with some values kept is a note; one with none kept, an issue
                    self.issue(
                        row, row.headers["quality"], quality, problem, note=bool(parsed.values)
                    )
                row.quality = parsed.values
            rows.append(row)
        return rows

    def run(self, text: str) -> tuple[list[_Row], int, list[SkippedTable]]:
        parsed = parse_markdown(text)
        tables = parsed.tables()
        skipped: list[SkippedTable] = []
        rows: list[_Row] = []
        for number, table in enumerate(tables, start=1):
            columns = classify_columns(table.header)
            reason = is_results_table(columns)
            if reason:
                skipped.append(
                    SkippedTable(file=self.name, table=number, line=table.start + 1, reason=reason)
                )
                continue
            rows.extend(self.rows(number, table, columns, parsed.lines))
        return rows, len(tables), skipped


def _team_of(row: _Row, importer: _Importer, model: str | None) -> tuple[str, str | None]:
    """The row's team and, when it is not certain, what a human must do."""
    if row.team:
        team = row.team if re.match(TEAM_PATTERN, row.team) else slugify(row.team)
        if team and re.match(TEAM_PATTERN, team):
            return team, None if team == row.team else f"team {row.team!r} written as {team!r}"
    if model and model in importer.team_map:
        return importer.team_map[model], None
    if importer.default_team:
        return importer.default_team, None
    return PLACEHOLDER_TEAM, (
        "the table does not say which team this row is; set `team` and move the file to "
        "submissions/<team>/ (or rerun with --team-map / --default-team)"
    )


def _finish(row: _Row, importer: _Importer) -> dict[str, Any]:
    """The submission data of a row (placeholders in place) and its TODO notes by section."""
    todo: dict[str, list[str]] = {}
    model = (row.model or "").strip("` ").strip()
    if model and not _MODEL_ID.match(model):
        importer.issue(
            row, row.headers["model"], row.model or "", "not a Hugging Face model id ('org/name')"
        )
        todo.setdefault("model", []).append(
            f"model.id: the table says {model!r}; write the hub id or repository path"
        )
        model_id = PLACEHOLDER_MODEL
    elif not model:
        todo.setdefault("model", []).append("model.id: the table has no model; write it")
        model_id = PLACEHOLDER_MODEL
    else:
        model_id = model
        if "/" not in model:
            todo.setdefault("model", []).append(
                f"model.id: {model!r} has no organisation; write the full hub id 'org/name' "
                "as huggingface.co shows it (e.g. google-bert/bert-base-uncased)"
            )
    task, how = guess_task(model, [name for name, _number, _pct in row.quality])
    if task is None:
        task = "text-classification"
        todo.setdefault("model", []).append(f"model.task: {how}; {task!r} is a placeholder")
    else:
        todo.setdefault("model", []).append(f"model.task: {task!r} guessed {how}; check it")
    todo["model"].append("model.revision: pin the commit sha of the checkpoint you measured")

    quality: dict[str, float] = {}
    for generic, number, pct in row.quality:
        written = f"{number}{'%' if pct else ''}"
        metric = task_metric(task, generic)
        if metric not in TASK_METRICS[task] or metric not in METRICS:
            importer.issue(
                row,
                row.headers["quality"],
                row.quality_cell,
                f"{generic} {written}: not a metric mcval computes for {task} (not kept)",
            )
            continue
        try:
            value, note, problem = quality_value(metric, number, pct)
        except UnitError as exc:
            value, note, problem = None, None, str(exc)
        if problem:
            importer.issue(row, row.headers["quality"], row.quality_cell, problem)
        if note:
            importer.issue(row, row.headers["quality"], row.quality_cell, note, note=True)
        if value is not None:
            quality[metric] = value
    team, team_todo = _team_of(row, importer, model or None)
    if team_todo:
        todo.setdefault("team", []).append(team_todo)
    method = (row.method or "").strip()
    if not method and model and model_id == PLACEHOLDER_MODEL:
        method = model  # "large-v3 → 2-layer": a model cell that describes the method
        todo.setdefault("method", []).append(
            "method.name: the table has no method column; taken from the model cell"
        )
    elif not method:
        method = PLACEHOLDER_METHOD
        todo.setdefault("method", []).append("method.name: the table has no method; write it")
    if len(method) > 80:
        importer.issue(
            row, row.headers.get("method", "method"), method, "longer than 80 characters; cut"
        )
        method = method[:80].rstrip()
    dataset = (importer.policy.allowed_datasets.get(task) or [PLACEHOLDER_DATASET])[0]  # type: ignore[call-overload]
    todo["evaluation"] = [
        f"evaluation.dataset: the README does not say which data was used; {dataset!r} is a "
        "placeholder (set path, name, split, revision and samples)"
    ]
    todo["benchmark"] = [
        "benchmark: the README does not say the input shape; the task's default is used"
    ]
    reported: dict[str, Any] = dict(row.reported)
    if quality:
        reported["quality"] = quality
    if row.hardware:
        reported["hardware"] = dict(sorted(row.hardware.items()))
    else:
        todo.setdefault("reported", []).append(
            "reported.hardware: say on which CPU/GPU the numbers were measured"
        )
    data: dict[str, Any] = {
        "schema": 1,
        "team": team,
        "model": {"id": model_id, "task": task},
        "method": {
            "name": method,
            "notes": f"Imported by mcval import-table from {importer.name}, table {row.table}, "
            f"row {row.row} (line {row.line}).",
        },
        "evaluation": {"dataset": {"path": dataset, "split": "test"}},
    }
    if quality:
        data["evaluation"]["metrics"] = sorted(quality)
    data["reported"] = reported
    return {"data": data, "todo": todo, "row": row, "model_key": model or model_id, "id": ""}


def _has_number(reported: dict[str, Any]) -> bool:
    """Whether an imported row reports at least one figure or quality value."""
    return bool(reported.get("quality")) or any(
        reported.get(key) is not None for key in FIGURE_KEYS
    )


def render_yaml(data: dict[str, Any], todo: dict[str, list[str]], header: Sequence[str]) -> str:
    """The file: a comment header, then each top-level section dumped by PyYAML with its
    TODO comments right above it (PyYAML keeps no comments, so sections are dumped one by
    one; key order is the schema's)."""
    parts = [f"# {line}\n" for line in header]
    for key, value in data.items():
        for note in todo.get(key, []):
            parts.append(f"# {TODO}: {note}\n")
        parts.append(yaml.safe_dump({key: value}, allow_unicode=True, sort_keys=False, width=100))
    for note in todo.get("benchmark", []):
        parts.append(f"# {TODO}: {note}\n")
    return "".join(parts)


def import_table(
    readme: Path,
    out_dir: Path,
    policy: Policy | None = None,
    team_map: dict[str, str] | None = None,
    default_team: str | None = None,
    *,
    write: bool = True,
    force: bool = False,
) -> ImportReport:
    """Convert every results-table row of ``readme`` into ``out_dir/<team>/<name>.yaml``."""
    policy = policy or Policy()
    if default_team is not None and not re.match(TEAM_PATTERN, default_team):
        raise InputError(f"--default-team {default_team!r}: use letters, digits, '.', '_', '-'")
    try:
        text = readme.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", readme) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", readme) from None
    importer = _Importer(readme, policy, team_map or {}, default_team)
    rows, n_tables, skipped = importer.run(text)
    finished = []
    empty: list[SkippedRow] = []
    for row in rows:
        item = _finish(row, importer)
        if _has_number(item["data"]["reported"]):
            finished.append(item)
        else:  # nothing to check: a file would only be a row of placeholders
            empty.append(
                SkippedRow(
                    file=importer.name,
                    table=row.table,
                    row=row.row,
                    line=row.line,
                    reason="no number in the row",
                )
            )
    # Names and baselines: per (team, model) group, the original/baseline row is the
    # baseline of the others.
    used: set[str] = set()
    for item in finished:
        data = item["data"]
        base_model = (
            data["model"]["id"].rsplit("/", 1)[-1]
            if data["model"]["id"] != PLACEHOLDER_MODEL
            else ""
        )
        stem = slugify(f"{base_model} {data['method']['name']}") or "row"
        name, n = stem, 2
        while f"{data['team']}/{name}" in used:
            name, n = f"{stem}-{n}", n + 1
        used.add(f"{data['team']}/{name}")
        item["id"] = f"{data['team']}/{name}"
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for item in finished:
        key = (item["data"]["team"], item["model_key"], item["row"].table)
        groups.setdefault(key, []).append(item)
    for members in groups.values():
        base = next(
            (m for m in members if _BASELINE_METHOD.search(m["data"]["method"]["name"])), None
        )
        for member in members:
            if base is None:
                member["todo"].setdefault("method", []).append(
                    "method.baseline: no row of this model says original/baseline; write the "
                    "id of the submission this one compresses (or leave it out for a baseline)"
                )
            elif member is not base:
                method = member["data"]["method"]
                member["data"]["method"] = {
                    "name": method["name"],
                    "baseline": base["id"],
                    "notes": method["notes"],
                }
    report = ImportReport(
        source=str(readme), tables=n_tables, skipped_tables=skipped, skipped_rows=empty
    )
    for item in finished:
        row: _Row = item["row"]
        team, name = item["id"].split("/")
        path = out_dir / team / f"{name}.yaml"
        header = [
            f"Imported by `mcval import-table` from {importer.name}, table {row.table}, "
            f"row {row.row} (line {row.line}):",
            f"  {row.source}",
            "Check every value against your own measurement; `mcval check` this file.",
        ]
        todo = item["todo"]
        text_out = render_yaml(item["data"], todo, header)
        report.files.append(
            ImportedFile(
                path=str(path),
                id=item["id"],
                line=row.line,
                todo=[f"{n}" for notes in todo.values() for n in notes],
            )
        )
        if write and path.exists() and not force:
            report.not_written.append(str(path))
        elif write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text_out, encoding="utf-8")
    report.issues = importer.issues
    report.notes = importer.notes
    return report
