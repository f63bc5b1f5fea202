"""Reported vs measured: one verdict per metric and for the whole submission.

Size and quality do not depend on hardware, so they are held to strict tolerances.
Latency and memory do: when the team measured on other hardware than the runner the
difference is shown for information, and only an implausible gap (the policy's factor)
fails. Sanity rules catch reports that cannot be right whatever the hardware. The same
function decides locally (``mcval validate``) and in the bot, so students see the verdict
the bot will give.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from mcval.errors import ExitCode
from mcval.figures import (
    FIGURES,
    Allowance,
    Delta,
    Dimension,
    Figure,
    FigureValues,
    format_allowance,
)
from mcval.findings import Finding
from mcval.metrics import METRICS, MetricKind
from mcval.policy import Policy, Tolerance
from mcval.submission.load import LoadedSubmission

__all__ = [
    "UNSTABLE_OUTCOME",
    "VERDICT_EXIT_CODES",
    "Finding",
    "MeasuredFigures",
    "MetricStatus",
    "MetricVerdict",
    "Verdict",
    "VerdictStatus",
    "judge",
    "same_hardware",
    "sanity_findings",
]

MetricStatus = Literal[
    "pass", "info", "fail", "unstable", "not_measured", "not_reported", "not_applicable"
]
VerdictStatus = Literal["pass", "fail", "error", "unmeasured"]
"""``unmeasured``: the runner could not measure stably (other load disturbed it). That is
the runner's fault, never a verdict against the submission: re-run (exit code 3)."""

VERDICT_EXIT_CODES: dict[VerdictStatus, ExitCode] = {
    "pass": ExitCode.OK,
    "fail": ExitCode.FAIL,
    "error": ExitCode.FAIL,  # the submission's own child crashed, hung or ran out of memory
    "unmeasured": ExitCode.UNMEASURED,
}
"""The exit code of a run whose submissions all end with this verdict (``mcval validate``
takes the most serious of a mixed run); ``ci report`` checks each cell against it."""

UNSTABLE_OUTCOME = "could not measure stably; re-run"
"""The outcome when an unstable figure keeps a submission from passing and nothing stable
fails it; also an unstable figure's note when the runner gave no reason."""

LARGER_TOLERANCE = 0.001
"""A compressed row may be this much larger than its baseline before it must say why."""


class MeasuredFigures(FigureValues):
    """The runner's headline numbers for one submission (what the table shows)."""

    not_applicable: dict[str, str] = Field(
        default_factory=dict, description="device ('cpu'/'cuda') → reason its figures are absent"
    )
    load_peak_mb: dict[str, float] = Field(
        default_factory=dict,
        description="'ram_mb'/'vram_mb' → peak while loading and compressing, kept apart so a "
        "recipe's fp32 copy at load is not charged to the compressed row's figure",
    )
    cpu: str | None = Field(default=None, description="the runner's CPU model")
    gpu: str | None = Field(default=None, description="the runner's GPU name, if any")


class MetricVerdict(BaseModel):
    """One row of the reported | measured | Δ | verdict table."""

    field: str
    label: str
    reported: float | None
    measured: float | None
    delta: Delta | None = Field(description="reported − measured, relative or in a unit")
    tolerance: Allowance | None = Field(description="what the difference was judged against")
    status: MetricStatus
    note: str | None = None
    line: int | None = Field(default=None, description="line of the reported value")


class Verdict(BaseModel):
    """The decision for one submission."""

    submission: str
    status: VerdictStatus
    metrics: list[MetricVerdict] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        """One line per reason the submission fails."""
        lines = [
            f"{m.label}: {m.note or 'outside tolerance'}"
            for m in self.metrics
            if m.status == "fail"
        ]
        lines += [f.message for f in self.findings if f.severity == "fail"]
        return lines + self.errors


