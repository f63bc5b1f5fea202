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

from mcval.metrics import METRICS, MetricKind
from mcval.policy import Policy, Tolerance
from mcval.submission.load import LoadedSubmission

MetricStatus = Literal[
    "pass", "info", "fail", "unstable", "not_measured", "not_reported", "not_applicable"
]
VerdictStatus = Literal["pass", "fail", "error", "unmeasured"]
"""``unmeasured``: the runner could not measure stably (other load disturbed it). That is
the runner's fault, never a verdict against the submission: re-run (exit code 3)."""

UNSTABLE_OUTCOME = "could not measure stably; re-run"
"""The outcome when an unstable figure keeps a submission from passing and nothing stable
fails it; also an unstable figure's note when the runner gave no reason."""

HARDWARE_FIELDS: dict[str, Literal["cpu", "gpu"]] = {
    "latency_cpu_ms": "cpu",
    "ram_mb": "cpu",
    "latency_gpu_ms": "gpu",
    "vram_mb": "gpu",
}
FIELD_LABELS = {
    "weights_mb": "Weight size (MB)",
    "latency_cpu_ms": "CPU latency (ms)",
    "latency_gpu_ms": "GPU latency (ms)",
    "ram_mb": "Peak RAM (MB)",
    "vram_mb": "Peak VRAM (MB)",
}


