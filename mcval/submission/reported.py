"""``reported:`` as written → canonical numbers, before the schema sees the file.

Students write what their tables held: ``Accuracy: 32.25%``, ``weights_mb: 1.33Gb``,
``ram_mb: N/A``. Each quality key is first resolved to the metric it names (so a wrong
metric is the error, not its percent sign), then each value is converted to the field's
unit or read as "not measured"; every reading that is not the literal canonical form is
recorded as a ``Conversion`` the student sees.
"""

from __future__ import annotations

import difflib
from typing import Any

from mcval.errors import InputError
from mcval.figures import FIGURES, Dimension
from mcval.metrics import METRICS, TASK_METRICS, TASKS, MetricKind, resolve_metric
from mcval.submission.units import (
    Conversion,
    UnitError,
    is_not_measured,
    parse_quantity,
    percent_number,
)
from mcval.submission.yamlsafe import FieldPath, YamlDocument

_NOTE_UNIT = {Dimension.SIZE: "MiB", Dimension.TIME: "ms"}
"""The unit a conversion note names: the course's MB is the mebibyte, so say MiB."""


def _task_of(data: dict[str, Any]) -> str | None:
    model = data.get("model")
    task = model.get("task") if isinstance(model, dict) else None
    return task if isinstance(task, str) and task in TASKS else None


def _dimension(metric: str) -> Dimension:
    info = METRICS[metric]
    return Dimension.FRACTION if info.kind is MetricKind.FRACTION else Dimension.PLAIN


def _move_positions(doc: YamlDocument, old: FieldPath, new: FieldPath) -> None:
    """A renamed quality key keeps pointing at its line."""
    for table in (doc.positions, doc.key_positions):
        if old in table:
            table[new] = table[old]


def _read(
    path: FieldPath,
    written: Any,
    dim: Dimension,
    doc: YamlDocument,
    errors: list[InputError],
    metric: str | None = None,
    alias: str | None = None,
) -> tuple[bool, float | None, Conversion | None]:
    """``(ok, value, note)`` of one written value; a problem is appended to ``errors``."""
    dotted = ".".join(map(str, path))
    if is_not_measured(written):
        return True, None, Conversion(field=dotted, written=written, metric=alias)
    try:
        value = parse_quantity(written, dim)
    except UnitError as exc:
        message = str(exc)
        info = METRICS.get(metric or "")
        number = percent_number(written)
        if info and info.kind is MetricKind.SCORE100 and number is not None:
            message = (
                f"{written!r}: {info.label} is a 0–100 score, not a percentage; write {number:g}"
            )
        errors.append(doc.error(f"{dotted}: {message}", path))
        return False, None, None
    shown = written if isinstance(written, str) else None
    note = None
    if shown is not None or alias is not None:
        note = Conversion(
            field=dotted, written=shown, value=value, unit=_NOTE_UNIT.get(dim, ""), metric=alias
        )
    return True, value, note


def convert_reported(
    data: dict[str, Any], doc: YamlDocument, errors: list[InputError]
) -> list[Conversion]:
    """Replace written values under ``reported`` by canonical ones, in place; record each.

    A figure that cannot be read becomes None (its error says why); a quality entry that
    cannot be read, or names no metric of the task, is dropped.
    """
    reported = data.get("reported")
    if not isinstance(reported, dict):
        return []
    notes: list[Conversion] = []
    for key, figure in FIGURES.items():
        if reported.get(key) is None:
            continue
        ok, value, note = _read(("reported", key), reported[key], figure.dimension, doc, errors)
        reported[key] = value if ok else None
        notes += [note] if note else []
    quality = reported.get("quality")
    if isinstance(quality, dict):
        reported["quality"] = _convert_quality(quality, _task_of(data), doc, errors, notes)
    return notes


def _convert_quality(
    quality: dict[str, Any],
    task: str | None,
    doc: YamlDocument,
    errors: list[InputError],
    notes: list[Conversion],
) -> dict[str, Any]:
    """Quality keys resolved to metric names first, then their values converted."""
    converted: dict[str, Any] = {}
    for written_name, written in quality.items():
        path: FieldPath = ("reported", "quality", written_name)
        name = str(written_name)
        metric = resolve_metric(name, task)
        if metric is None:
            possible = TASK_METRICS[task] if task else tuple(METRICS)
            hint = difflib.get_close_matches(name, possible, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else f"use {', '.join(possible)}"
            where = task or "this task"
            errors.append(
                doc.error(
                    f"quality metric {name!r} is not computed for {where}; {fix}", path, key=True
                )
            )
            continue
        if metric in converted or (metric != name and metric in quality):
            errors.append(
                doc.error(
                    f"quality metric {name!r} is {metric}, which is already given; keep one",
                    path,
                    key=True,
                )
            )
            continue
        if metric != name:
            _move_positions(doc, path, ("reported", "quality", metric))
        alias = metric if metric != name else None
        ok, value, note = _read(path, written, _dimension(metric), doc, errors, metric, alias)
        notes += [note] if note else []
        if ok and value is not None:
            converted[metric] = value
    return converted