_HW_TOKEN = re.compile(r"[a-z0-9]+")
_HW_NOISE = {
    "intel",
    "amd",
    "nvidia",
    "geforce",
    "core",
    "cpu",
    "gpu",
    "processor",
    "r",
    "tm",
    "with",
    "radeon",
    "graphics",
    "laptop",
    "mobile",
    "gen",
    "ghz",
    "apple",
    "tesla",
}


def _hardware_tokens(text: str | None) -> set[str]:
    """The identifying words of a CPU/GPU name (model numbers), lower-case."""
    if not text:
        return set()
    tokens = set(_HW_TOKEN.findall(text.lower())) - _HW_NOISE
    return {t for t in tokens if any(c.isdigit() for c in t)} or tokens


def same_hardware(reported: str | None, runner: str | None) -> bool:
    """Whether the team's hardware note names the runner's CPU/GPU (e.g. 'RTX 3060 Laptop'
    and 'NVIDIA GeForce RTX 3060 Laptop GPU'); unknown hardware is never the same."""
    wanted, have = _hardware_tokens(reported), _hardware_tokens(runner)
    return bool(wanted) and wanted <= have


def _within(tolerance: Tolerance, reported: float, measured: float) -> bool:
    diff = abs(reported - measured)
    if tolerance.absolute is not None and diff <= tolerance.absolute + 1e-12:
        return True
    if tolerance.relative is not None:
        scale = abs(measured) if measured else abs(reported)
        return diff <= tolerance.relative * scale + 1e-12
    return False


def _quality_unit(metric: str) -> tuple[float, str]:
    """How an absolute difference of a metric is kept: fractions in percentage points."""
    info = METRICS.get(metric)
    if info is not None and info.kind is MetricKind.FRACTION:
        return 100.0, "pp"
    return 1.0, ""


def _allowance(tolerance: Tolerance, scale: float, unit: str) -> Allowance:
    absolute = tolerance.absolute * scale if tolerance.absolute is not None else None
    return Allowance(relative=tolerance.relative, absolute=absolute, unit=unit)


def _delta(
    tolerance: Tolerance, reported: float, measured: float, scale: float, unit: str
) -> Delta:
    """Reported minus measured, in the tolerance's own terms (relative when it has one)."""
    if tolerance.relative is None or not measured:
        return Delta(kind="absolute", value=(reported - measured) * scale, unit=unit)
    return Delta(kind="relative", value=(reported - measured) / measured)


def _compare(
    field: str,
    label: str,
    reported: float | None,
    measured: float | None,
    tolerance: Tolerance,
    *,
    line: int | None,
    scale: float = 1.0,
    unit: str = "",
    same_hw: bool = True,
    implausible_factor: float = 10.0,
    not_applicable: str | None = None,
    unstable: str | None = None,
) -> MetricVerdict:
    base = {
        "field": field,
        "label": label,
        "reported": reported,
        "measured": measured,
        "line": line,
    }
    allowance = _allowance(tolerance, scale, unit)
    if measured is None:
        status: MetricStatus = "not_applicable" if not_applicable else "not_measured"
        note = not_applicable or ("not measured on this runner" if reported is not None else None)
        return MetricVerdict(**base, delta=None, tolerance=allowance, status=status, note=note)
    if unstable is not None:
        # Shown, never judged: a disturbed figure must neither pass nor fail (nor be
        # published), whether or not the team reported it and on whatever hardware.
        reason = unstable.strip().rstrip(".")
        note = f"could not measure stably: {reason}; re-run" if reason else UNSTABLE_OUTCOME
        return MetricVerdict(
            **base,
            delta=None if reported is None else _delta(tolerance, reported, measured, scale, unit),
            tolerance=allowance,
            status="unstable",
            note=note,
        )
    if reported is None:
        return MetricVerdict(**base, delta=None, tolerance=allowance, status="not_reported")
    delta = _delta(tolerance, reported, measured, scale, unit)
    if not same_hw:
        ratio = max(reported, measured) / max(min(reported, measured), 1e-9)
        if ratio > implausible_factor:
            note = (
                f"implausible: {ratio:.1f}× the runner's figure (more than "
                f"×{implausible_factor:g} even on other hardware)"
            )
            factor = Allowance(factor=implausible_factor)
            return MetricVerdict(**base, delta=delta, tolerance=factor, status="fail", note=note)
        return MetricVerdict(
            **base,
            delta=delta,
            tolerance=allowance,
            status="info",
            note="other hardware: shown for information",
        )
    ok = _within(tolerance, reported, measured)
    return MetricVerdict(
        **base,
        delta=delta,
        tolerance=allowance,
        status="pass" if ok else "fail",
        # The note is the English sentence of failures and annotations; the comment and
        # the terminal write the tolerance column from the numbers, in their own language.
        note=None if ok else f"outside {format_allowance(allowance)}",
    )


