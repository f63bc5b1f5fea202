"""Does the model match what its method name claims? Claim checks against the weights.

A row named "INT8" whose weights are float32, or "50 % pruned" with no zeros, would put
a false method in the course table beside honest measurements. ``check_claims`` compares
the inspection of the weights (``mcval.models.inspection``) with ``method.name``, the
recipe and the baseline row's inspection, and returns warnings that carry their
evidence. Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from mcval.findings import Finding
from mcval.models.inspection import ModelInspection
from mcval.models.recipe_params import StepLike

_B = r"(?<![a-z0-9])"
_E = r"(?![a-z0-9])"
INT8_CLAIM = re.compile(_B + r"(?:q?u?int[-_ ]?8|8[-_ ]?bits?|w8a8|w8a16|a8w8|llm\.int8)" + _E)
LOWBIT_CLAIM = re.compile(
    _B + r"(?:int[-_ ]?[234]|[234][-_ ]?bits?|nf4|fp4|gptq|awq|w4a16|w4a8|w3a16)" + _E
)
FP16_CLAIM = re.compile(_B + r"(?:fp[-_ ]?16|float[-_ ]?16|half(?:[-_ ]precision)?)" + _E)
BF16_CLAIM = re.compile(_B + r"(?:bf[-_ ]?16|bfloat[-_ ]?16)" + _E)
PRUNE_CLAIM = re.compile(r"prun|sparse|sparsity")
PERCENT = re.compile(r"(\d{1,3}(?:[.,]\d+)?)\s*%")
DISTIL_CLAIM = re.compile(r"distil")
CLUSTER_CLAIM = re.compile(r"cluster|k[-_ ]?means|weight[-_ ]?shar")
CLUSTER_COUNT = re.compile(r"(\d+)\s*(?:clusters|centroids|values)")
DEFAULT_CLUSTER_LIMIT = 256
"""Without a stated count, "clustered" means at most an 8-bit codebook per layer."""
PRUNED_ZERO = 0.01
"""Below this fraction of zeros a model is not pruned in any useful sense."""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _dtype_summary(inspection: ModelInspection) -> str:
    total = sum(inspection.dtype_elements.values()) or 1
    parts = sorted(inspection.dtype_elements.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k.removeprefix('torch.')} {_pct(v / total)}" for k, v in parts[:4])


def _recipe_params(recipe: Sequence[StepLike], name: str) -> dict[str, Any] | None:
    for step in recipe:
        if step.name == name:
            return dict(step.params or {})
    return None


def _pruned_fraction(inspection: ModelInspection, baseline: ModelInspection | None) -> float:
    """Zeros, plus Linear weights physically removed relative to the baseline (head pruning)."""
    if baseline is not None and 0 < inspection.linear_elements < baseline.linear_elements:
        removed = 1 - inspection.linear_elements / baseline.linear_elements
        return removed + (1 - removed) * inspection.sparsity
    return inspection.sparsity


def check_claims(
    method_name: str,
    recipe: Sequence[StepLike],
    inspection: ModelInspection,
    baseline_inspection: ModelInspection | None = None,
    *,
    gguf: bool = False,
) -> list[Finding]:
    """Warnings for every claim of ``method_name``/``recipe`` that the weights contradict.

    ``baseline_inspection``: the baseline row's weights, for claims about what changed
    (pruned heads, a distilled student). Whether the row grew beyond its baseline is the
    verdict's sanity rule, not a claim. ``gguf``: the model came from a GGUF file, which
    transformers dequantizes, so its in-memory dtype says nothing about the file's
    quantization (those checks are skipped).
    """
    text = method_name.lower()
    findings: list[Finding] = []
    quantized = inspection.quantized_modules > 0 or inspection.int8_weight_elements > 0
    evidence_q: dict[str, float | int | str] = {
        "quantized_modules": inspection.quantized_modules,
        "int8_weight_elements": inspection.int8_weight_elements,
        "dtypes": _dtype_summary(inspection),
    }
    quantized_claims = (
        (
            INT8_CLAIM,
            "claim-int8-no-int8-weights",
            "int8, but no weight is stored as int8: 0 quantized modules, 0 int8 elements",
        ),
        (
            LOWBIT_CLAIM,
            "claim-lowbit-no-quantized-weights",
            "low-bit quantization, but the model has no quantized modules or packed integer "
            "weights",
        ),
    )
    for pattern, code, claim_but in quantized_claims:
        if gguf or quantized or not pattern.search(text):
            continue
        findings.append(
            Finding(
                code=code,
                message=f"the method {method_name!r} claims {claim_but}; weights are "
                f"{_dtype_summary(inspection)}",
                evidence=evidence_q,
            )
        )
    half_claims = (("torch.float16", FP16_CLAIM, "fp16"), ("torch.bfloat16", BF16_CLAIM, "bf16"))
    for dtype, pattern, label in half_claims:
        if gguf or quantized or not pattern.search(text):
            continue
        share = inspection.float_fraction(dtype)
        if share < 0.5:
            fp32 = inspection.float_fraction("torch.float32")
            findings.append(
                Finding(
                    code=f"claim-{label}-weights-not-{label}",
                    message=f"the method {method_name!r} claims {label}, but only {_pct(share)} "
                    f"of floating-point weights are {dtype.removeprefix('torch.')} "
                    f"({_pct(fp32)} are float32)",
                    evidence={f"{label}_share": share, "float32_share": fp32},
                )
            )
    if inspection.source != "pytorch":
        # A converted graph's inspection holds its stored dtypes only: the dtype claims above
        # are checked on it; pruning, distillation and clustering are not (yet).
        return findings
    prune_params = _recipe_params(recipe, "prune")
    if PRUNE_CLAIM.search(text) or prune_params is not None:
        pruned = _pruned_fraction(inspection, baseline_inspection)
        stated = PERCENT.search(text)
        expected = None
        if prune_params is not None and isinstance(prune_params.get("amount"), (int, float)):
            expected = float(prune_params["amount"])
        elif stated:
            expected = float(stated.group(1).replace(",", ".")) / 100
        evidence_p: dict[str, float | int | str] = {
            "linear_zeros": inspection.linear_zeros,
            "linear_elements": inspection.linear_elements,
            "pruned_fraction": round(pruned, 6),
        }
        if expected is not None:
            evidence_p["claimed_fraction"] = expected
        if pruned < PRUNED_ZERO:
            findings.append(
                Finding(
                    code="claim-pruned-no-sparsity",
                    message=f"the method {method_name!r} claims pruning"
                    + (f" ({_pct(expected)})" if expected is not None else "")
                    + f", but only {_pct(pruned)} of Linear weights are zero "
                    f"({inspection.linear_zeros} of {inspection.linear_elements})",
                    evidence=evidence_p,
                )
            )
        elif expected is not None and pruned < expected / 2:
            findings.append(
                Finding(
                    code="claim-pruned-less-than-claimed",
                    message=f"the method {method_name!r} claims {_pct(expected)} pruning, but "
                    f"only {_pct(pruned)} of Linear weights are zero",
                    evidence=evidence_p,
                )
            )
    if (
        DISTIL_CLAIM.search(text)
        and baseline_inspection is not None
        and inspection.architecture_fingerprint == baseline_inspection.architecture_fingerprint
        and inspection.weights_fingerprint == baseline_inspection.weights_fingerprint
    ):
        findings.append(
            Finding(
                code="distilled-identical-to-teacher",
                message=f"the method {method_name!r} claims distillation, but the student has the "
                f"teacher's architecture and identical weights ({inspection.parameters} "
                f"elements, fingerprint {inspection.weights_fingerprint[:12]})",
                evidence={
                    "architecture_fingerprint": inspection.architecture_fingerprint,
                    "weights_fingerprint": inspection.weights_fingerprint,
                },
            )
        )
    cluster_params = _recipe_params(recipe, "cluster")
    if (CLUSTER_CLAIM.search(text) or cluster_params is not None) and (
        inspection.distinct_values_median is not None
    ):
        stated_count = CLUSTER_COUNT.search(text)
        limit = DEFAULT_CLUSTER_LIMIT
        if cluster_params is not None and isinstance(cluster_params.get("clusters"), int):
            limit = cluster_params["clusters"]
        elif stated_count:
            limit = int(stated_count.group(1))
        median = inspection.distinct_values_median
        if median > limit:
            findings.append(
                Finding(
                    code="claim-clustered-many-distinct-values",
                    message=f"the method {method_name!r} claims weight clustering (at most "
                    f"{limit} values per layer), but Linear weights have a median of "
                    f"{median:g} distinct values per layer (max "
                    f"{inspection.distinct_values_max})",
                    evidence={
                        "clusters": limit,
                        "distinct_values_median": median,
                        "distinct_values_max": inspection.distinct_values_max or 0,
                    },
                )
            )
    return findings
