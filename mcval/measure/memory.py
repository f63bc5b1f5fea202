"""Peak memory: host RSS via the kernel high-water mark, GPU via the CUDA caching allocator.

Two windows (docs/measurement.md): loading and compressing, then inference of the prepared
model. ``ram_mb``/``vram_mb`` are the inference window's peak over the RSS before the load;
the load window's peak is kept apart, so a recipe applied at load (an fp32 checkpoint cast
to bf16) does not charge its fp32 copy to the compressed row.

Why the kernel mark: reading RSS once after the fact (what teams did) misses the load-time
peak, and a polling thread both misses short spikes and competes with the timed calls for
the cores. Linux keeps ``VmHWM`` (peak RSS) in ``/proc/self/status`` and resets it to the
current RSS when "5" is written to ``/proc/self/clear_refs``; that costs nothing while the
model runs. Where it is unavailable (not Linux, or a kernel refusing the reset) a psutil
polling thread is the fallback, and the runner pauses it while timing.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

MIB = 2**20
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def read_status(pid: int | None = None) -> dict[str, int]:
    """``Vm*`` and ``Rss*`` fields of ``/proc/<pid>/status`` in bytes (empty if unreadable)."""
    path = _STATUS if pid is None else Path(f"/proc/{pid}/status")
    try:
        text = path.read_text()
    except OSError:
        return {}
    pattern = r"^((?:Vm|Rss)\w+):\s+(\d+) kB"
    return {m[1]: int(m[2]) * 1024 for m in re.finditer(pattern, text, re.M)}


def current_rss() -> int:
    """Resident set size of this process in bytes."""
    status = read_status()
    if "VmRSS" in status:
        return status["VmRSS"]
    import psutil

    return int(psutil.Process().memory_info().rss)


_peak_before_resets = 0
"""Highest peak-RSS mark this process had before resetting it (see lifetime_peak_rss)."""


def lifetime_peak_rss() -> int | None:
    """Peak RSS of this process over its whole life, resets of the kernel mark included
    (the mark is reset to split load from inference; the process's peak is still kept)."""
    hwm = read_status().get("VmHWM")
    if hwm is None:
        return _peak_before_resets or None
    return max(hwm, _peak_before_resets)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; True if it worked."""
    global _peak_before_resets
    _peak_before_resets = max(_peak_before_resets, read_status().get("VmHWM", 0))
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    status = read_status()
    # After a reset VmHWM equals VmRSS (give a page or two of slack for concurrent growth).
    return "VmHWM" in status and status["VmHWM"] - status["VmRSS"] <= 64 * 1024


def library_rss() -> int:
    """Resident bytes of this process's shared-library mappings (``.so`` code and
    read-only data), from ``/proc/self/smaps``; 0 where unreadable."""
    total_kb = 0
    in_library = False
    try:
        with open("/proc/self/smaps") as smaps:
            for line in smaps:
                head = line.split(" ", 1)[0]
                if "-" in head and ":" not in head:  # a mapping's header line
                    fields = line.split()
                    in_library = len(fields) >= 6 and ".so" in fields[5]
                elif in_library and line.startswith("Rss:"):
                    total_kb += int(line.split()[1])
    except OSError:
        return 0
    return total_kb * 1024


def release_free_memory() -> None:
    """Hand memory freed by the load (e.g. the fp32 copy a cast replaced) back to the
    system, so the inference window's RSS counts what the prepared model holds: glibc
    keeps freed heap memory mapped until ``malloc_trim``."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)


class RamStats(BaseModel):
    """Host memory of the measuring process; ``ram_mb`` is the table's RAM figure."""

    ram_mb: float = Field(
        description="peak RSS while the prepared model runs inference minus RSS before load "
        "(shared-library code paged in meanwhile left out: library_code_mb)"
    )
    load_peak_mb: float | None = Field(
        default=None,
        description="peak RSS while loading and compressing minus RSS before load (a recipe "
        "applied at load shows its fp32 copy here, not in ram_mb)",
    )
    peak_rss_mb: float = Field(description="absolute peak RSS of the process during inference")
    baseline_rss_mb: float = Field(description="RSS just before the model load")
    final_rss_mb: float = Field(description="RSS when the peak was read")
    library_code_mb: float | None = Field(
        default=None,
        description="shared-library pages (torch's code and read-only data) paged in since "
        "the baseline; left out of ram_mb and load_peak_mb: they are the imports', the same "
        "for every row, and a forked child pages in again what its server had resident",
    )
    method: Literal["vmhwm", "polling"]
    poll_interval_s: float | None = None


