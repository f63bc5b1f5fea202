"""Numbers written with units (``"1.33 GB"``, ``"769.1ms"``, ``"3.83%"``) → canonical values.

Teams wrote sizes as ``96.66Mb`` or ``1.33Gb`` and times as ``769.1ms`` or ``0.43 s``.
mcval keeps one unit per field (MiB, ms, fractions) and converts what students write,
showing the conversion, so the table never mixes units again. Unit names and factors
live in ``units.txt`` and are resolved by pint; the text is first matched against a
strict ``<number> <unit>`` shape so pint's expression parser never sees arbitrary input.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from mcval.figures import Dimension

if TYPE_CHECKING:
    import pint

_QUANTITY = re.compile(
    r"^\s*(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[A-Za-zµ%]+)?"
    r"(?:\s*\(\s*10\s*\^\s*(?P<power>\d+)\s*\))?\s*$"
)
DECIMAL_POWER = {"k": 3, "m": 6, "g": 9, "t": 12}
"""A size written ``"1.33 GB (10^9)"`` is decimal: the prefix's power of ten, stated."""
NOT_MEASURED_SPELLINGS = ("N/A", "n/a", "NA", "na", "-", "--", "—", "–", "not measured")
"""How real tables spell "not measured": the same as leaving the field out."""
NOT_MEASURED = frozenset(s.casefold() for s in NOT_MEASURED_SPELLINGS)
"""The spellings compared case-insensitively (``N/a`` too)."""


def percent_number(written: Any) -> float | None:
    """The number of a text written as a percentage (``"62%"`` → 62), else None."""
    match = _QUANTITY.match(written) if isinstance(written, str) else None
    return float(match["number"]) if match and match["unit"] == "%" else None


def is_not_measured(written: Any) -> bool:
    """Whether a written value is one of the spellings of "not measured"."""
    return isinstance(written, str) and written.strip().casefold() in NOT_MEASURED


_PINT_UNIT = {Dimension.SIZE: "MiB", Dimension.TIME: "ms", Dimension.FRACTION: ""}
_PINT_DIMENSION: dict[Dimension, str | None] = {
    Dimension.SIZE: "[information]",
    Dimension.TIME: "[time]",
    Dimension.FRACTION: None,  # dimensionless
}
_KIND_WORDS = {
    Dimension.SIZE: 'a size (e.g. 922.15, "96.66 MB", "1.33 GB")',
    Dimension.TIME: 'a time (e.g. 377.65, "769.1 ms", "0.43 s")',
    Dimension.FRACTION: 'a fraction (e.g. 0.0383 or "3.83%")',
    Dimension.PLAIN: "a plain number",
}


class UnitError(ValueError):
    """A value that cannot be converted; the message says what to write instead."""


class Conversion(BaseModel):
    """How mcval read a written value (a unit, a metric's other name, "not measured"),
    shown to the student so nothing changes silently."""

    field: str
    written: str | None = Field(
        default=None, description="The text as written; None: a plain number (not shown)."
    )
    value: float | None = Field(default=None, description="None: read as not measured.")
    unit: str = ""
    metric: str | None = Field(default=None, description="The metric a quality key meant.")

    def describe(self) -> str:
        parts = [f"read as {self.metric}"] if self.metric else []
        if self.written is not None and self.value is None:
            parts.append(f"{self.written!r} read as not measured (as if left out)")
        elif self.written is not None:
            unit = f" {self.unit}" if self.unit else ""
            text = f"{self.written!r} read as {self.value:.6g}{unit}"
            if _BINARY_SIZE.match(self.written):
                number = _QUANTITY.match(self.written)["number"]  # type: ignore[index]
                letter = self.written.strip()[len(number) :].strip()[0].lower()
                unit = f"{letter.upper() if letter != 'k' else letter}B"
                text += (
                    f" (2^{10 * _BINARY_POWER[letter]} bytes a {unit}; a decimal {unit} is "
                    f"written '{number.strip()} {unit} (10^{DECIMAL_POWER[letter]})')"
                )
            parts.append(text)
        return f"{self.field}: {'; '.join(parts)}"


