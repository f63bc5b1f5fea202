"""Measure one submission: one fresh child per device, results merged into a ``Measurement``.

Why one child per device: CPU figures must not carry a CUDA context (hundreds of MB of RSS)
or GPU allocator state, and a crash on one device must not lose the other's figures. The CPU
child runs first with CUDA hidden and computes quality (unless skipped); when CPU is not
measured or could not produce quality, the CUDA child computes it. Threads are fixed from the
policy (else the submission's ``benchmark.threads``, else the physical cores: more threads
than cores only makes the timed calls compete), seeds are fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from mcval.figures import FigureValues
from mcval.measure.device_job import DeviceResult, WorkerRequest
from mcval.measure.environment import Environment, environment_class, physical_cores
from mcval.measure.latency import LatencyStats
from mcval.measure.launchers import Launcher
from mcval.measure.memory import RamStats, VramStats
from mcval.measure.size import SizeReport
from mcval.measure.supervisor import ChildError, run_isolated
from mcval.models.inspection import ModelInspection

if TYPE_CHECKING:
    from mcval.policy import MeasurePolicy, Policy
    from mcval.submission.load import LoadedSubmission

ProgressCallback = Callable[[str, str], None]
"""``progress(device, stage)``: called in the parent as the child reports each stage."""

WORKER_TARGET = "mcval.measure.device_job:measure_device"
PRELOAD = (
    "torch",
    "transformers",
    # transformers imports these lazily during the first from_pretrained: ~130 MB of RSS
    # that would otherwise count as the model's (docs/measurement.md: the imports are not
    # the model's).
    "transformers.modeling_utils",
    "transformers.modeling_layers",
    "transformers.masking_utils",
    "transformers.generation.utils",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.tokenization_utils_base",
    "transformers.processing_utils",
)
"""Imported once by the fork server that CPU children are forked from (a spawned CUDA child
imports them itself), before the memory cap and the RSS baseline (missing ones skipped)."""


class MeasureError(BaseModel):
    """A device's measurement that produced no figures (or a step of it that failed)."""

    device: str
    kind: Literal[
        "timeout",
        "signal",
        "memory",
        "exception",
        "exit",
        "protocol",
        "launch",
        "input",
        "quality",
        "runner",
    ] = Field(description="'input': the submission's to fix; 'runner': this machine's (re-run)")
    message: str
    line: int | None = Field(default=None, description="submission line it concerns")
    field: list[str | int] | None = None
    elapsed_s: float | None = None
    peak_rss_mb: float | None = None
    child: ChildError | None = Field(default=None, description="full child report, if any")


class DeviceRun(BaseModel):
    """One child's run: figures or the reason there are none."""

    device: str
    elapsed_s: float = Field(description="wall time of the child, spawn to exit")
    peak_rss_mb: float | None = Field(description="child's peak RSS as seen by the parent")
    stages: list[str] = Field(default_factory=list)
    timings_s: dict[str, float] = Field(
        default_factory=dict, description="load, benchmark (warm-up + timed), size, quality"
    )
    source: str | None = Field(default=None, description="resolved model directory / hub id")
    recipe_applied: list[str] = Field(default_factory=list)


class MeasurementDetails(BaseModel):
    """The distributions and reasons behind the headline figures."""

    size: SizeReport | None = None
    latency: dict[str, LatencyStats] = Field(default_factory=dict)
    ram: RamStats | None = None
    vram: VramStats | None = None
    not_applicable: dict[str, str] = Field(default_factory=dict)
    errors: list[MeasureError] = Field(default_factory=list)
    quality_device: str | None = None
    quality_details: dict[str, Any] = Field(
        default_factory=dict,
        description="how quality was computed: normaliser, resampler, each clip's original "
        "rate and channels, language and task",
    )
    threads: int
    protocol: dict[str, float | int | None] = Field(description="the policy's measure settings")
    devices: list[DeviceRun] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    inspection: ModelInspection | None = Field(
        default=None,
        description="what the measured weights are (dtypes, zeros, fingerprints); the claims "
        "of method.name are checked against it where the baseline is known (mcval validate)",
    )
    wall_s: float


class Measurement(FigureValues):
    """What ``mcval measure --json`` prints and the verdict compares against."""

    submission: str | None = None
    environment: Environment | None = None
    ok: bool = Field(description="every requested device measured or not applicable")
    details: MeasurementDetails

    @property
    def runner_problem(self) -> str | None:
        """Why this machine could not measure (the hub unreachable), when that is the case:
        the runner's fault, so commands exit 3 and no verdict is given."""
        found = [e.message for e in self.details.errors if e.kind == "runner"]
        return "; ".join(dict.fromkeys(found)) or None