class PeakRSS:
    """Peak-RSS tracker over a stretch of work: the load window, then the inference one.

    ``start()`` records the baseline and resets the kernel mark (or starts the polling
    fallback); ``new_window()`` closes the load window (its peak is kept as ``load_peak``)
    and starts the inference one; ``stats()`` reads the peak. ``pause()``/``resume()`` stop
    the fallback thread while timing so it never competes for the cores; with the kernel
    mark they do nothing.
    """

    def __init__(self, poll_interval_s: float = 0.005, force_polling: bool = False) -> None:
        self.poll_interval_s = poll_interval_s
        self.force_polling = force_polling
        self.method: Literal["vmhwm", "polling"] = "vmhwm"
        self.baseline = 0
        self.baseline_library = 0
        self.load_peak: int | None = None
        self.load_library = 0
        self._peak = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._running = threading.Event()

    def start(self) -> None:
        import gc

        gc.collect()
        self.baseline = current_rss()
        self.baseline_library = library_rss()
        self._peak = self.baseline
        if not self.force_polling and reset_peak_rss():
            self.method = "vmhwm"
            return
        self.method = "polling"
        self._running.set()
        self._thread = threading.Thread(target=self._poll, name="mcval-rss-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self._running.wait()
            if self._stop.is_set():
                break
            self._peak = max(self._peak, int(proc.memory_info().rss))
            self._stop.wait(self.poll_interval_s)

    def pause(self) -> None:
        """Stop sampling (fallback only) — call before timed calls."""
        if self._thread is not None:
            self._peak = max(self._peak, current_rss())
            self._running.clear()

    def resume(self) -> None:
        if self._thread is not None:
            self._running.set()

    def peak(self) -> int:
        """Peak RSS in bytes since ``start()``."""
        now = current_rss()
        if self.method == "vmhwm":
            hwm = read_status().get("VmHWM", now)
            return max(hwm, now)
        return max(self._peak, now)

    def new_window(self) -> int:
        """End the load window and start the inference one (same baseline); returns the
        load window's peak RSS in bytes."""
        load_peak = self.peak()
        self.load_peak = load_peak
        self.load_library = library_rss() - self.baseline_library
        release_free_memory()
        if self.method == "vmhwm" and reset_peak_rss():
            return load_peak
        self._peak = current_rss()
        return load_peak

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._running.set()
            self._thread.join(timeout=1.0)
            self._thread = None

    def stats(self) -> RamStats:
        """Read the peak now (call right after the last inference)."""
        peak = self.peak()
        final = current_rss()
        library = library_rss() - self.baseline_library
        load_peak = self.load_peak - self.baseline - self.load_library if self.load_peak else None
        return RamStats(
            ram_mb=(peak - self.baseline - library) / MIB,
            load_peak_mb=load_peak / MIB if load_peak is not None else None,
            library_code_mb=library / MIB,
            peak_rss_mb=peak / MIB,
            baseline_rss_mb=self.baseline / MIB,
            final_rss_mb=final / MIB,
            method=self.method,
            poll_interval_s=self.poll_interval_s if self.method == "polling" else None,
        )


class VramStats(BaseModel):
    """GPU memory; ``vram_mb`` (the table's figure) is the allocator's peak allocation."""

    vram_mb: float = Field(
        description="torch.cuda.max_memory_allocated while the prepared model runs inference"
    )
    load_peak_mb: float | None = Field(
        default=None, description="torch.cuda.max_memory_allocated while loading and compressing"
    )
    max_reserved_mb: float = Field(description="torch.cuda.max_memory_reserved (cache incl.)")
    device_used_mb: float | None = Field(
        description="device-level used memory (all processes, CUDA context included)"
    )
    device_total_mb: float | None = None
    device_source: Literal["nvml", "mem_get_info"] | None = None
    device: str


def reset_vram(device: str) -> None:
    """Start a fresh peak window on ``device`` (before the model load)."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)


@contextlib.contextmanager
def nvml() -> Iterator[Any | None]:
    """``pynvml``, initialised for the block and shut down after it; None where NVML (the
    ``nvidia-ml-py`` package or a driver) is missing. The one place NVML is opened."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
    except Exception:
        yield None
        return
    try:
        yield pynvml
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def decoded(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _nvml_used(device: str) -> tuple[float, float] | None:
    """(used, total) bytes from NVML for the GPU behind ``device`` (matched by UUID)."""
    import torch

    with nvml() as nv:
        if nv is None:
            return None
        try:
            uuid = str(torch.cuda.get_device_properties(device).uuid).removeprefix("GPU-")
            handle = nv.nvmlDeviceGetHandleByIndex(torch.device(device).index or 0)
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                if decoded(nv.nvmlDeviceGetUUID(h)).removeprefix("GPU-") == uuid:
                    handle = h
                    break
            info = nv.nvmlDeviceGetMemoryInfo(handle)
            return float(info.used), float(info.total)
        except Exception:
            return None


def end_vram_load_window(device: str) -> float:
    """Peak allocation of the load window in bytes; starts the inference window."""
    import torch

    torch.cuda.synchronize(device)
    load_peak = float(torch.cuda.max_memory_allocated(device))
    torch.cuda.empty_cache()
    reset_vram(device)
    return load_peak


def read_vram(device: str, load_peak_bytes: float | None = None) -> VramStats:
    """Peak figures since ``reset_vram`` plus the device-level view."""
    import torch

    torch.cuda.synchronize(device)
    allocated = torch.cuda.max_memory_allocated(device)
    reserved = torch.cuda.max_memory_reserved(device)
    nv = _nvml_used(device)
    source: Literal["nvml", "mem_get_info"] | None
    if nv is not None:
        used, total = nv
        source = "nvml"
    else:
        free, total_i = torch.cuda.mem_get_info(device)
        used, total = float(total_i - free), float(total_i)
        source = "mem_get_info"
    return VramStats(
        vram_mb=allocated / MIB,
        load_peak_mb=load_peak_bytes / MIB if load_peak_bytes is not None else None,
        max_reserved_mb=reserved / MIB,
        device_used_mb=used / MIB,
        device_total_mb=total / MIB,
        device_source=source,
        device=device,
    )
