"""Which devices this machine can measure on: ``--device cpu|cuda|all`` made concrete.

Shared by ``mcval measure``, ``mcval validate`` and the demo, so "all" means the same
everywhere. torch is imported only when a GPU driver is visible at all.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

from mcval.errors import InputError

DeviceChoice = Literal["cpu", "cuda", "all"]
DEVICE_CHOICES: tuple[DeviceChoice, ...] = ("cpu", "cuda", "all")


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


def require_devices(choice: str) -> list[str]:
    """``resolve_devices`` for a command: an impossible request is the caller's input error."""
    devices, problem = resolve_devices(choice)
    if problem:
        raise InputError(problem)
    return devices
