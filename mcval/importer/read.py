"""Reading a hand-written results table the way a person would: cells and columns.

Which column holds what (by words in its header, Russian or English, and the unit the
header names), what one weight/latency/memory cell says (a value in the course's units,
a hardware note, or why it cannot be read), which metrics a quality cell holds, and the
task a row most likely is. No file is read or written here: ``mcval.importer.write``
turns the rows into submission files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mcval.figures import FIGURE_KEYS, FIGURES, Dimension
from mcval.metrics import METRICS, MetricKind
from mcval.submission.units import UnitError, parse_quantity

NOT_GIVEN = {"", "-", "--", "---", "—", "–", "n/a", "na", "nan", "none", "нет", "?", "x"}
NOT_APPLICABLE = re.compile(
    r"^(n/?a\b|not applicable|не применимо|неприменимо|не поддерживается|не измерял)", re.I
)
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


@dataclass
class Columns:
    """Which column of a table holds what."""

    roles: dict[str, int]
    units: dict[str, str]
    ignored: list[int]
    headers: list[str]


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


def classify_columns(header: Sequence[str]) -> Columns:
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
    return Columns(roles, units, sorted(ignored), list(header))


def is_results_table(columns: Columns) -> str | None:
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
    if text.casefold() in NOT_GIVEN:
        return None, None, None
    hardware = None
    match = _TRAILING_NOTE.match(text)
    if NOT_APPLICABLE.match(text) or (match and NOT_APPLICABLE.match(match["value"])):
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


def task_metric(task: str, generic: str) -> str:
    """The task's own name of a generic metric word: ``f1`` is ``entity_f1`` for NER."""
    return _TASK_METRIC.get(task, {}).get(generic, generic)


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
