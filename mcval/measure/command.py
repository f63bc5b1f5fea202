"""``mcval measure PATH [--device cpu|cuda|all] [--skip-quality] [--json] [--repo DIR]``.

Prints the numbers a team puts under ``reported:``, measured exactly as the bot does
(same runner, same protocol). Expected ``args`` attributes (see ``add_arguments``): ``path``,
``device`` ("cpu" | "cuda" | "all", default "all"), ``skip_quality``, ``json``, and optionally
``repo``. Exit codes: 0 measured, 1 a device's measurement failed, 2 input/usage error,
3 a figure could not be measured stably (other load on this machine): re-run.

Progress goes to stderr as plain lines, one per stage — deliberately not an animated
spinner, whose refresh thread would compete with the child's timed calls for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mcval.cli import EXIT_FAIL, EXIT_INPUT, EXIT_OK, EXIT_UNMEASURED
from mcval.errors import InputError, InputErrors

if TYPE_CHECKING:
    from rich.console import Console

    from mcval.findings import Finding
    from mcval.measure.measurement import Measurement
    from mcval.submission.load import LoadedSubmission

DEVICE_CHOICES = ("cpu", "cuda", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's arguments (for the lead's ``mcval.cli``)."""
    parser.add_argument("path", help="submission file (submissions/<team>/<name>.yaml)")
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="all",
        help="where to measure; 'all' = CPU plus CUDA when a GPU is present (default)",
    )
    parser.add_argument("--skip-quality", action="store_true", help="do not evaluate quality")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--repo", help="repository root (default: found from the file)")


def cuda_available() -> bool:
    """Whether a CUDA GPU can be used; cheap 'no' on machines without an NVIDIA driver."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    hints = (Path("/proc/driver/nvidia/version").exists(), shutil.which("nvidia-smi") is not None)
    if not any(hints):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_devices(choice: str) -> tuple[list[str], str | None]:
    """Devices to measure, or an error line for an impossible request."""
    if choice == "cpu":
        return ["cpu"], None
    has_cuda = cuda_available()
    if choice == "cuda":
        if not has_cuda:
            return [], (
                "--device cuda: no CUDA GPU is available on this machine "
                "(torch.cuda.is_available() is False); measure with --device cpu"
            )
        return ["cuda"], None
    return (["cpu", "cuda"] if has_cuda else ["cpu"]), None


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
        for metric, value in m.quality.items():
            table.add_row(f"quality.{metric}", f"{value:.4g}", f"computed on {d.quality_device}")
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


def run(args: argparse.Namespace) -> int:
    """Entry point of ``mcval measure``; returns the exit code."""
    from rich.console import Console
    from rich.markup import escape

    from mcval.policy import load_policy
    from mcval.submission.check import find_repo_root
    from mcval.submission.load import load_submission

    err_console = Console(stderr=True, highlight=False)
    path = Path(args.path)
    repo = getattr(args, "repo", None)
    repo_root = Path(repo) if repo else find_repo_root(path.resolve().parent)
    try:
        policy = load_policy(repo_root)
        loaded = load_submission(path, repo_root, policy)
    except InputErrors as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:
        print(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT

    devices, problem = resolve_devices(getattr(args, "device", "all") or "all")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_INPUT

    from mcval.measure.measurement import measure_submission

    started = time.monotonic()

    def progress(device: str, stage: str) -> None:
        line = escape(f"[{device}] {stage}")
        err_console.print(f"[dim]{time.monotonic() - started:7.1f}s[/] {line}")

    err_console.print(f"measuring {loaded.id} on {', '.join(devices)} ...")
    measurement = measure_submission(
        loaded,
        repo_root,
        policy,
        devices,
        skip_quality=bool(getattr(args, "skip_quality", False)),
        progress=progress,
    )
    claims = _claims(loaded, measurement)
    if getattr(args, "json", False):
        payload = measurement.model_dump(mode="json")
        payload["claims"] = [c.model_dump(mode="json") for c in claims]
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        console = Console()
        render(measurement, console)
        for claim in claims:
            console.print(f"[yellow]warning:[/] {escape(claim.message)}", highlight=False)
    if not measurement.ok:
        return EXIT_FAIL
    return EXIT_UNMEASURED if measurement.unstable else EXIT_OK
