"""Model loading, safety rules, compression recipes and claim checks.

Nothing here imports torch at import time (``mcval check`` imports
``mcval.models.recipe_params``, which runs this file): torch and transformers are
imported inside the functions that need them.

Runner's order of calls (see each function's docstring):
``plan_recipe`` → ``load_model`` → ``apply_recipe`` → ``inspect_model``; ``check_claims``
runs once per submission, in ``mcval validate`` (against the baseline's inspection).
"""

from __future__ import annotations

from mcval.findings import Finding
from mcval.models.claims import check_claims
from mcval.models.errors import (
    DownloadTooLargeError,
    HubUnavailableError,
    LoadError,
    ModelError,
    ModelNotFoundError,
    NotApplicableError,
    QuantizedGGUFError,
    RecipeError,
)
from mcval.models.inspection import LayerStats, ModelInspection, inspect_model
from mcval.models.loading import LoadedModel, load_model
from mcval.models.recipe_params import STEPS, recipe_errors, validate_recipe
from mcval.models.recipes import RecipePlan, RecipeResult, apply_recipe, plan_recipe
from mcval.models.safety import (
    AbsolutePathError,
    CustomCodeError,
    InvalidGGUFError,
    InvalidSafetensorsError,
    NoSafetensorsError,
    ParentPathError,
    PickleWeightsError,
    SymlinkOutsideRepositoryError,
    UnsafeModelError,
)
from mcval.models.sources import HubListing, HuggingFaceHub, ResolvedSource, resolve_source

__all__ = [
    "STEPS",
    "AbsolutePathError",
    "CustomCodeError",
    "DownloadTooLargeError",
    "Finding",
    "HubListing",
    "HubUnavailableError",
    "HuggingFaceHub",
    "InvalidGGUFError",
    "InvalidSafetensorsError",
    "LayerStats",
    "LoadError",
    "LoadedModel",
    "ModelError",
    "ModelInspection",
    "ModelNotFoundError",
    "NoSafetensorsError",
    "NotApplicableError",
    "ParentPathError",
    "PickleWeightsError",
    "QuantizedGGUFError",
    "RecipeError",
    "RecipePlan",
    "RecipeResult",
    "ResolvedSource",
    "SymlinkOutsideRepositoryError",
    "UnsafeModelError",
    "apply_recipe",
    "check_claims",
    "inspect_model",
    "load_model",
    "plan_recipe",
    "recipe_errors",
    "resolve_source",
    "validate_recipe",
]
