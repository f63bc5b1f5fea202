"""The machine and software a measurement ran on, recorded with every result.

Latency and memory only mean something next to the hardware that produced them; the
``environment_class`` (CPU model, logical CPUs, GPU name) is the part of it a result's
fingerprint uses, so re-measurements on an equivalent runner are recognised as comparable.
Collecting it imports nothing heavy unless asked: versions come from package metadata, GPU
facts from NVML / ``nvidia-smi`` or, in a CUDA child, from torch itself.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, Field

from mcval.measure.memory import MIB, decoded, nvml


class Environment(BaseModel):
    """Where a measurement ran."""

    cpu_model: str
    cpu_physical_cores: int | None
    cpu_logical_cores: int | None
    ram_total_mb: float | None
    gpu_name: str | None = None
    gpu_count: int = 0
    gpu_memory_mb: float | None = None
    gpu_driver: str | None = None
    cuda_version: str | None = Field(default=None, description="CUDA runtime torch was built for")
    torch_version: str | None = None
    transformers_version: str | None = None
    mcval_version: str
    python_version: str
    os: str
    threads: int | None = Field(default=None, description="torch intra-op threads used")
    environment_class: str = Field(description="hardware class used in result fingerprints")


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else what platform reports."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    return platform.processor() or platform.machine() or "unknown CPU"


def physical_cores() -> int | None:
    """Physical cores: the default thread count (hyper-threads share execution units)."""
    import psutil

    n = psutil.cpu_count(logical=False)
    return n or os.cpu_count()


def package_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _gpu_from_nvml() -> tuple[str, int, float, str] | None:
    with nvml() as nv:
        if nv is None:
            return None
        try:
            count = nv.nvmlDeviceGetCount()
            if not count:
                return None
            h = nv.nvmlDeviceGetHandleByIndex(0)
            name = decoded(nv.nvmlDeviceGetName(h))
            driver = decoded(nv.nvmlSystemGetDriverVersion())
            total = nv.nvmlDeviceGetMemoryInfo(h).total
            return str(name), int(count), float(total) / MIB, str(driver)
        except Exception:
            return None


def _gpu_from_smi() -> tuple[str, int, float, str] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]
    if not rows or len(rows[0]) < 3:
        return None
    name, mem, driver = rows[0][:3]
    try:
        mem_mb = float(mem)
    except ValueError:
        mem_mb = float("nan")
    return name, len(rows), mem_mb, driver


def environment_class(cpu: str, logical: int | None, gpu: str | None) -> str:
    """Stable hardware label, e.g. ``'AMD EPYC x2 | no GPU'``."""
    cores = f" x{logical}" if logical else ""
    return f"{cpu}{cores} | {gpu or 'no GPU'}"


def collect_environment(*, use_torch_cuda: bool = False, threads: int | None = None) -> Environment:
    """Describe this machine. ``use_torch_cuda`` asks torch (only in a CUDA child)."""
    import psutil

    gpu = _gpu_from_nvml() or _gpu_from_smi()
    gpu_name, gpu_count, gpu_mem, driver = gpu if gpu else (None, 0, None, None)
    cuda_version = None
    torch_version = package_version("torch")
    if "torch" in sys.modules or use_torch_cuda:
        import torch

        torch_version = torch.__version__
        cuda_version = torch.version.cuda
        if use_torch_cuda and torch.cuda.is_available() and gpu is None:
            # Only without NVML / nvidia-smi: the parent (which never imports torch for this)
            # must compute the same environment_class as the children.
            props = torch.cuda.get_device_properties(0)
            gpu_name = props.name
            gpu_count = torch.cuda.device_count()
            gpu_mem = props.total_memory / MIB
    import mcval

    logical = psutil.cpu_count(logical=True)
    cpu = cpu_model()
    return Environment(
        cpu_model=cpu,
        cpu_physical_cores=physical_cores(),
        cpu_logical_cores=logical,
        ram_total_mb=psutil.virtual_memory().total / MIB,
        gpu_name=gpu_name,
        gpu_count=gpu_count,
        gpu_memory_mb=gpu_mem,
        gpu_driver=driver,
        cuda_version=cuda_version,
        torch_version=torch_version,
        transformers_version=package_version("transformers"),
        mcval_version=getattr(mcval, "__version__", package_version("mcval") or "unknown"),
        python_version=platform.python_version(),
        os=f"{platform.system()} {platform.release()} ({platform.machine()})",
        threads=threads,
        environment_class=environment_class(cpu, logical, gpu_name),
    )
