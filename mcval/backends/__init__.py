"""Runtimes beside PyTorch: one module per runtime behind one small interface.

Each runtime module (``base.Backend``) declares ``RUNTIME`` and ``OWN_THREAD_POOL`` and has
``convert(ConvertRequest) -> RuntimeModel``: it converts the loaded PyTorch model after the
PyTorch recipe steps (or vets and opens a shipped artefact), applies the runtime's own
steps, sets the thread count, and returns a ``RuntimeModel``: the ``config``, a forward
returning logits (what the task handlers call, for timing and for quality alike), the
weight size counted from the converted graph, and notes. The measuring child
(``mcval.measure.device_job``) calls ``to_runtime``, ``own_thread_pool`` and
``load_artefact``; the supported tasks and steps are the torch-free table of
``mcval.runtimes``.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from mcval.backends.base import Backend, ConvertRequest, RuntimeModel
from mcval.runtimes import RUNTIME_LABELS

_MODULES: dict[str, str] = {
    "torchscript": "mcval.backends.torchscript_backend",
    "onnxruntime": "mcval.backends.onnxruntime_backend",
    "openvino": "mcval.backends.openvino_backend",
    "llama.cpp": "mcval.backends.llamacpp_backend",
}

__all__ = [
    "ConvertRequest",
    "RuntimeModel",
    "load_artefact",
    "own_thread_pool",
    "split_recipe",
    "to_runtime",
]


def _backend(runtime: str) -> Backend:
    return cast(Backend, importlib.import_module(_MODULES[runtime]))


def own_thread_pool(runtime: str) -> bool:
    """Whether ``runtime`` computes on a thread pool of its own, not torch's (its backend's
    ``OWN_THREAD_POOL``); PyTorch itself has no backend module and runs on torch's."""
    return runtime != "pytorch" and _backend(runtime).OWN_THREAD_POOL


def split_recipe(steps: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """``(pytorch steps, runtime steps)``: the check keeps every pytorch step first."""
    from mcval.models.recipe_params import STEPS

    runtime = [s for s in steps if s.name in STEPS and STEPS[s.name].runtime != "pytorch"]
    return [s for s in steps if s not in runtime], runtime


def _accepted(model: Any) -> set[str] | None:
    from mcval.tasks.common import _accepted_inputs

    return _accepted_inputs(model) if model is not None else None


def to_runtime(
    sub: Any,
    model: Any,
    config: Any,
    preprocessor: Any,
    repo_root: Path,
    device: str,
    threads: int,
    steps: Sequence[Any],
    *,
    artefact: Path | None = None,
    model_dir: Path | None = None,
    max_bytes: int | None = None,
    hub_snapshot: bool = False,
) -> RuntimeModel:
    """Convert ``model`` (or open ``artefact``) for ``sub.model.runtime`` and apply ``steps``.

    The converted files live in a temporary directory that lives as long as the returned
    model (ONNX Runtime and OpenVINO read their weights from it).
    """
    from mcval.backends.calibration import calibration_feeds

    runtime = sub.model.runtime
    workdir = tempfile.TemporaryDirectory(prefix=f"mcval-{runtime}-")
    request = ConvertRequest(
        task=sub.model.task,
        model=model,
        config=config,
        accepted=_accepted(model),
        workdir=Path(workdir.name),
        threads=threads,
        device=device,
        steps=list(steps),
        calibration=lambda n: calibration_feeds(
            sub.model.task, preprocessor, config, sub.evaluation, repo_root, n
        ),
        artefact=artefact,
        model_dir=model_dir,
        max_bytes=max_bytes,
        hub_snapshot=hub_snapshot,
        submission=sub,
    )
    converted = _backend(runtime).convert(request)
    converted.workdir = workdir  # type: ignore[attr-defined]
    if sub.model.task == "causal-lm" and converted.generation_config is None:
        # Only generation reads it (a timm config has none); llama.cpp sets the GGUF's own.
        converted.generation_config = generation_settings(model, config, model_dir)
    label = RUNTIME_LABELS[runtime]
    how = f"{label}: loaded {artefact.name}" if artefact else f"{label}: converted"
    converted.notes.insert(0, how)
    return converted


def generation_settings(model: Any, config: Any, model_dir: Path | None) -> Any:
    """The ``GenerationConfig`` PyTorch's ``generate`` would use (its end-of-sequence ids):
    the loaded model's, else a shipped directory's ``generation_config.json``, else the
    model config's."""
    from transformers import GenerationConfig

    found = getattr(model, "generation_config", None)
    if found is not None:
        return found
    if model_dir is not None and (model_dir / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(str(model_dir))
    return GenerationConfig.from_model_config(config)


@dataclass
class Shipped:
    """A shipped ``model.file`` ready for its runtime's vetting and conversion."""

    artefact: Path
    directory: Path
    config: Any
    hub_snapshot: bool = False
    warnings: list[str] = field(default_factory=list)

    def request_fields(self, max_bytes: int) -> dict[str, Any]:
        """What ``to_runtime`` takes of it (``LoadedModel.artefact``)."""
        return {
            "artefact": self.artefact,
            "model_dir": self.directory,
            "max_bytes": max_bytes,
            "hub_snapshot": self.hub_snapshot,
        }


def load_artefact(spec: Any, repo_root: Path, policy: Any, hub: Any = None) -> Shipped:
    """The shipped ``model.file`` (path, model directory, config): the
    directory must be in the repository (or a hub repo, fetched by
    ``mcval.models.sources.resolve_hub_artefact`` within the size limit), hold config.json
    (for labels and limits) and no custom code; the artefact itself is vetted by its
    runtime before it is opened."""
    from mcval.models.errors import ModelNotFoundError
    from mcval.models.safety import (
        check_directory_links,
        check_no_custom_code,
        confine_path,
    )
    from mcval.models.sources import HUB_ID_RE, is_local_id, resolve_hub_artefact

    if not is_local_id(spec.id, repo_root) and HUB_ID_RE.match(spec.id):
        from transformers import AutoConfig

        resolved = resolve_hub_artefact(
            spec.id,
            spec.revision,
            spec.file,
            max_download_bytes=int(float(policy.measure.max_download_gb) * 1e9),
            hub=hub,
        )
        config = AutoConfig.from_pretrained(str(resolved.directory), trust_remote_code=False)
        return Shipped(resolved.artefact, resolved.directory, config, True, resolved.warnings)
    directory = confine_path(spec.id, repo_root)
    if not directory.is_dir():
        raise ModelNotFoundError(f"{spec.id!r} is not a directory in the repository")
    check_directory_links(directory, repo_root, ("model", "id"))
    check_no_custom_code(directory)
    inside = (directory.relative_to(repo_root.resolve()) / spec.file).as_posix()
    artefact = confine_path(inside, repo_root, ("model", "file"))
    if not artefact.resolve().is_relative_to(directory.resolve()) or not artefact.is_file():
        raise ModelNotFoundError(
            f"model.file {spec.file!r} is not a file in {spec.id!r}", ("model", "file")
        )
    if artefact.suffix.lower() in (".pt", ".pth", ".ts", ".zip") or _is_zip(artefact):
        from mcval.models.safety import UnsafeModelError

        raise UnsafeModelError(
            "model.file is a zip/TorchScript archive (a pickle-backed program), never loaded; "
            "ship an .onnx or OpenVINO IR, or let the runner convert the checkpoint",
            ("model", "file"),
        )
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(directory), trust_remote_code=False)
    return Shipped(artefact, directory, config)


def _is_zip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"PK\x03\x04"
