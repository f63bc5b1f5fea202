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

from pydantic import BaseModel

from mcval.figures import Dimension

if TYPE_CHECKING:
    import pint

_QUANTITY = re.compile(
    r"^\s*(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[A-Za-zµ%]+)?\s*$"
)
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
    """A unit conversion mcval made, shown to the student so nothing changes silently."""

    field: str
    written: str
    value: float
    unit: str

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.field}: {self.written!r} read as {self.value:.6g}{unit}"


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
    if unit is None:
        return number
    if dimension is Dimension.PLAIN:
        raise UnitError(f"{written!r}: this value has no unit; write the number alone")
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
