"""Reading files a stranger could have written: bounded, strict, never followed through links.

Why: the measuring job ran a stranger's model, and a pull request can change the check
workflow; whatever they leave behind (a results file, an exit code, a log, a comment's
Markdown) is parsed here like input from the internet before anything reads a field of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import JsonValue, TypeAdapter

from mcval.errors import InputError

MAX_MARKDOWN_BYTES = 256 * 1024
MAX_RESULT_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32

_JSON = TypeAdapter(dict[str, JsonValue])


def read_text(path: Path, limit: int, what: str) -> str:
    """A regular file's UTF-8 text of at most ``limit`` bytes; anything else is refused."""
    try:
        if path.is_symlink() or not path.is_file():
            raise InputError(f"{what} must be a regular file", path)
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror}", path) from None
    if len(raw) > limit:
        raise InputError(f"{what} is {len(raw)} bytes; at most {limit} are accepted", path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text", path) from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key in JSON object")
    return dict(pairs)


def _depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > limit:
            break
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def load_untrusted_json(raw: bytes) -> dict[str, Any]:
    """Strict JSON (no NaN, no duplicate keys, bounded size and depth) as a pydantic JSON value.

    The results file comes from a job that ran a stranger's model: parse it like input
    from the internet before anything reads a field of it.
    """
    if len(raw) > MAX_RESULT_BYTES:
        raise ValueError(f"{len(raw)} bytes; at most {MAX_RESULT_BYTES}")
    data = json.loads(
        raw.decode("utf-8"), parse_constant=_no_constants, object_pairs_hook=_no_duplicates
    )
    if _depth(data) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return _JSON.validate_python(data)
