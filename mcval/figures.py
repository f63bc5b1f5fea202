"""The five measured figures and how their numbers are written: the single source of truth.

Weights, CPU/GPU latency and RAM/VRAM appear in the submission schema, the loader, the
verdict, the README table, the plot, the importer and the comment. Each of them reads
what a figure is — its dimension and canonical unit, the device it depends on, the
policy tolerance it is judged with and its words in Russian and English — from
``FIGURES`` here, so adding or renaming a figure is one edit, not seven. Torch-free.

A verdict keeps differences and tolerances as numbers (``Delta``, ``Allowance``); the
renderers write them with ``format_delta``/``format_allowance`` in the table's language.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Language = Literal["ru", "en"]
"""The languages of the README table and plot (``policy.table.language``)."""
LANGUAGES: tuple[Language, ...] = ("ru", "en")

FigureKey = Literal["weights_mb", "latency_cpu_ms", "latency_gpu_ms", "ram_mb", "vram_mb"]
"""The names of the figures under ``reported:``, in the verdict and in the results store."""

Device = Literal["cpu", "gpu"]
"""The hardware a figure depends on (the keys of ``reported.hardware``)."""

ToleranceKey = Literal["weights_mb", "latency_ms", "memory_mb"]
"""The field of ``policy.tolerances`` a figure is judged with."""


class Dimension(str, Enum):
    """What a reported number measures, and therefore its canonical unit."""

    SIZE = "size"  # MiB (the course's "MB")
    TIME = "time"  # milliseconds
    FRACTION = "fraction"  # 0..1; "3.83%" becomes 0.0383
    PLAIN = "plain"  # a number without a unit (BLEU, perplexity)


CANONICAL_UNIT: dict[Dimension, str] = {
    Dimension.SIZE: "MB",
    Dimension.TIME: "ms",
    Dimension.FRACTION: "",
    Dimension.PLAIN: "",
}


class FigureText(BaseModel):
    """A figure's words in one language, one per place it appears."""

    model_config = ConfigDict(frozen=True)

    row: str
    """The verdict row (comment, terminal, annotations): ``Peak RAM (MB)``."""
    column: str
    """The README table header; the Russian ones are the seed table's, word for word."""
    axis: str
    """The plot's axis label."""
    short: str
    """The figure inside a sentence: ``RAM``."""
    better: str
    """The table's change word when the row beats its baseline: ``×3.1 faster``."""
    worse: str
    """... and when it does not: ``×1.2 slower``."""


class Figure(BaseModel):
    """One measured figure: what it is, how it is judged and how it is named."""

    model_config = ConfigDict(frozen=True)

    key: FigureKey
    dimension: Dimension
    device: Device | None
    """None: hardware-independent (judged strictly); else only comparable on that hardware."""
    tolerance: ToleranceKey
    text: dict[Language, FigureText]

    @property
    def unit(self) -> str:
        """The canonical unit of the figure's numbers (``MB``, ``ms``)."""
        return CANONICAL_UNIT[self.dimension]


_CHANGE_WORDS: dict[ToleranceKey, dict[Language, tuple[str, str]]] = {
    "weights_mb": {"ru": ("меньше", "больше"), "en": ("smaller", "larger")},
    "latency_ms": {"ru": ("быстрее", "медленнее"), "en": ("faster", "slower")},
    "memory_mb": {"ru": ("меньше", "больше"), "en": ("less", "more")},
}
"""The table's words for a ratio that favours the row, and one that does not."""

_NAMES: dict[tuple[str, Language], tuple[str, str, str, str]] = {
    # (figure, language): (verdict row, README column, plot axis, inside a sentence)
    ("weights_mb", "ru"): ("Размер весов (MB)", "Размер весов", "Размер весов, MB", "веса"),
    ("weights_mb", "en"): ("Weight size (MB)", "Weights (MB)", "Weight size, MB", "weights"),
    ("latency_cpu_ms", "ru"): (
        "Время CPU (мс)",
        "Время инференса (CPU, ms)",
        "Время инференса CPU, мс",
        "CPU",
    ),
    ("latency_cpu_ms", "en"): (
        "CPU latency (ms)",
        "Inference time (CPU, ms)",
        "CPU inference time, ms",
        "CPU",
    ),
    ("latency_gpu_ms", "ru"): (
        "Время GPU (мс)",
        "Время инференса (GPU, ms)",
        "Время инференса GPU, мс",
        "GPU",
    ),
    ("latency_gpu_ms", "en"): (
        "GPU latency (ms)",
        "Inference time (GPU, ms)",
        "GPU inference time, ms",
        "GPU",
    ),
    ("ram_mb", "ru"): ("Пик RAM (MB)", "Использование RAM (MB)", "Пик RAM, MB", "RAM"),
    ("ram_mb", "en"): ("Peak RAM (MB)", "RAM usage (MB)", "Peak RAM, MB", "RAM"),
    ("vram_mb", "ru"): ("Пик VRAM (MB)", "Использование VRAM (MB)", "Пик VRAM, MB", "VRAM"),
    ("vram_mb", "en"): ("Peak VRAM (MB)", "VRAM usage (MB)", "Peak VRAM, MB", "VRAM"),
}


