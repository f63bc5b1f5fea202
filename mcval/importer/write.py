"""``mcval import-table``: a hand-written README results table → one submission file a row.

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
such as the task) is filled with a placeholder that passes ``mcval check`` where one
exists, and marked ``# TODO(mcval import): …`` right above the section. Every cell that
could not be converted is in the report (file, table, row, line, column, cell, reason);
conversions that needed an assumption are listed separately as notes.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from mcval.errors import InputError
from mcval.figures import FIGURE_KEYS, FIGURES, Dimension
from mcval.metrics import METRICS, TASK_METRICS, MetricKind
from mcval.policy import Policy, load_policy
from mcval.render.readme import SourceTable, parse_markdown
from mcval.submission.check import find_repo_root
from mcval.submission.schema import TEAM_PATTERN
from mcval.submission.units import UnitError, parse_quantity

TODO = "TODO(mcval import)"
PLACEHOLDER_TEAM = "TODO-team"
PLACEHOLDER_MODEL = "TODO/model-id"
PLACEHOLDER_DATASET = "TODO/dataset"
PLACEHOLDER_METHOD = "TODO method"

_NOT_GIVEN = {"", "-", "--", "---", "—", "–", "n/a", "na", "nan", "none", "нет", "?", "x"}
_NOT_APPLICABLE = re.compile(
    r"^(n/?a\b|not applicable|не применимо|неприменимо|не поддерживается|не измерял)", re.I
)
_BASELINE_METHOD = re.compile(r"оригинал|original|baseline|базов|исходн|\bfp32\b", re.I)
_MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_TRAILING_NOTE = re.compile(r"^(?P<value>.*?)\s*\((?P<note>[^()]*)\)\s*$")
_THROUGHPUT = re.compile(r"tokens?\s*/\s*s|tok/s|/\s*sec|токен\w*\s*/\s*с", re.I)
_UNIT_NOTE = re.compile(r"/|\b(secs?|seconds?|ms|s|tokens?|мс|сек)\b", re.I)
_SPREAD = re.compile(r"\+-|±|\+/-")
_NUMBER_ONLY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_QUALITY_TOKEN = re.compile(
    r"(?P<num>[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*(?P<pct>%)?|(?P<word>[^\W\d_][\w+-]*)"
)
_METRIC_WORDS = {
    "wer": "wer",
    "cer": "cer",
    "bleu": "bleu",
    "chrf": "chrf",
    "chrf++": "chrf",
    "ppl": "perplexity",
    "perplexity": "perplexity",
    "перплексия": "perplexity",
    "accuracy": "accuracy",
    "acc": "accuracy",
    "точность": "accuracy",
    "top-5": "top5_accuracy",
    "top5": "top5_accuracy",
    "f1": "f1",
    "f1-score": "f1",
    "f1-мера": "f1",
    "precision": "precision",
    "recall": "recall",
}
_TASK_METRIC = {
    "token-classification": {
        "f1": "entity_f1",
        "precision": "entity_precision",
        "recall": "entity_recall",
    },
    "text-classification": {"f1": "macro_f1"},
}
_TASK_BY_METRIC = {
    "wer": "automatic-speech-recognition",
    "cer": "automatic-speech-recognition",
    "bleu": "translation",
    "chrf": "translation",
    "perplexity": "causal-lm",
}
_TASK_BY_MODEL = (
    ("automatic-speech-recognition", re.compile(r"whisper|wav2vec|hubert|speech|asr", re.I)),
    (
        "image-classification",
        re.compile(r"vit|deit|efficientnet|resnet|convnext|mobilenet|swin|beit|image", re.I),
    ),
    ("token-classification", re.compile(r"ner\b|-ner|token-class|pos-tag", re.I)),
    ("translation", re.compile(r"opus-mt|marian|nllb|m2m|\bt5|mbart|translat", re.I)),
    (
        "causal-lm",
        re.compile(r"gpt|llama|qwen|mistral|\bopt-|smollm|phi-|gemma|falcon|bloom|causal", re.I),
    ),
    ("text-classification", re.compile(r"bert|roberta|electra|deberta|sentiment", re.I)),
)
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
    not_written: list[str] = []


@dataclass
class _Columns:
    """Which column of a table holds what."""

    roles: dict[str, int]
    units: dict[str, str]
    ignored: list[int]
    headers: list[str]


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


def _casefold(text: str) -> str:
    return " ".join(text.split()).casefold()


def column_role(header: str) -> str | None:
    """What a header names: model, method, team, a measured field or quality."""
    h = _casefold(header)
    if "vram" in h or "видеопам" in h:
        return "vram_mb"
    if re.search(r"\bram\b|\bозу\b|оперативн", h):
        return "ram_mb"
    if re.search(r"врем|time|latency|inf_|инференс|задержк", h):
        if "gpu" in h:
            return "latency_gpu_ms"
        if "cpu" in h:
            return "latency_cpu_ms"
        return None
    if re.search(r"размер|size|\bвес|weight", h):
        return "weights_mb"
    if re.search(r"команд|\bteam", h):
        return "team"
    if re.search(r"модел|\bmodel", h):
        return "model"
    if re.search(r"метод|method|format|формат", h):
        return "method"
    if re.search(r"качеств|quality|точност|accuracy|\bwer\b|\bcer\b|bleu|ppl|perplex|f1|chrf", h):
        return "quality"
    return None


def _header_unit(header: str, role: str) -> str:
    h = _casefold(header)
    figure = FIGURES.get(role)
    if figure is not None and figure.dimension is Dimension.TIME:
        if re.search(r"\bms\b|\bмс\b|millisec", h):
            return "ms"
        if re.search(r"\bsec(ond)?s?\b|секунд|\bсек\b", h):
            return "s"
        return "ms"
    if re.search(r"\bgb\b|\bгб\b", h):
        return "GB"
    return "MB"


def classify_columns(header: Sequence[str]) -> _Columns:
    """Roles of a table's columns; a second column of the same role is ignored unless it
    is about inference ("VRAM (Inference, MB)" wins over "VRAM (Perplexity, MB)")."""
    roles: dict[str, int] = {}
    ignored: list[int] = []
    for index, text in enumerate(header):
        role = column_role(text)
        if role is None:
            ignored.append(index)
            continue
        if role in roles:
            if re.search(r"inference|инференс", text, re.I) and not re.search(
                r"inference|инференс", header[roles[role]], re.I
            ):
                ignored.append(roles[role])
                roles[role] = index
            else:
                ignored.append(index)
            continue
        roles[role] = index
    units = {role: _header_unit(header[i], role) for role, i in roles.items() if role in FIGURES}
    return _Columns(roles, units, sorted(ignored), list(header))


def is_results_table(columns: _Columns) -> str | None:
    """None when the table holds results, else why it is skipped."""
    has_name = "model" in columns.roles or "method" in columns.roles
    has_measure = any(f in columns.roles for f in FIGURE_KEYS)
    if has_name and has_measure:
        return None
    if not has_name:
        return "no model or method column (not a table of results, or a transposed one)"
    return "no weight size, latency or memory column"


def _clean_float(value: float) -> float:
    """Drop binary noise of the unit conversion (29.138000000000002 → 29.138)."""
    return float(f"{value:.10g}")


def parse_measure(
    cell: str, field_name: str, unit: str
) -> tuple[float | None, str | None, str | None]:
    """``(value, hardware note, problem)`` of one weight/latency/memory cell."""
    text = cell.strip()
    if text.casefold() in _NOT_GIVEN:
        return None, None, None
    hardware = None
    match = _TRAILING_NOTE.match(text)
    if _NOT_APPLICABLE.match(text) or (match and _NOT_APPLICABLE.match(match["value"])):
        return None, None, None
    if _THROUGHPUT.search(cell):
        return None, None, "a throughput (tokens per second), not the time of one call"
    figure = FIGURES[field_name]
    if match and figure.device is not None:
        if _UNIT_NOTE.search(match["note"]):
            return None, None, f"'({match['note']})' is a unit, not the time of one call in ms"
        text, hardware = match["value"].strip(), match["note"].strip()
    if _SPREAD.search(text):
        return None, None, "a value with a spread; write the median alone"
    if _NUMBER_ONLY.match(text):
        text = f"{text} {unit}"
    try:
        value = parse_quantity(text, figure.dimension)
    except UnitError as exc:
        return None, None, str(exc)
    if value < 0:
        return None, None, "a negative value"
    return _clean_float(value), hardware, None


def _metric_word(word: str) -> str | None:
    return _METRIC_WORDS.get(word.casefold().rstrip(":,;"))


def header_metrics(header: str) -> list[str]:
    """Metrics named in a quality header, in order (``Качество (WER / CER)`` → wer, cer)."""
    found: list[str] = []
    for m in _QUALITY_TOKEN.finditer(header):
        name = _metric_word(m["word"]) if m["word"] else None
        if name and name not in found:
            found.append(name)
    return found


@dataclass
class _QualityParse:
    values: list[tuple[str, str, bool]]  # (generic metric, number text, had %)
    problems: list[str]


def split_quality(cell: str, header: str) -> _QualityParse:
    """Pair numbers with metric names in a merged quality cell (see the module docstring)."""
    text = cell.strip()
    problems: list[str] = []
    note = _TRAILING_NOTE.match(text)
    if note and re.search(r"\d", note["value"]) and not re.search(r"\d", note["note"]):
        problems.append(f"the note '({note['note']})' is not kept")
        text = note["value"]
    tokens: list[tuple[str, str, bool]] = []  # (kind, text, pct)
    for m in _QUALITY_TOKEN.finditer(text):
        if m["num"] is not None:
            tokens.append(("num", m["num"], bool(m["pct"])))
        else:
            name = _metric_word(m["word"])
            if name:
                tokens.append(("metric", name, False))
    numbers = [t for t in tokens if t[0] == "num"]
    names = [t for t in tokens if t[0] == "metric"]
    values: list[tuple[str, str, bool]] = []
    if not numbers:
        return _QualityParse([], ["no number in the cell"])
    if not names:
        from_header = header_metrics(header)
        if len(from_header) == len(numbers):
            values = [(n, num[1], num[2]) for n, num in zip(from_header, numbers, strict=True)]
        elif len(numbers) == 1:
            named = ", ".join(from_header) if from_header else "none"
            return _QualityParse([], [f"which metric is it? the header names: {named}"])
        else:
            return _QualityParse([], [f"{len(numbers)} numbers and no metric names"])
        return _QualityParse(values, problems)
    label_first = tokens[0][0] == "metric"
    pending: tuple[str, str, bool] | None = None
    for kind, value, pct in tokens:
        if label_first:
            if kind == "metric":
                pending = (kind, value, pct)
            elif pending is not None:
                values.append((pending[1], value, pct))
                pending = None
            else:
                problems.append(f"{value}{'%' if pct else ''} has no metric name (not kept)")
        else:
            if kind == "num":
                if pending is not None:
                    problems.append(f"{pending[1]}{'%' if pending[2] else ''} has no metric name")
                pending = (kind, value, pct)
            elif pending is not None:
                values.append((value, pending[1], pending[2]))
                pending = None
    if not label_first and pending is not None:
        problems.append(f"{pending[1]}{'%' if pending[2] else ''} has no metric name (not kept)")
    seen: dict[str, str] = {}
    unique = []
    for name, number, pct in values:
        if name in seen:
            problems.append(
                f"{name} given twice ({seen[name]}, {number}{'%' if pct else ''}); kept the first"
            )
            continue
        seen[name] = number + ("%" if pct else "")
        unique.append((name, number, pct))
    return _QualityParse(unique, problems)


def guess_task(model: str | None, metrics: Sequence[str]) -> tuple[str | None, str]:
    """The task and how it was guessed (from a metric, else from the model's name)."""
    for metric in metrics:
        if metric in _TASK_BY_METRIC:
            return _TASK_BY_METRIC[metric], f"from the {metric.upper()} metric"
    for task, pattern in _TASK_BY_MODEL:
        if model and pattern.search(model):
            return task, f"from the model name {model!r}"
    return None, "nothing in the row tells"


def quality_value(
    metric: str, number: str, pct: bool
) -> tuple[float | None, str | None, str | None]:
    """``(value, note, problem)``: a metric's value in mcval's unit (fractions for %)."""
    info = METRICS[metric]
    if info.kind is MetricKind.FRACTION:
        value = parse_quantity(f"{number}%" if pct else number, Dimension.FRACTION)
        if not pct and value > 1 and (info.maximum is not None or value <= 100):
            return _clean_float(value / 100), f"{number} read as {number}%", None
        return _clean_float(value), None, None
    if pct:
        return None, None, f"{info.label} is not a percentage"
    value = float(number)
    note = None
    if info.kind is MetricKind.SCORE100 and value <= 1:
        note = (
            f"{info.label} {number} looks like a 0–1 score; mcval's {info.label} is 0–100: check it"
        )
    if info.minimum > value or (info.maximum is not None and value > info.maximum):
        return None, None, f"{info.label} {number} is out of range"
    return _clean_float(value), note, None


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
        self, number: int, table: SourceTable, columns: _Columns, lines: list[str]
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
                and quality.casefold() not in _NOT_GIVEN
                and not _NOT_APPLICABLE.match(quality)
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
        metric = _TASK_METRIC.get(task, {}).get(generic, generic)
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
    finished = [_finish(row, importer) for row in rows]
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
    report = ImportReport(source=str(readme), tables=n_tables, skipped_tables=skipped)
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
    if report.issues:
        print(f"{len(report.issues)} cell(s) could not be converted:", file=out)
        for issue in report.issues:
            print(f"  {issue.describe()}", file=out)
    if report.notes:
        print(f"{len(report.notes)} conversion(s) to check:", file=out)
        for note in report.notes:
            print(f"  {note.describe()}", file=out)


def run(args: argparse.Namespace) -> int:
    """``mcval import-table README.md --out submissions/ [--team-map F] [--default-team T]``.

    Expects ``args.readme`` (str), ``args.out`` (str | None, default: the policy's
    submissions directory), ``args.team_map`` (str | None), ``args.default_team``
    (str | None) and optionally ``args.force`` (bool: overwrite existing files) and
    ``args.repo`` (str | None). Exit 0 when every cell converted, 1 when files were
    written but some cells could not be converted (listed), 2 for an input error.
    """
    repo_arg = getattr(args, "repo", None)
    repo_root = Path(repo_arg) if repo_arg else find_repo_root(Path.cwd())
    policy = load_policy(repo_root)
    out_dir = Path(args.out) if getattr(args, "out", None) else repo_root / policy.submissions_dir
    team_map_path = getattr(args, "team_map", None)
    team_map = load_team_map(Path(team_map_path)) if team_map_path else {}
    report = import_table(
        Path(args.readme),
        out_dir,
        policy,
        team_map,
        getattr(args, "default_team", None),
        force=bool(getattr(args, "force", False)),
    )
    print_report(report)
    return 1 if report.issues else 0
