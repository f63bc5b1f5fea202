"""Environment record: facts read from the OS, GPU via nvidia-smi/NVML, no torch needed."""

from __future__ import annotations

import os
import platform
import stat
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from mcval.measure import environment as env_mod
from mcval.measure.environment import collect_environment, environment_class


def test_cpu_facts_and_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env_mod, "_gpu_from_nvml", lambda: None)
    monkeypatch.setattr(env_mod, "_gpu_from_smi", lambda: None)
    e = collect_environment(threads=2)
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model_line = next(x for x in cpuinfo.splitlines() if x.startswith("model name"))
    assert e.cpu_model == " ".join(model_line.split(":", 1)[1].split())
    assert e.cpu_logical_cores == os.cpu_count()
    assert e.cpu_physical_cores is not None and e.cpu_physical_cores <= e.cpu_logical_cores
    assert e.ram_total_mb is not None and e.ram_total_mb > 100
    assert e.transformers_version == metadata.version("transformers")
    assert e.torch_version is not None and e.torch_version.startswith(metadata.version("torch"))
    assert e.python_version == platform.python_version()
    assert e.threads == 2
    assert e.gpu_name is None and e.gpu_count == 0
    assert e.environment_class == f"{e.cpu_model} x{e.cpu_logical_cores} | no GPU"


def test_collecting_does_not_import_torch() -> None:
    code = (
        "import sys; from mcval.measure.environment import collect_environment; "
        "collect_environment(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gpu_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'NVIDIA H200, 143771, 565.57.01'\necho 'NVIDIA H200, 143771, 565.57.01'\n"
    )
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(env_mod, "_gpu_from_nvml", lambda: None)
    e = collect_environment()
    assert (e.gpu_name, e.gpu_count, e.gpu_memory_mb, e.gpu_driver) == (
        "NVIDIA H200",
        2,
        143771.0,
        "565.57.01",
    )
    assert e.environment_class.endswith(" | NVIDIA H200")


def test_environment_class_format() -> None:
    assert environment_class("AMD EPYC", 2, None) == "AMD EPYC x2 | no GPU"
    assert environment_class("Intel Xeon", None, "Tesla T4") == "Intel Xeon | Tesla T4"
