"""``mcval schema [-o FILE]``: the JSON Schema of a submission file, for editors and tools."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mcval.errors import ExitCode


def schema(*, output: Path | None = None) -> ExitCode:
    """Write the schema to ``output``, or to stdout when it is None."""
    from mcval.submission.schema import Submission

    document = Submission.model_json_schema(by_alias=True, mode="validation")
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://mcval.invalid/schema/submission-1.json",
        **document,
    }
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is not None:
        output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return ExitCode.OK
