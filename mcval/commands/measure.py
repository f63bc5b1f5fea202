"""``mcval measure PATH``: the figures a team puts under ``reported:``, measured exactly as
the bot measures them (same runner, same protocol), printed as a table or as JSON.

Exit codes: 0 measured, 1 a device's measurement failed, 2 input/usage error, 3 a figure
could not be measured stably (other load on this machine) or the runner could not measure
at all (the hub unreachable): re-run. The measuring itself is ``mcval.measure``'s; this
module only asks for it and prints.

Progress goes to stderr as plain lines, one per stage — deliberately not an animated
spinner, whose refresh thread would compete with the child's timed calls for the cores.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mcval.errors import ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from mcval.findings import Finding
    from mcval.measure.devices import DeviceChoice
    from mcval.measure.measurement import Measurement
    from mcval.submission.load import LoadedSubmission

REMEASURE_ADVICE = "close other programs and re-run before writing it down"
"""What a student does about an unstable figure instead of copying it under ``reported:``."""


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def _figure(m: Measurement, key: str, value: float | None, detail: str) -> tuple[str, str]:
    """The value and detail cells of a figure; an unstable one carries its warning, right
    beside the number a student would otherwise copy."""
    from rich.markup import escape

    reason = m.unstable.get(key)
    if reason is None:
        return _fmt(value), detail
    warning = f"[bold yellow]unstable: {escape(reason.strip().rstrip('.'))}; {REMEASURE_ADVICE}[/]"
    return f"{_fmt(value)} [bold yellow]⚠[/]", f"{warning}\n{detail}"


def _load_peak(load_peak_mb: float | None, column: str) -> str:
    return (
        ""
        if load_peak_mb is None
        else f"; peak while loading/compressing {load_peak_mb:,.1f} MB, not counted in {column}"
    )


def render(m: Measurement, console: Console) -> None:
    """A readable table of the figures and what they rest on."""
    from rich.markup import escape
    from rich.table import Table

    from mcval.render.comment import quality_method

    d = m.details
    table = Table(title=f"mcval measure: {m.submission}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("detail", overflow="fold")
    if d.size is not None:
        s = d.size
        dtypes = ", ".join(f"{k} {v / s.weights_bytes:.0%}" for k, v in s.dtype_bytes.items())
        extra = f"{s.parameters / 1e6:,.2f} M params; {dtypes}"
        if s.sparsity is not None:
            extra += f"; zeros {s.sparsity:.1%}"
        if s.files_mb is not None:
            extra += f"; files on disk {s.files_mb:,.2f} MB"
        table.add_row("weights_mb", _fmt(m.weights_mb), extra)
    for key, dev in (("latency_cpu_ms", "cpu"), ("latency_gpu_ms", "cuda")):
        stats = d.latency.get(dev)
        if stats is None:
            why = d.not_applicable.get(dev, "not measured")
            table.add_row(key, "—", escape(why))
            continue
        first = f"; first call {stats.first_call_ms:.1f} ms" if stats.first_call_ms else ""
        used = (
            f"; CPU use {stats.cpu_utilization * 100:.0f} % of {stats.threads} threads"
            if stats.cpu_utilization is not None
            else ""
        )
        tries = f"; {stats.attempts} timed windows" if stats.attempts > 1 else ""
        table.add_row(
            key,
            *_figure(
                m,
                key,
                stats.median_ms,
                f"median of {stats.count} calls; p10 {stats.p10_ms:.2f} / p90 {stats.p90_ms:.2f}; "
                f"cv {stats.cv:.1%}; {stats.threads} threads{first}{used}{tries}",
            ),
        )
    if d.ram is not None:
        table.add_row(
            "ram_mb",
            *_figure(
                m,
                "ram_mb",
                m.ram_mb,
                f"peak RSS during inference {d.ram.peak_rss_mb:,.1f} MB - before load "
                f"{d.ram.baseline_rss_mb:,.1f} MB ({d.ram.method})"
                + _load_peak(d.ram.load_peak_mb, "ram_mb"),
            ),
        )
    else:
        table.add_row("ram_mb", "—", "not measured")
    if d.vram is not None:
        dev_used = (
            f"; device used {d.vram.device_used_mb:,.0f} MB ({d.vram.device_source})"
            if d.vram.device_used_mb is not None
            else ""
        )
        table.add_row(
            "vram_mb",
            *_figure(
                m,
                "vram_mb",
                m.vram_mb,
                f"max allocated during inference; max reserved {d.vram.max_reserved_mb:,.1f} MB"
                f"{dev_used}" + _load_peak(d.vram.load_peak_mb, "vram_mb"),
            ),
        )
    else:
        table.add_row("vram_mb", "—", escape(d.not_applicable.get("cuda", "not measured")))
    if m.quality:
        how = quality_method({"details": {"quality_details": d.quality_details}})
        note = f"computed on {d.quality_device}" + (f"; {how}" if how else "")
        for metric, value in m.quality.items():
            table.add_row(f"quality.{metric}", f"{value:.4g}", escape(note))
    else:
        table.add_row("quality", "—", "skipped" if d.quality_device is None else "")
    console.print(table)
    if m.environment is not None:
        e = m.environment
        console.print(
            f"environment: {e.environment_class}; torch {e.torch_version}, transformers "
            f"{e.transformers_version}, mcval {e.mcval_version}, python {e.python_version}",
            highlight=False,
        )
    # Messages quote submission text (column names, file names): never read as rich markup.
    for warning in d.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    for err in d.errors:
        loc = f" (line {err.line})" if err.line else ""
        console.print(f"[red]error:[/] {escape(err.message)}{loc}", highlight=False)


def _claims(loaded: LoadedSubmission, measurement: Measurement) -> list[Finding]:
    """Claims of method.name the weights contradict, without a baseline (the runner checks
    none; ``mcval validate`` checks them against the baseline's weights instead)."""
    from mcval.models.claims import check_claims

    inspection = measurement.details.inspection
    if inspection is None:
        return []
    method = loaded.submission.method
    gguf = loaded.submission.model.gguf_file is not None
    return check_claims(method.name, method.recipe, inspection, gguf=gguf)


def measure(
    path: Path,
    *,
    device: DeviceChoice = "all",
    skip_quality: bool = False,
    as_json: bool = False,
    repo: Path | None = None,
    console: Console | None = None,
    progress_console: Console | None = None,
) -> ExitCode:
    """Measure one submission file on ``device`` and print the figures (``as_json``: one
    JSON object on stdout). ``repo`` defaults to the repository around the file; progress
    lines go to ``progress_console`` (stderr by default)."""
    from rich.console import Console
    from rich.markup import escape

    from mcval.measure.devices import require_devices
    from mcval.policy import load_policy
    from mcval.submission.check import find_repo_root
    from mcval.submission.load import load_submission

    err_console = progress_console or Console(stderr=True, highlight=False)
    repo_root = repo if repo is not None else find_repo_root(path.resolve().parent)
    policy = load_policy(repo_root)
    loaded = load_submission(path, repo_root, policy)
    devices = require_devices(device)

    from mcval.measure import measurement as measuring

    started = time.monotonic()

    def progress(on: str, stage: str) -> None:
        line = escape(f"[{on}] {stage}")
        err_console.print(f"[dim]{time.monotonic() - started:7.1f}s[/] {line}")

    err_console.print(f"measuring {loaded.id} on {', '.join(devices)} ...")
    result = measuring.measure_submission(
        loaded, repo_root, policy, devices, skip_quality=skip_quality, progress=progress
    )
    claims = _claims(loaded, result)
    if as_json:
        payload = result.model_dump(mode="json")
        payload["claims"] = [c.model_dump(mode="json") for c in claims]
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        out = console or Console()
        render(result, out)
        for claim in claims:
            out.print(f"[yellow]warning:[/] {escape(claim.message)}", highlight=False)
    if result.runner_problem is not None and all(e.kind == "runner" for e in result.details.errors):
        return ExitCode.UNMEASURED
    if result.details.errors and all(e.kind == "input" for e in result.details.errors):
        return ExitCode.INPUT  # the submission's to fix, as ``mcval check`` / ``validate``
    if not result.ok:
        return ExitCode.FAIL
    return ExitCode.UNMEASURED if result.unstable else ExitCode.OK
