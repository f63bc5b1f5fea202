"""Errors of model loading and recipes.

A problem with what the team submitted (a path, a checkpoint, a recipe) is an
``InputError`` that also names the submission field it comes from, so the runner can
point at the YAML line: ``loaded.document.error(str(exc.message), exc.field)``. A step
that cannot run on this device is not an error of the team's: it is ``NotApplicableError``
and makes that device's figures "not applicable: <reason>". A hub the runner cannot reach
is not the team's either: ``HubUnavailableError`` is a ``RunnerError`` (exit 3, re-run).
"""

from __future__ import annotations

from mcval.errors import InputError, McvalError, RunnerError

FieldPath = tuple[str | int, ...]


class ModelError(InputError):
    """A problem with the submission's model: its id, path or checkpoint files."""

    def __init__(self, message: str, field: FieldPath = ("model", "id")) -> None:
        super().__init__(message)
        self.field: FieldPath = field


class ModelNotFoundError(ModelError):
    """The hub repo, revision, directory or GGUF file does not exist."""


class HubUnavailableError(RunnerError):
    """The hub could not be reached (network down, offline mode) and nothing is cached.

    The runner's problem, not the submission's (exit 3, re-run); a hub that answers that
    the repo does not exist raises ``ModelNotFoundError`` instead, which is the team's.
    """

    what = "the runner could not reach the Hugging Face Hub"

    def __init__(self, message: str, field: FieldPath = ("model", "id")) -> None:
        super().__init__(message)
        self.field: FieldPath = field


class DownloadTooLargeError(ModelError):
    """The checkpoint is larger than ``policy.measure.max_download_gb``."""


class QuantizedGGUFError(ModelError):
    """A GGUF whose tensors are quantized (Q4_1, Q8_0, ...): transformers would dequantize
    them on load, so the row would be timed and sized as a floating-point model. Refused
    on PyTorch; ``model.runtime: llama.cpp`` measures such a file as what it is."""


class LoadError(ModelError):
    """transformers failed to build the model from files that passed the safety checks."""


class RecipeError(InputError):
    """A recipe step that cannot be applied to this model (wrong order, nothing to act on)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.field: FieldPath = ("method", "recipe", index) if index is not None else ("method",)


class NotApplicableError(McvalError):
    """This device cannot run the model or step; its figures become "not applicable"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