class MeasuredFigures(BaseModel):
    """The runner's headline numbers for one submission (what the table shows)."""

    weights_mb: float | None = None
    latency_cpu_ms: float | None = None
    latency_gpu_ms: float | None = None
    ram_mb: float | None = None
    vram_mb: float | None = None
    quality: dict[str, float] = Field(default_factory=dict)
    not_applicable: dict[str, str] = Field(
        default_factory=dict, description="device ('cpu'/'cuda') → reason its figures are absent"
    )
    unstable: dict[str, str] = Field(
        default_factory=dict,
        description="figure key ('latency_cpu_ms', 'ram_mb', …) → why it could not be measured "
        "stably; such a figure is shown but never passes or fails a submission",
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
    delta: str | None = Field(description="difference as shown, e.g. '+0.4 %' or '-1.2 pp'")
    tolerance: str | None
    status: MetricStatus
    note: str | None = None
    line: int | None = Field(default=None, description="line of the reported value")


class Finding(BaseModel):
    """A sanity rule or claim check that fired, with its evidence."""

    code: str
    severity: Literal["fail", "warning"]
    message: str
    line: int | None = None


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


def _quality_scale(metric: str) -> tuple[float, str]:
    """How an absolute difference of a metric is shown: fractions in percentage points."""
    info = METRICS.get(metric)
    if info is not None and info.kind is MetricKind.FRACTION:
        return 100.0, " pp"
    return 1.0, ""


def _describe(tolerance: Tolerance, scale: float, unit: str) -> str:
    parts = []
    if tolerance.relative is not None:
        parts.append(f"±{tolerance.relative * 100:g} %")
    if tolerance.absolute is not None:
        parts.append(f"±{tolerance.absolute * scale:g}{unit}")
    return " or ".join(parts)


def _delta(tolerance: Tolerance, reported: float, measured: float, scale: float, unit: str) -> str:
    """Reported minus measured, in the tolerance's own terms (relative when it has one)."""
    if tolerance.relative is None or not measured:
        return f"{(reported - measured) * scale:+.2f}{unit}"
    return f"{(reported - measured) / measured * 100:+.1f} %"


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
    hardware_dependent: bool = False,
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
    tolerance_text = _describe(tolerance, scale, unit)
    if measured is None:
        status: MetricStatus = "not_applicable" if not_applicable else "not_measured"
        note = not_applicable or ("not measured on this runner" if reported is not None else None)
        return MetricVerdict(**base, delta=None, tolerance=tolerance_text, status=status, note=note)
    if unstable is not None:
        # Shown, never judged: a disturbed figure must neither pass nor fail (nor be
        # published), whether or not the team reported it and on whatever hardware.
        reason = unstable.strip().rstrip(".")
        note = f"could not measure stably: {reason}; re-run" if reason else UNSTABLE_OUTCOME
        return MetricVerdict(
            **base,
            delta=None if reported is None else _delta(tolerance, reported, measured, scale, unit),
            tolerance=tolerance_text,
            status="unstable",
            note=note,
        )
    if reported is None:
        return MetricVerdict(**base, delta=None, tolerance=tolerance_text, status="not_reported")
    delta = _delta(tolerance, reported, measured, scale, unit)
    if hardware_dependent and not same_hw:
        ratio = max(reported, measured) / max(min(reported, measured), 1e-9)
        if ratio > implausible_factor:
            note = (
                f"implausible: {ratio:.1f}× the runner's figure (more than "
                f"×{implausible_factor:g} even on other hardware)"
            )
            return MetricVerdict(
                **base, delta=delta, tolerance=f"×{implausible_factor:g}", status="fail", note=note
            )
        return MetricVerdict(
            **base,
            delta=delta,
            tolerance=tolerance_text,
            status="info",
            note="other hardware: shown for information",
        )
    ok = _within(tolerance, reported, measured)
    return MetricVerdict(
        **base,
        delta=delta,
        tolerance=tolerance_text,
        status="pass" if ok else "fail",
        note=None if ok else f"outside {tolerance_text}",
    )


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
    na_cpu = measured.not_applicable.get("cpu")
    na_gpu = measured.not_applicable.get("cuda")
    metrics.append(
        _compare(
            "weights_mb",
            FIELD_LABELS["weights_mb"],
            rep.weights_mb,
            measured.weights_mb,
            tol.weights_mb,
            line=loaded.line_of("reported", "weights_mb"),
            unit=" MB",
            unstable=measured.unstable.get("weights_mb"),
        )
    )
    for field, kind in HARDWARE_FIELDS.items():
        runner_hw = measured.cpu if kind == "cpu" else measured.gpu
        team_hw = rep.hardware.cpu if kind == "cpu" else rep.hardware.gpu
        tolerance = tol.latency_ms if field.startswith("latency") else tol.memory_mb
        metrics.append(
            _compare(
                field,
                FIELD_LABELS[field],
                getattr(rep, field),
                getattr(measured, field),
                tolerance,
                line=loaded.line_of("reported", field),
                hardware_dependent=True,
                same_hw=same_hardware(team_hw, runner_hw),
                implausible_factor=tol.implausible_factor,
                not_applicable=na_cpu if kind == "cpu" else na_gpu,
                unstable=measured.unstable.get(field),
            )
        )
    for metric in sorted(set(sub.evaluation.metrics) | set(rep.quality)):
        info = METRICS.get(metric)
        scale, unit = _quality_scale(metric)
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


def sanity_findings(
    loaded: LoadedSubmission, measured: MeasuredFigures, baseline: MeasuredFigures | None
) -> list[Finding]:
    """Reports that cannot be right on any hardware (PRODUCT.md's evidence list)."""
    sub = loaded.submission
    rep = sub.reported
    found: list[Finding] = []

    def add(code: str, severity: Literal["fail", "warning"], message: str, *path: str) -> None:
        found.append(
            Finding(
                code=code,
                severity=severity,
                message=message,
                line=loaded.line_of(*path) if path else None,
            )
        )

    if rep.weights_mb == 0:
        add(
            "zero-size",
            "fail",
            "reported weight size is 0 MB; a model has weights",
            "reported",
            "weights_mb",
        )
    if rep.vram_mb is not None and rep.vram_mb > 0 and rep.latency_gpu_ms is None:
        add(
            "vram-without-gpu-time",
            "fail",
            "VRAM is reported but no GPU latency: the model never ran on a GPU",
            "reported",
            "vram_mb",
        )
    if rep.vram_mb == 0 and rep.latency_gpu_ms:
        add(
            "gpu-time-without-vram",
            "fail",
            "a GPU latency is reported with 0 MB of VRAM: a model on a GPU occupies its memory",
            "reported",
            "vram_mb",
        )
    for metric, value in rep.quality.items():
        info = METRICS.get(metric)
        if info and (value < info.minimum or (info.maximum is not None and value > info.maximum)):
            add(
                "quality-range",
                "fail",
                f"{metric} = {value:g} is outside the metric's range",
                "reported",
                "quality",
                metric,
            )
    if (
        baseline is not None
        and sub.method.baseline
        and measured.weights_mb is not None
        and baseline.weights_mb is not None
        and measured.weights_mb > baseline.weights_mb * 1.001
        and not sub.method.notes
    ):
        add(
            "larger-than-baseline",
            "fail",
            f"the compressed model ({measured.weights_mb:.2f} MB) is larger than its baseline "
            f"{sub.method.baseline} ({baseline.weights_mb:.2f} MB); explain why in method.notes",
            "method",
            "baseline",
        )
    return found
