"""VRAM of runtimes torch's allocator does not see (ONNX Runtime's CUDA provider), via NVML.

``torch.cuda.max_memory_allocated`` counts torch's own allocations only; ONNX Runtime keeps
its own CUDA arena. NVML reports the GPU memory each process uses, so the figure is this
process's used memory after the timed calls (ORT's arena only grows, so that is its peak
over the inference window) minus what it used before the model was loaded (the CUDA
context). The definition is written in docs/measurement.md.
"""

from __future__ import annotations

import os

from mcval.measure.memory import MIB, VramStats, nvml


def process_vram_bytes(device: str) -> int | None:
    """This process's used GPU memory on ``device`` per NVML; None without NVML/GPU."""
    with nvml() as nv:
        if nv is None:
            return None
        try:
            index = int(device.split(":")[1]) if ":" in device else 0
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            for proc in nv.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                    return int(proc.usedGpuMemory)
            return 0
        except Exception:
            return None


def nvml_vram(device: str, baseline: int | None) -> VramStats | None:
    """``VramStats`` of the inference window from NVML (``vram_mb`` = used − baseline)."""
    used = process_vram_bytes(device)
    if used is None:
        return None
    return VramStats(
        vram_mb=(used - (baseline or 0)) / MIB,
        max_reserved_mb=used / MIB,
        device_used_mb=used / MIB,
        device_source="nvml",
        device=device,
    )