def choose_threads(policy: Policy, benchmark_threads: int | None) -> int:
    """Policy first (one protocol for all rows), then the submission, then physical cores."""
    if policy.measure.threads:
        return policy.measure.threads
    if benchmark_threads:
        return benchmark_threads
    return physical_cores() or 1


def _protocol(mp: MeasurePolicy) -> dict[str, float | int | None]:
    return {
        "warmup_calls": mp.warmup_calls,
        "min_calls": mp.min_calls,
        "min_seconds": mp.min_seconds,
        "max_seconds": mp.max_seconds,
        "time_limit_s": mp.time_limit_s,
        "memory_limit_mb": mp.memory_limit_mb,
    }


def _merge_environment(cpu: Environment | None, gpu: Environment | None) -> Environment | None:
    """CPU child's description, with the GPU facts only the CUDA child can read."""
    if cpu is None:
        return gpu
    if gpu is None:
        return cpu
    return cpu.model_copy(
        update={
            "gpu_name": gpu.gpu_name or cpu.gpu_name,
            "gpu_count": max(gpu.gpu_count, cpu.gpu_count),
            "gpu_memory_mb": gpu.gpu_memory_mb or cpu.gpu_memory_mb,
            "gpu_driver": gpu.gpu_driver or cpu.gpu_driver,
            "cuda_version": gpu.cuda_version or cpu.cuda_version,
            "environment_class": environment_class(
                cpu.cpu_model, cpu.cpu_logical_cores, gpu.gpu_name or cpu.gpu_name
            ),
        }
    )


class DeviceOutcome(BaseModel):
    """One device's child, as the merge needs it: its run, its figures (when it produced
    any), the reason it has none, and the errors it reported."""

    run: DeviceRun
    result: DeviceResult | None = None
    not_applicable: str | None = None
    errors: list[MeasureError] = Field(default_factory=list)
    quality_attempted: bool = False


def run_device(
    loaded: LoadedSubmission,
    repo_root: Path,
    policy: Policy,
    device: str,
    *,
    threads: int,
    quality: bool,
    progress: ProgressCallback | None = None,
    launcher: Launcher | None = None,
) -> DeviceOutcome:
    """Measure ``loaded`` on one device in a child of its own; never raises for what the
    child does (its failure is an error of this device's outcome)."""
    mp = policy.measure
    is_cpu = device == "cpu"
    request = WorkerRequest(
        submission_json=loaded.submission.model_dump_json(by_alias=True),
        submission_id=loaded.id,
        repo_root=str(Path(repo_root).resolve()),
        policy_json=policy.model_dump_json(),
        device=device,
        quality=quality,
        threads=threads,
    )

    def report(stage: str) -> None:
        if progress is not None:
            progress(device, stage)

    outcome = run_isolated(
        WORKER_TARGET,
        request,
        DeviceResult,
        time_limit_s=mp.time_limit_s,
        # RLIMIT_AS would break CUDA's large virtual reservations: cap CPU children only.
        memory_limit_mb=mp.memory_limit_mb if is_cpu else None,
        hide_cuda=is_cpu,
        threads=threads,
        preload=PRELOAD,
        preload_server=mp.fork_server,
        hf_token=mp.hf_token,
        launcher=launcher,
        progress=report,
    )
    res = outcome.value
    run = DeviceRun(
        device=device,
        elapsed_s=outcome.elapsed_s,
        peak_rss_mb=outcome.peak_rss_mb,
        stages=outcome.stages,
        timings_s=res.timings_s if res else {},
        source=res.source if res else None,
        recipe_applied=res.recipe_applied if res else [],
    )
    if not outcome.ok or res is None:
        err = outcome.error
        assert err is not None
        failed = MeasureError(
            device=device,
            kind=err.kind,
            message=f"{device}: {err.message}",
            elapsed_s=err.elapsed_s,
            peak_rss_mb=err.peak_rss_mb,
            child=err,
        )
        return DeviceOutcome(run=run, errors=[failed])
    if res.not_applicable:
        return DeviceOutcome(run=run, not_applicable=res.not_applicable)
    if res.runner_error is not None:
        unmeasured = MeasureError(
            device=device,
            kind="runner",
            message=res.runner_error.message,
            elapsed_s=outcome.elapsed_s,
            peak_rss_mb=outcome.peak_rss_mb,
        )
        return DeviceOutcome(run=run, errors=[unmeasured])
    if res.input_error is not None:
        field = res.input_error.field
        invalid = MeasureError(
            device=device,
            kind="input",
            message=res.input_error.message,
            field=field,
            line=loaded.line_of(*field) if field else None,
            elapsed_s=outcome.elapsed_s,
            peak_rss_mb=outcome.peak_rss_mb,
        )
        return DeviceOutcome(run=run, errors=[invalid])
    errors = []
    if res.quality_error is not None:
        field = res.quality_error.field
        errors.append(
            MeasureError(
                device=device,
                kind="quality",
                message=f"quality evaluation failed: {res.quality_error.exc_type}: "
                f"{res.quality_error.message}",
                field=field,
                line=loaded.line_of(*field) if field else None,
            )
        )
    return DeviceOutcome(run=run, result=res, errors=errors, quality_attempted=quality)


