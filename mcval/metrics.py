"""Task and metric names and what metric values mean: the single source of truth, torch-free.

The submission check, the verdict and the renderers all need to know that ``wer`` is a
fraction where lower is better and ``bleu`` a 0-100 score; the task modules compute the
values under exactly these names.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict

Task = Literal[
    "text-classification",
    "token-classification",
    "causal-lm",
    "translation",
    "automatic-speech-recognition",
    "image-classification",
]
"""The tasks the course uses; each has its own module in ``mcval.tasks``."""
TASKS: tuple[str, ...] = Task.__args__  # type: ignore[attr-defined]

Normalizer = Literal["basic", "whisper-english"]
"""The text normalisers WER/CER can be computed under (``mcval.tasks.scoring``): ``basic``
is mcval's own, ``whisper-english`` the one Whisper's published numbers use."""
NORMALIZERS: tuple[str, ...] = Normalizer.__args__  # type: ignore[attr-defined]


class MetricKind(str, Enum):
    """How a metric's value is stored (its natural unit)."""

    FRACTION = "fraction"  # 0..1, rendered as a percentage (accuracy, F1, WER, CER)
    SCORE100 = "score100"  # 0..100 (BLEU, chrF)
    PERPLEXITY = "perplexity"  # >= 1, lower is better


class MetricInfo(BaseModel):
    """One metric: its storage unit, direction, valid range and display label (by default a
    0..1 fraction where higher is better, as most of the course's metrics are)."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: MetricKind = MetricKind.FRACTION
    label: str
    higher_is_better: bool = True
    minimum: float = 0.0
    maximum: float | None = 1.0


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(name="accuracy", label="Accuracy"),
        MetricInfo(name="macro_f1", label="Macro-F1"),
        MetricInfo(name="entity_f1", label="Entity F1"),
        MetricInfo(name="entity_precision", label="Entity precision"),
        MetricInfo(name="entity_recall", label="Entity recall"),
        MetricInfo(name="top5_accuracy", label="Top-5 accuracy"),
        # WER and CER can exceed 1 when the hypothesis is much longer than the reference.
        MetricInfo(name="wer", label="WER", higher_is_better=False, maximum=None),
        MetricInfo(name="cer", label="CER", higher_is_better=False, maximum=None),
        MetricInfo(name="bleu", label="BLEU", kind=MetricKind.SCORE100, maximum=100.0),
        MetricInfo(name="chrf", label="chrF", kind=MetricKind.SCORE100, maximum=100.0),
        MetricInfo(
            name="perplexity",
            label="PPL",
            kind=MetricKind.PERPLEXITY,
            higher_is_better=False,
            minimum=1.0,
            maximum=None,
        ),
    )
}

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "text-classification": ("accuracy", "macro_f1"),
    "token-classification": ("entity_f1", "entity_precision", "entity_recall"),
    "causal-lm": ("perplexity",),
    "translation": ("bleu", "chrf"),
    "automatic-speech-recognition": ("wer", "cer"),
    "image-classification": ("accuracy", "top5_accuracy"),
}
"""Metrics each task can compute, the headline one first (the plot's y axis prefers it).
Which of them are computed when ``evaluation.metrics`` is empty is ``DEFAULT_METRICS``,
not the order here: ASR computes both WER and CER, NER only entity F1."""

DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "text-classification": ("accuracy", "macro_f1"),
    "token-classification": ("entity_f1",),
    "causal-lm": ("perplexity",),
    "translation": ("bleu", "chrf"),
    "automatic-speech-recognition": ("cer", "wer"),
    "image-classification": ("accuracy",),
}
"""Metrics computed when ``evaluation.metrics`` is empty, in the order they are computed;
each is one of the task's ``TASK_METRICS``."""


def format_metric(name: str, value: float) -> str:
    """Render one value the way the course table does: ``3.83% WER``, ``BLEU 27.10``."""
    info = METRICS.get(name)
    if info is None:
        return f"{name} {value:.4g}"
    if info.kind is MetricKind.FRACTION:
        return f"{value * 100:.2f}% {info.label}"
    return f"{info.label} {value:.2f}"


def format_quality(values: dict[str, float]) -> str:
    """All metrics of one row in one cell, in a stable order: ``1.34% CER 3.83% WER``."""
    return " ".join(format_metric(k, values[k]) for k in sorted(values))


TASK_ROLES: dict[str, dict[str, str | None]] = {
    "text-classification": {"text": "text", "text_pair": None, "label": "label"},
    "token-classification": {"tokens": "tokens", "tags": "ner_tags"},
    "causal-lm": {"text": "text"},
    "translation": {"source": "source", "target": "target"},
    "automatic-speech-recognition": {"audio": "audio", "text": "text"},
    "image-classification": {"image": "image", "label": "label"},
}
"""Column roles of each task and their default column names (``None``: optional role, used
only when mapped in ``evaluation.columns``). A column name may be a dotted path into a
dict-valued column, e.g. ``{source: translation.en, target: translation.de}`` for WMT.
Here, in the contract, so ``mcval check`` refuses an unknown role before the runner does."""

_METRIC_ALIASES: dict[str, str] = {
    "acc": "accuracy",
    "ppl": "perplexity",
    "top5": "top5_accuracy",
    "top_5": "top5_accuracy",
    "top5_acc": "top5_accuracy",
}
"""Other spellings of a metric (compared case-insensitively, ``-`` and spaces as ``_``)."""

_TASK_ALIASES: dict[str, dict[str, str]] = {
    "text-classification": {"f1": "macro_f1", "f1_score": "macro_f1"},
    "token-classification": {
        "f1": "entity_f1",
        "f1_score": "entity_f1",
        "precision": "entity_precision",
        "recall": "entity_recall",
    },
}
"""Generic words that mean one metric of a task: "F1" is macro-F1 for classification and
entity F1 for NER."""


def resolve_metric(written: str, task: str | None) -> str | None:
    """The metric a ``reported.quality`` key means (``Accuracy`` → ``accuracy``, ``F1`` →
    the task's F1, ``PPL`` → ``perplexity``), or None when the task computes no such metric.
    ``task`` None (not known yet): any metric mcval knows."""
    key = "_".join(written.strip().casefold().replace("-", " ").split())
    name = key if key in METRICS else _METRIC_ALIASES.get(key)
    if name is None and task is not None:
        name = _TASK_ALIASES.get(task, {}).get(key)
    if name is None or (task is not None and name not in TASK_METRICS[task]):
        return None
    return name
