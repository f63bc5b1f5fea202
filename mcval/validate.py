"""The validation pipeline: measure (or reuse), judge, store, for each submission.

Submissions are independent: one that cannot be read or that crashes its child does not
stop the others. This is not command code (no arguments, exit codes or printing of the
result): ``mcval validate`` (``mcval.commands.validate``) and the demo drive it and report
what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from mcval.errors import InputError
from mcval.figures import FigureValues
from mcval.policy import Policy
from mcval.render.comment import SubmissionReport
from mcval.results import (
    RecordEnvironment,
    ResultRecord,
    find_record,
    fingerprint,
    fingerprint_inputs,
    record_path,
    save_record,
)
from mcval.runtimes import runtime_or_none
from mcval.submission.check import check_paths
from mcval.submission.load import LoadedSubmission, submission_id
from mcval.verdict import Finding, MeasuredFigures, judge

if TYPE_CHECKING:
    from mcval.measure.environment import Environment
    from mcval.measure.measurement import Measurement

MeasureFunction = Callable[..., "Measurement"]


def environment_summary(env: Environment | None, threads: int | None = None) -> str:
    """One line naming the runner: CPU, GPU, torch, threads."""
    if env is None:
        return "unknown environment"
    parts = [env.cpu_model, env.gpu_name or "no GPU"]
    if env.torch_version:
        parts.append(f"torch {env.torch_version}")
    if threads or env.threads:
        parts.append(f"{threads or env.threads} threads")
    return " · ".join(parts)


def figures_of(measurement: Measurement) -> MeasuredFigures:
    """The headline numbers of a Measurement, as the verdict and table use them."""
    env = measurement.environment
    details = measurement.details
    load_peaks = {
        key: stats.load_peak_mb
        for key, stats in (("ram_mb", details.ram), ("vram_mb", details.vram))
        if stats is not None and stats.load_peak_mb is not None
    }
    return MeasuredFigures(
        **measurement.model_dump(include=set(FigureValues.model_fields)),
        not_applicable=dict(measurement.details.not_applicable),
        load_peak_mb=load_peaks,
        cpu=env.cpu_model if env else None,
        gpu=env.gpu_name if env else None,
    )


def measurement_notes(
    loaded: LoadedSubmission, measurement: Measurement, baseline: ResultRecord | None
) -> list[Finding]:
    """Claim checks (against the baseline's weights when its result is stored) and the
    measurement's own warnings, as verdict findings.

    The one place claims are checked for a submission: here the baseline is known, so a
    claim about what changed (pruned, distilled) is checked against the baseline's weights.
    """
    from mcval.models.claims import check_claims
    from mcval.models.inspection import ModelInspection

    details = measurement.details
    notes: list[Finding] = []
    if details.inspection is not None:
        stored = baseline.measurement.get("details", {}).get("inspection") if baseline else None
        method = loaded.submission.method
        notes = check_claims(
            method.name,
            method.recipe,
            details.inspection,
            baseline_inspection=ModelInspection.model_validate(stored) if stored else None,
            gguf=loaded.submission.model.gguf_file is not None,
        )
    notes += [Finding(code="measurement", severity="warning", message=w) for w in details.warnings]
    return notes


class Validator:
    """Runs the measure → judge → store pipeline for a set of submissions."""

    def __init__(
        self,
        repo_root: Path,
        policy: Policy,
        results_dir: Path,
        devices: Sequence[str],
        *,
        force: bool = False,
        skip_quality: bool = False,
        measure: MeasureFunction | None = None,
        environment_class: str | None = None,
        console: Console | None = None,
    ) -> None:
        self.repo_root = repo_root
        self.policy = policy
        self.results_dir = results_dir
        self.devices = list(devices)
        self.force = force
        self.skip_quality = skip_quality
        self._measure = measure
        self._environment_class = environment_class
        self.console = console or Console(stderr=True)

    @property
    def environment_class(self) -> str:
        """This runner's hardware class (no torch import: read from the OS and NVML)."""
        if self._environment_class is None:
            from mcval.measure.environment import collect_environment

            self._environment_class = collect_environment().environment_class
        return self._environment_class

    def measure(self, loaded: LoadedSubmission) -> Measurement:
        if self._measure is not None:
            return self._measure(
                loaded, self.repo_root, self.policy, self.devices, self.skip_quality
            )
        from mcval.measure.measurement import measure_submission

        def progress(device: str, stage: str) -> None:
            # Plain lines, not a spinner: a redraw thread would compete with the timed calls.
            self.console.print(f"{loaded.id}: {device}: {stage}", highlight=False)

        return measure_submission(
            loaded, self.repo_root, self.policy, self.devices, self.skip_quality, progress
        )

    def validate(self, loaded: LoadedSubmission) -> SubmissionReport:
        inputs = fingerprint_inputs(loaded, self.repo_root, self.policy, self.environment_class)
        inputs["devices"] = self.devices
        inputs["skip_quality"] = self.skip_quality
        print_ = fingerprint(inputs)
        previous = find_record(self.results_dir, loaded.id)
        baseline_id = loaded.submission.method.baseline
        baseline = find_record(self.results_dir, baseline_id) if baseline_id else None
        baseline_figures = baseline.measured if baseline else None
        reusable = (
            previous is not None
            and previous.submission_fingerprint == print_
            # An error (timeout, OOM, network) may be transient: measure again.
            and previous.verdict != "error"
            # So is other load: an unstable figure is re-measured, never reused (else a
            # re-run would repeat "re-run" forever, even once the failing reason is fixed).
            and not previous.measured.unstable
            and not self.force
        )
        if reusable:
            assert previous is not None
            # Same measurement inputs: only the verdict is recomputed (reported numbers may
            # have changed), which costs milliseconds and starts no child process.
            verdict = judge(
                loaded,
                previous.measured,
                self.policy,
                baseline=baseline_figures,
                errors=previous.report.errors,
                notes=[f for f in previous.report.findings if f.severity == "warning"],
            )
            record = previous.model_copy(
                update={
                    "verdict": verdict.status,
                    "report": verdict,
                    "method_name": loaded.submission.method.name,
                }
            )
            record = self._store(record)
            return SubmissionReport(id=loaded.id, path=loaded.relpath, record=record, reused=True)
        measurement = self.measure(loaded)
        figures = figures_of(measurement)
        errors = [
            e.message for e in measurement.details.errors if e.kind not in ("input", "runner")
        ]
        input_errors = [
            InputError(e.message, loaded.relpath, e.line)
            for e in measurement.details.errors
            if e.kind == "input"
        ]
        verdict = judge(
            loaded,
            figures,
            self.policy,
            baseline=baseline_figures,
            errors=errors,
            notes=measurement_notes(loaded, measurement, baseline),
        )
        if input_errors:
            return SubmissionReport(id=loaded.id, path=loaded.relpath, input_errors=input_errors)
        if measurement.runner_problem is not None:
            # This machine could not measure (the hub unreachable): no verdict and nothing
            # stored, so a stored result stays as it was and the next run measures again.
            return SubmissionReport(
                id=loaded.id, path=loaded.relpath, problem=measurement.runner_problem
            )
        env = measurement.environment
        record = ResultRecord(
            id=loaded.id,
            team=loaded.submission.team,
            model_id=loaded.submission.model.id,
            task=loaded.submission.model.task,
            method_name=loaded.submission.method.name,
            runtime=runtime_or_none(loaded.submission.model.runtime),
            baseline=baseline_id,
            submission_fingerprint=print_,
            fingerprint_inputs=inputs,
            measured_at=datetime.now(timezone.utc).replace(microsecond=0),
            measured=figures,
            environment=RecordEnvironment(
                summary=environment_summary(env, measurement.details.threads),
                environment_class=env.environment_class if env else self.environment_class,
                details=env.model_dump(mode="json") if env else {},
            ),
            verdict=verdict.status,
            report=verdict,
            measurement=measurement.model_dump(mode="json"),
        )
        record = self._store(record)
        return SubmissionReport(id=loaded.id, path=loaded.relpath, record=record)

    def _store(self, record: ResultRecord) -> ResultRecord:
        """Save the record; a failed write (a full disk) becomes this submission's error.

        The write is atomic, so the stored file is the previous result or none, never half
        a JSON; the report says so, and the other submissions go on.
        """
        try:
            save_record(self.results_dir, record)
        except OSError as exc:
            where = record_path(self.results_dir, record.id)
            if where.is_relative_to(self.repo_root):
                where = where.relative_to(self.repo_root)
            message = (
                f"the result could not be stored in {where}: {exc.strerror or exc}; the "
                "stored result (if any) is unchanged, run again once this is fixed"
            )
            report = record.report.model_copy(
                update={"status": "error", "errors": [*record.report.errors, message]}
            )
            return record.model_copy(update={"verdict": "error", "report": report})
        return record


def validate_paths(paths: Sequence[Path], validator: Validator) -> list[SubmissionReport]:
    """Check every file, then validate the valid ones in order (baselines first)."""
    report = check_paths(list(paths), validator.repo_root, validator.policy)
    reports: list[SubmissionReport] = []
    valid = [f.loaded for f in report.files if f.ok and f.loaded is not None]
    # Baselines before the rows that compress them, so "larger than baseline" has a figure.
    valid.sort(key=lambda s: (s.submission.method.baseline is not None, s.id))
    for result in report.files:
        if not result.ok:
            try:
                sub_id, relpath = submission_id(result.path, validator.repo_root, validator.policy)
            except InputError:
                sub_id, relpath = result.path.stem, str(result.path)
            reports.append(SubmissionReport(id=sub_id, path=relpath, input_errors=result.errors))
    for loaded in valid:
        reports.append(validator.validate(loaded))
    return reports
