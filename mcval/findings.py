"""A finding: one rule that fired about a submission, with its evidence. Torch-free.

The claim checks (``mcval.models.claims``), the verdict's sanity rules and the
measurement's warnings all report through this one class, so the verdict, the results
store and the comment handle every finding the same way.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Severity = Literal["fail", "warning"]
"""``fail`` fails the submission; ``warning`` is shown beside the verdict and decides nothing."""


class Finding(BaseModel):
    """A sanity rule, claim check or measurement warning that fired, with its evidence."""

    code: str
    severity: Severity = "warning"
    message: str
    line: int | None = Field(default=None, description="line of the submission it concerns")
    evidence: dict[str, float | int | str] = Field(
        default_factory=dict, description="the numbers the rule saw, e.g. int8_weight_elements"
    )