_BINARY_SIZE = re.compile(r"^\s*[\d.eE+-]+\s*[kKmMgGtT][bB]\s*$")
"""A size in KB/MB/GB/TB without ``(10^n)``: read as binary, and the note says so."""
_BINARY_POWER = {"k": 1, "m": 2, "g": 3, "t": 4}


@lru_cache(maxsize=1)
def unit_registry() -> pint.UnitRegistry:
    """pint registry with only mcval's units (loaded on first use: pint is slow to import)."""
    import pint

    return pint.UnitRegistry(str(Path(__file__).with_name("units.txt")), cache_folder=None)


def parse_quantity(written: Any, dimension: Dimension) -> float:
    """Convert one written value to ``dimension``'s canonical unit.

    Numbers pass through unchanged (they are already in the canonical unit); strings
    must be ``<number>`` or ``<number><unit>`` with a unit of the right kind.
    """
    if isinstance(written, bool) or not isinstance(written, int | float | str):
        raise UnitError(f"expected {_KIND_WORDS[dimension]}, got {type(written).__name__}")
    value = float(written) if isinstance(written, int | float) else _parse_text(written, dimension)
    if not math.isfinite(value):
        raise UnitError(f"expected a finite number, got {written!r}")
    return value


def _parse_text(written: str, dimension: Dimension) -> float:
    if "," in written:
        raise UnitError(
            f"{written!r}: use a dot as the decimal separator and no thousands separators"
        )
    match = _QUANTITY.match(written)
    if match is None:
        raise UnitError(
            f"{written!r} is not a number with a unit; expected {_KIND_WORDS[dimension]}"
        )
    number = float(match["number"])
    unit = match["unit"]
    if match["power"] is not None:
        return _decimal_size(written, match["number"], unit, int(match["power"]), dimension)
    if unit is None:
        return number
    if dimension is Dimension.PLAIN:
        raise UnitError(f"{written!r}: this value has no unit; write the number alone")
    return _with_pint(written, number, unit, dimension)


def _decimal_size(
    written: str, number: str, unit: str | None, power: int, dimension: Dimension
) -> float:
    """``"1.33 GB (10^9)"``: decimal bytes, stated by the writer, converted to MiB."""
    prefix = (unit or "").lower()
    if dimension is not Dimension.SIZE or len(prefix) != 2 or prefix[1] != "b":
        raise UnitError(f"{written!r}: '(10^n)' follows a size unit only, as in '1.33 GB (10^9)'")
    expected = DECIMAL_POWER.get(prefix[0])
    if expected is None:
        raise UnitError(f"{written!r}: unknown unit {unit!r}; expected {_KIND_WORDS[dimension]}")
    if power != expected:
        raise UnitError(
            f"{written!r}: a decimal {unit} is 10^{expected} bytes; "
            f"write '{number} {unit} (10^{expected})'"
        )
    return float(number) * 10**power / 2**20


def _with_pint(written: str, number: float, unit: str, dimension: Dimension) -> float:
    """A ``<number><unit>`` text converted by pint to the dimension's canonical unit."""
    import pint

    registry = unit_registry()
    try:
        quantity = number * registry.Unit(unit)
    except (pint.UndefinedUnitError, AttributeError, ValueError):
        raise UnitError(
            f"{written!r}: unknown unit {unit!r}; expected {_KIND_WORDS[dimension]}"
        ) from None
    expected = _PINT_DIMENSION[dimension]
    fits = quantity.dimensionless if expected is None else quantity.check(expected)
    if not fits:
        raise UnitError(
            f"{written!r} has a unit of the wrong kind; expected {_KIND_WORDS[dimension]}"
        )
    target = _PINT_UNIT[dimension]
    return float(quantity.to(target).magnitude) if target else float(quantity.to("").magnitude)