def measure_submission(
    loaded: LoadedSubmission,
    repo_root: Path,
    policy: Policy,
    devices: Sequence[str],
    skip_quality: bool = False,
    progress: ProgressCallback | None = None,
    *,
    launcher: Launcher | None = None,
) -> Measurement:
    """Measure ``loaded`` on each of ``devices`` ("cpu", "cuda", "cuda:1"), each in a child
    of its own, CPU first; never raises for what a child does (errors land in
    ``details.errors``). ``launcher``: how children start (launchers.py; the fork server
    by default).
    """
    start = time.monotonic()
    threads = choose_threads(policy, loaded.submission.benchmark.threads)
    ordered = sorted(devices, key=lambda d: 0 if d == "cpu" else 1)
    outcomes: dict[str, DeviceOutcome] = {}
    for device in ordered:
        # Quality once: by the first device that produces figures (a failed evaluation is
        # not retried on the next device — the data would fail the same way).
        attempted = any(o.quality_attempted for o in outcomes.values())
        outcomes[device] = run_device(
            loaded,
            repo_root,
            policy,
            device,
            threads=threads,
            quality=not skip_quality and not attempted,
            progress=progress,
            launcher=launcher,
        )
    return merge_devices(loaded.id, outcomes, threads, policy.measure, time.monotonic() - start)


def merge_devices(
    submission: str | None,
    outcomes: dict[str, DeviceOutcome],
    threads: int,
    mp: MeasurePolicy,
    wall_s: float,
) -> Measurement:
    """One Measurement from the devices' outcomes (pure): size from CPU when it has it,
    RAM from CPU, VRAM and GPU latency from the first GPU, quality from whichever device
    computed it."""
    results = {d: o.result for d, o in outcomes.items() if o.result is not None}
    errors = [e for o in outcomes.values() for e in o.errors]
    cpu = results.get("cpu")
    gpu_key = next((d for d in outcomes if d != "cpu" and d in results), None)
    gpu = results.get(gpu_key) if gpu_key else None
    size_src = cpu if cpu is not None and cpu.size is not None else gpu
    quality_device = next((d for d, r in results.items() if r.quality_computed), None)
    quality = results[quality_device].quality if quality_device else {}
    warnings = list(dict.fromkeys(w for r in results.values() for w in r.warnings))
    details = MeasurementDetails(
        size=size_src.size if size_src else None,
        latency={d: r.latency for d, r in results.items() if r.latency is not None},
        ram=cpu.ram if cpu else None,
        vram=gpu.vram if gpu else None,
        not_applicable={d: o.not_applicable for d, o in outcomes.items() if o.not_applicable},
        errors=errors,
        quality_device=quality_device,
        quality_details=results[quality_device].quality_details if quality_device else {},
        threads=threads,
        protocol=_protocol(mp),
        devices=[o.run for o in outcomes.values()],
        warnings=warnings,
        inspection=size_src.inspection if size_src else None,
        wall_s=wall_s,
    )
    unstable = {
        figure: stats.unstable_reason or "could not be measured stably"
        for figure, stats in (
            ("latency_cpu_ms", cpu.latency if cpu else None),
            ("latency_gpu_ms", gpu.latency if gpu else None),
        )
        if stats is not None and stats.unstable
    }
    return Measurement(
        submission=submission,
        weights_mb=size_src.size.weights_mb if size_src and size_src.size else None,
        latency_cpu_ms=cpu.latency.median_ms if cpu and cpu.latency else None,
        latency_gpu_ms=gpu.latency.median_ms if gpu and gpu.latency else None,
        ram_mb=cpu.ram.ram_mb if cpu and cpu.ram else None,
        vram_mb=gpu.vram.vram_mb if gpu and gpu.vram else None,
        quality=quality,
        unstable=unstable,
        environment=_merge_environment(
            cpu.environment if cpu else None, gpu.environment if gpu else None
        ),
        ok=not errors,
        details=details,
    )
