"""Probe programs a measuring child runs instead of a submission, to check the machinery.

``mcval doctor`` runs them on the runner before a maintainer opens the gates, and the
supervisor's tests run the same ones: that a known allocation shows up exactly in the
child's peak memory (in both RAM windows), that a child sees only its allowed environment
and imports nothing from its working directory, and that each way a child can fail (a
hang, a crash, an exception, an exit, a garbled result, the memory cap) is caught and
named. Each is a child target (``mcval.measure.probes:<name>``), so it stays light: only
``misbehave``'s torch case imports torch.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from mcval.measure.memory import MIB, PeakRSS, RamStats, read_status

Progress = Callable[[str], None]
TARGET = "mcval.measure.probes"


def _touched(mb: int) -> bytearray:
    """``mb`` MiB with every page written, so all of it is resident."""
    block = bytearray(mb * MIB)
    block[::4096] = b"\x01" * (len(block) // 4096)
    return block


class AllocateRequest(BaseModel):
    """A model-like life: a load with a temporary copy, a kept model, inference scratch."""

    load_mb: int = Field(default=0, ge=0, description="temporary of the load, freed in it")
    model_mb: int = Field(default=0, ge=0, description="kept until the end")
    inference_mb: int = Field(default=0, ge=0, description="allocated after the load window")
    windows: bool = Field(default=False, description="close the load window before inference")
    hold: bool = Field(default=True, description="keep the inference block until stats read")
    polling: bool = Field(default=False, description="force the sampling fallback")


class AllocateReport(BaseModel):
    stats: RamStats
    rss_before_mb: float
    hwm_mb: float = Field(description="the kernel's peak mark read inside the child at the end")
    pid: int


def allocate(payload: dict[str, Any], progress: Progress) -> AllocateReport:
    """Allocate known amounts and read them back through the same tracker a measurement
    uses; the parent compares with its own figure (``wait4``)."""
    req = AllocateRequest.model_validate(payload)
    tracker = PeakRSS(force_polling=req.polling)
    tracker.start()
    before = read_status()["VmRSS"] / MIB
    progress("allocating")
    temporary = _touched(req.load_mb)
    model = _touched(req.model_mb)
    del temporary
    if req.windows:
        tracker.new_window()
    scratch = _touched(req.inference_mb)
    if req.polling:
        time.sleep(0.05)  # the fallback samples: give it a few samples
    if not req.hold:
        del scratch
    stats = tracker.stats()
    tracker.stop()
    hwm = read_status()["VmHWM"] / MIB
    del model
    return AllocateReport(stats=stats, rss_before_mb=before, hwm_mb=hwm, pid=os.getpid())


class DescribeReport(BaseModel):
    """Who the child is and what it can see."""

    pid: int
    parent_pid: int
    session: int
    cwd: str
    cwd_entries: list[str]
    env: dict[str, str | None] = Field(description="values of the names asked for")
    env_names: list[str] = Field(description="every variable name the child sees")
    importable: dict[str, bool] = Field(description="module name → found on the child's path")
    mcval_file: str
    preloaded: list[str] = Field(description="of torch/transformers, those already imported")


def describe(payload: dict[str, Any], progress: Progress) -> DescribeReport:
    import mcval

    cwd = os.getcwd()
    return DescribeReport(
        pid=os.getpid(),
        parent_pid=os.getppid(),
        session=os.getsid(0),
        cwd=cwd,
        cwd_entries=sorted(os.listdir(cwd)),
        env={name: os.environ.get(name) for name in payload.get("env", [])},
        env_names=sorted(os.environ),
        importable={
            name: importlib.util.find_spec(name) is not None
            for name in payload.get("importable", [])
        },
        mcval_file=str(mcval.__file__),
        preloaded=[name for name in ("torch", "transformers") if name in sys.modules],
    )


Misbehaviour = Literal["ok", "sleep", "raise", "hog", "torch-hog", "signal", "exit", "bad-result"]


class MisbehaveRequest(BaseModel):
    how: Misbehaviour
    seconds: float = 0.0
    mb: int = 0
    signal: int = 0
    code: int = Field(default=7, description='the exit status of the "exit" case')
    message: str = "probe failure"


class MisbehaveReport(BaseModel):
    allocated_bytes: int = 0
    env: dict[str, str | None] = Field(default_factory=dict)


def misbehave(payload: dict[str, Any], progress: Progress) -> MisbehaveReport:
    """Fail in the way asked for (or succeed, ``ok``), as a broken model would."""
    req = MisbehaveRequest.model_validate(payload)
    if req.how == "ok":
        progress("working")
        progress("almost done")
        names = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
        return MisbehaveReport(
            env={name: os.environ.get(name) for name in (*names, "TOKENIZERS_PARALLELISM")}
        )
    if req.how == "sleep":
        progress("sleeping")
        time.sleep(req.seconds)
    elif req.how == "raise":
        raise ValueError(req.message)
    elif req.how == "hog":
        progress("allocating")
        return MisbehaveReport(allocated_bytes=len(bytearray(req.mb * MIB)))
    elif req.how == "torch-hog":
        import torch

        return MisbehaveReport(allocated_bytes=int(torch.ones(req.mb * 2**18).numel()) * 4)
    elif req.how == "signal":
        block = _touched(req.mb)
        # Held for a few of the parent's polls, as a model's memory is before the OOM
        # killer strikes.
        time.sleep(req.seconds)
        os.kill(os.getpid(), req.signal)
        time.sleep(5)
        del block
    elif req.how == "exit":
        print(req.message, flush=True)
        os._exit(req.code)
    elif req.how == "bad-result":
        return {"allocated_bytes": "not a number"}  # type: ignore[return-value]
    return MisbehaveReport()


class GpuDevice(BaseModel):
    index: int
    name: str
    free_mb: float
    total_mb: float


class DevicesReport(BaseModel):
    """What torch sees in a child with CUDA visible, as a CUDA measurement would."""

    torch_version: str
    cuda_build: str | None = Field(description="CUDA version torch was built for")
    cuda_available: bool
    gpus: list[GpuDevice] = Field(default_factory=list)
    threads: int


def devices(payload: dict[str, Any], progress: Progress) -> DevicesReport:
    import torch

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            name = torch.cuda.get_device_name(index)
            gpus.append(GpuDevice(index=index, name=name, free_mb=free / MIB, total_mb=total / MIB))
    return DevicesReport(
        torch_version=str(torch.__version__),
        cuda_build=torch.version.cuda,
        cuda_available=torch.cuda.is_available(),
        gpus=gpus,
        threads=torch.get_num_threads(),
    )