_DEVICE_ORDER = {None: 0, "cpu": 1, "gpu": 2}
_RUNNER_DEVICE = {"cpu": "cpu", "gpu": "cuda"}
"""A figure's device → the runner's name for it (the keys of ``not_applicable``)."""


def _judge_figure(
    figure: Figure, loaded: LoadedSubmission, measured: MeasuredFigures, policy: Policy
) -> MetricVerdict:
    """One figure: strict when hardware-independent, else judged as its device allows."""
    key, device = figure.key, figure.device
    reported = loaded.submission.reported
    tolerances = policy.tolerances
    same_hw = device is None or same_hardware(
        getattr(reported.hardware, device), getattr(measured, device)
    )
    verdict = _compare(
        key,
        figure.text["en"].row,
        getattr(reported, key),
        getattr(measured, key),
        getattr(tolerances, figure.tolerance),
        line=loaded.line_of("reported", key),
        unit=figure.unit,
        same_hw=same_hw,
        implausible_factor=tolerances.implausible_factor,
        not_applicable=measured.not_applicable.get(_RUNNER_DEVICE[device]) if device else None,
        unstable=measured.unstable.get(key),
    )
    if figure.dimension is Dimension.SIZE and verdict.status == "fail":
        hint = _decimal_size_hint(verdict.reported, verdict.measured, tolerances.weights_mb)
        if hint and verdict.note:
            verdict.note = f"{verdict.note}; {hint}"
    return verdict


_DECIMAL_READINGS = ((2**30 / 1e9, "GB", 9, 1024.0), (2**20 / 1e6, "MB", 6, 1.0))
"""(binary/decimal ratio, unit, power of ten, MiB per unit) of a decimal size read as MiB."""


def _decimal_size_hint(
    reported: float | None, measured: float | None, tolerance: Tolerance
) -> str | None:
    """A size off by 2^30/10^9 or 2^20/10^6 was written in decimal GB/MB: say so, and the
    number to write (the course's MB is 2^20 bytes)."""
    if not reported or not measured:
        return None
    for factor, unit, power, mib_per_unit in _DECIMAL_READINGS:
        fixed = reported / factor
        if _within(tolerance, fixed, measured):
            read = " read as 2^30" if unit == "GB" else ""
            return (
                f"{reported:g} MB is ×{reported / measured:.3f} the measured size: it looks like "
                f"decimal {unit} (10^{power} bytes){read}; in the course's MB (2^20 bytes) it "
                f"is {fixed:.2f}: write {fixed:.2f} or '{reported / mib_per_unit:g} {unit} "
                f"(10^{power})'"
            )
    return None


