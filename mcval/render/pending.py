"""Rows reported by teams but not verified yet: the second table of mcval's README block.

Why: right after ``mcval import-table`` no submission has a verified result, and a table
of verified rows only would replace a course's hand-written table with "no results yet".
A row stays visible until it is measured, but never mixed with the verified rows: it is
shown in its own table under a bold label that says the values are the team's own, with a
status column (not measured yet / measured, does not match / measurement error). A row
moves to the verified table when its result passes.

The label paragraph carries :data:`mcval.render.readme.GENERATED_MARKER`, so the table
under it belongs to mcval's block and is replaced with it (see ``locate_table``). Every
text that comes from a submission is escaped like the verified table's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mcval.figures import Language
from mcval.metrics import format_quality
from mcval.policy import Policy
from mcval.render.markdown import escape_cell
from mcval.render.readme import GENERATED_MARKER

PendingStatus = Literal["not_measured", "fail", "error", "unmeasured"]
"""Why a row is not verified: no result yet, or the result's verdict was not a pass."""

NOT_AVAILABLE = "—"

_STATUS: dict[Language, dict[PendingStatus, str]] = {
    "ru": {
        "not_measured": "ещё не измерено",
        "fail": "измерено: не совпадает",
        "error": "измерено: ошибка",
        "unmeasured": "измерить заново",
    },
    "en": {
        "not_measured": "not measured yet",
        "fail": "measured: does not match",
        "error": "measured: error",
        "unmeasured": "to be measured again",
    },
}
_STATUS_HEADER: dict[Language, str] = {"ru": "Статус", "en": "Status"}
_LABEL: dict[Language, str] = {
    "ru": (
        "**Заявлено командами, ещё не проверено** ({n} стр.): значения — как их указали "
        "команды (`reported:` в submissions/), mcval их не подтвердил; строка переходит в "
        "таблицу выше, когда её результат проверен."
    ),
    "en": (
        "**Reported by teams, not verified yet** ({n} row(s)): the values are the teams' "
        "own (`reported:` in submissions/), not confirmed by mcval; a row moves to the "
        "table above once its result is verified."
    ),
}


class PendingRow(BaseModel):
    """A submission without a passing result, with the numbers its team reported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    team: str
    model_id: str
    method_name: str
    baseline: str | None = None
    reported: dict[str, float | None] = Field(
        default_factory=dict, description="figure key → the reported value in canonical units"
    )
    quality: dict[str, float] = Field(default_factory=dict)
    status: PendingStatus = "not_measured"


def _cells(row: PendingRow, policy: Policy, escaped: dict[str, str]) -> list[str]:
    texts = {"model": row.model_id, "team": row.team, "method": row.method_name}
    cells = []
    for column in policy.table.columns:
        if column in texts:
            raw = texts[column]
            cells.append(escaped.setdefault(raw, escape_cell(raw)))
        elif column == "quality":
            cells.append(format_quality(row.quality) if row.quality else NOT_AVAILABLE)
        else:
            value = row.reported.get(column)
            cells.append(NOT_AVAILABLE if value is None else f"{value:.2f}")
    cells.append(_STATUS[policy.table.language][row.status])
    return cells


def render_pending(rows: Sequence[PendingRow], policy: Policy) -> list[str]:
    """The label paragraph, a blank line and the table (no line endings); nothing when
    every row is verified. Rows grouped by model and team, baselines first, then by method
    name and id."""
    if not rows:
        return []
    from mcval.render.table import ALIGN, HEADERS

    language = policy.table.language
    columns = policy.table.columns
    headers = [HEADERS[language][c] for c in columns] + [_STATUS_HEADER[language]]
    aligns = [ALIGN.get(c, ":---:") for c in columns] + [":---"]
    lines = [
        f"{_LABEL[language].format(n=len(rows))} {GENERATED_MARKER}",
        "",
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(aligns) + " |",
    ]
    escaped: dict[str, str] = {}
    ids = {row.id for row in rows}

    def key(row: PendingRow) -> tuple[str, str, bool, str, str]:
        # Grouped by model and team, a baseline (none, or not among these rows) first.
        compressed = row.baseline is not None and row.baseline in ids
        return (row.model_id.casefold(), row.team.casefold(), compressed, row.method_name, row.id)

    ordered = sorted(rows, key=key)
    lines += ["| " + " | ".join(_cells(row, policy, escaped)) + " |" for row in ordered]
    return lines
