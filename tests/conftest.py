"""Test-wide settings: never touch the network, keep thread counts sane on 2 cores."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("GITHUB_ACTIONS", None)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``timm`` tests need torchvision, which imports only beside CUDA torch: they skip in
    .venv (CPU torch) and run in .venv-vision (Makefile), where ``MCVAL_REQUIRE_TIMM=1``
    turns a missing timm into a failure so CI never passes them by skipping."""
    if item.get_closest_marker("timm") is None:
        return
    try:
        import timm  # noqa: F401
    except Exception as exc:  # ImportError, or torchvision failing beside CPU torch
        reason = f"timm is not importable here ({type(exc).__name__}: {exc})"
        if os.environ.get("MCVAL_REQUIRE_TIMM") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