def judge(
    loaded: LoadedSubmission,
    measured: MeasuredFigures,
    policy: Policy,
    *,
    baseline: MeasuredFigures | None = None,
    errors: list[str] | None = None,
    notes: list[Finding] | None = None,
) -> Verdict:
    """Compare a submission's reported numbers with the runner's measurement.

    ``notes`` are findings from elsewhere (claim checks, measurement warnings) shown with
    the verdict; ``errors`` (a crashed or timed-out child) make it an error. A figure in
    ``measured.unstable`` neither passes nor fails: when nothing stable fails, the outcome
    is ``unmeasured`` (could not measure stably; re-run), never a pass the table would
    publish with a disturbed number.
    """
    sub = loaded.submission
    rep = sub.reported
    tol = policy.tolerances
    metrics: list[MetricVerdict] = []
    # Weights first, then each device's figures together (CPU latency, RAM, GPU latency...).
    for figure in sorted(FIGURES.values(), key=lambda f: _DEVICE_ORDER[f.device]):
        metrics.append(_judge_figure(figure, loaded, measured, policy))
    for metric in sorted(set(sub.evaluation.metrics) | set(rep.quality)):
        info = METRICS.get(metric)
        scale, unit = _quality_unit(metric)
        tolerance = tol.quality.get(metric, Tolerance(relative=0.01))
        metrics.append(
            _compare(
                f"quality.{metric}",
                info.label if info else metric,
                rep.quality.get(metric),
                measured.quality.get(metric),
                tolerance,
                scale=scale,
                unit=unit,
                line=loaded.line_of("reported", "quality", metric),
                unstable=measured.unstable.get(f"quality.{metric}"),
            )
        )
    findings = sanity_findings(loaded, measured, baseline)
    findings += notes or []
    errors = list(errors or [])
    if errors:
        status: VerdictStatus = "error"
    elif any(m.status == "fail" for m in metrics) or any(f.severity == "fail" for f in findings):
        status = "fail"
    elif any(m.status == "unstable" for m in metrics):
        status = "unmeasured"
    else:
        status = "pass"
    return Verdict(
        submission=loaded.id, status=status, metrics=metrics, findings=findings, errors=errors
    )


_WEIGHTS = ("reported", "weights_mb")
_VRAM = ("reported", "vram_mb")


def sanity_findings(
    loaded: LoadedSubmission, measured: MeasuredFigures, baseline: MeasuredFigures | None
) -> list[Finding]:
    """Reports that cannot be right on any hardware (the 2025 table's evidence).

    Each sanity rule lives here alone and fails the submission. A quality value outside
    its metric's range never gets this far: ``load_submission`` rejects it with the fix
    (``write 0.81 or "81%"``), since it is nearly always a unit slip in the file.
    """
    sub = loaded.submission
    rep = sub.reported
    found: list[Finding] = []

    def add(code: str, message: str, path: tuple[str, ...], **evidence: float) -> None:
        line = loaded.line_of(*path)
        found.append(
            Finding(code=code, severity="fail", message=message, line=line, evidence=evidence)
        )

    if rep.weights_mb == 0:
        add("zero-size", "reported weight size is 0 MB; a model has weights", _WEIGHTS)
    if rep.vram_mb is not None and rep.vram_mb > 0 and rep.latency_gpu_ms is None:
        add(
            "vram-without-gpu-time",
            "VRAM is reported but no GPU latency: the model never ran on a GPU",
            _VRAM,
        )
    if rep.vram_mb == 0 and rep.latency_gpu_ms:
        add(
            "gpu-time-without-vram",
            "a GPU latency is reported with 0 MB of VRAM: a model on a GPU occupies its memory",
            _VRAM,
        )
    if (
        baseline is not None
        and sub.method.baseline
        and measured.weights_mb is not None
        and baseline.weights_mb is not None
        and measured.weights_mb > baseline.weights_mb * (1 + LARGER_TOLERANCE)
        and not (sub.method.notes and sub.method.notes.strip())
    ):
        add(
            "larger-than-baseline",
            f"the compressed model ({measured.weights_mb:.2f} MB) is larger than its baseline "
            f"{sub.method.baseline} ({baseline.weights_mb:.2f} MB); explain why in method.notes",
            ("method", "baseline"),
            weights_mb=measured.weights_mb,
            baseline_weights_mb=baseline.weights_mb,
        )
    return found