def _figure(
    key: FigureKey, dimension: Dimension, device: Device | None, tolerance: ToleranceKey
) -> Figure:
    text: dict[Language, FigureText] = {}
    for language in LANGUAGES:
        row, column, axis, short = _NAMES[key, language]
        better, worse = _CHANGE_WORDS[tolerance][language]
        text[language] = FigureText(
            row=row, column=column, axis=axis, short=short, better=better, worse=worse
        )
    return Figure(key=key, dimension=dimension, device=device, tolerance=tolerance, text=text)


FIGURES: dict[str, Figure] = {
    f.key: f
    for f in (
        _figure("weights_mb", Dimension.SIZE, None, "weights_mb"),
        _figure("latency_cpu_ms", Dimension.TIME, "cpu", "latency_ms"),
        _figure("latency_gpu_ms", Dimension.TIME, "gpu", "latency_ms"),
        _figure("ram_mb", Dimension.SIZE, "cpu", "memory_mb"),
        _figure("vram_mb", Dimension.SIZE, "gpu", "memory_mb"),
    )
}
"""Every figure, in the table's column order."""

FIGURE_KEYS: tuple[str, ...] = tuple(FIGURES)


class FigureValues(BaseModel):
    """A row's measured numbers in canonical units: every figure and the quality metrics."""

    weights_mb: float | None = None
    latency_cpu_ms: float | None = None
    latency_gpu_ms: float | None = None
    ram_mb: float | None = None
    vram_mb: float | None = None
    quality: dict[str, float] = Field(default_factory=dict)
    unstable: dict[str, str] = Field(
        default_factory=dict,
        description="figure key ('latency_cpu_ms', 'ram_mb', …) → why it could not be measured "
        "stably; such a figure is shown but never passes or fails a submission",
    )


# --- differences and tolerances, kept as numbers ---------------------------------------


class Delta(BaseModel):
    """Reported minus measured, in the tolerance's own terms (relative when it has one)."""

    kind: Literal["relative", "absolute"]
    value: float
    """relative: a fraction of the measured value (0.032 is +3.2 %); absolute: in ``unit``."""
    unit: str = ""
    """absolute only: ``MB``, ``ms``, ``pp`` (percentage points of a fraction metric such as
    accuracy or WER) or nothing (BLEU, perplexity)."""


class Allowance(BaseModel):
    """The tolerance a value was judged with, as the reader sees it (either bound passes)."""

    relative: float | None = None
    """A fraction of the measured value: 0.15 is ±15 %."""
    absolute: float | None = None
    """In ``unit``, the same unit as an absolute ``Delta``."""
    unit: str = ""
    factor: float | None = None
    """Other hardware: only a gap beyond this ratio fails (``×10``); the bounds do not apply."""


_WORDS: dict[Language, dict[str, str]] = {
    "ru": {"pp": "п.п.", "or": "или"},
    "en": {"pp": "pp", "or": "or"},
}


def unit_word(unit: str, language: Language = "en") -> str:
    """A unit as written in ``language``: ``pp`` is ``п.п.`` in Russian; MB and ms stay."""
    return _WORDS[language].get(unit, unit)


def _unit(unit: str, language: Language) -> str:
    return f" {unit_word(unit, language)}" if unit else ""


def format_delta(delta: Delta | None, language: Language = "en") -> str:
    """``+3.3 %``, ``-0.33 pp``, ``+0.40 MB``, ``0.0 %``; empty when there is no difference
    to show."""
    if delta is None:
        return ""
    if delta.kind == "relative":
        return f"{_signed(delta.value * 100, 1)} %"
    return f"{_signed(delta.value, 2)}{_unit(delta.unit, language)}"


def _signed(value: float, decimals: int) -> str:
    """``+3.3``, ``-0.33``; a value that rounds to zero has no sign (``0.0``, never
    ``-0.0``: a reader takes a sign for a direction)."""
    text = f"{value:+.{decimals}f}"
    return text[1:] if float(text) == 0 else text


def format_allowance(allowance: Allowance | None, language: Language = "en") -> str:
    """``±1 % or ±0.01 MB``, ``±1 pp``, ``×10``; empty when there is none."""
    if allowance is None:
        return ""
    if allowance.factor is not None:
        return f"×{allowance.factor:g}"
    parts = []
    if allowance.relative is not None:
        parts.append(f"±{allowance.relative * 100:g} %")
    if allowance.absolute is not None:
        parts.append(f"±{allowance.absolute:g}{_unit(allowance.unit, language)}")
    return f" {_WORDS[language]['or']} ".join(parts)
