"""Strict, data-only YAML reading that remembers where every value came from.

Submissions come from strangers' pull requests, so the reader refuses everything YAML can
do beyond plain data: tags that construct objects, anchors and aliases (the "billion
laughs" bomb), duplicate keys (the second one silently wins in most loaders), absurd
nesting and oversized files. It returns plain Python data plus a map from each field's
path to its ``(line, column)``, so later checks can point students at the exact spot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mcval.errors import InputError

FieldPath = tuple[str | int, ...]
Position = tuple[int, int]

MAX_DEPTH = 20
"""Deeper nesting than any valid submission needs; stops stack-exhaustion bombs."""

MAX_INT = 2**63 - 1
"""No field needs a larger whole number; a bigger one (hex digits are not capped by
Python's 4,300-digit limit) would crash a float conversion or ``json.dumps`` later."""
_TOO_LARGE = f"number is too large (at most {MAX_INT:,}); write a realistic value"

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"  # the resolver's tag for a plain << key


@dataclass
class YamlDocument:
    """Plain data read from a YAML file, with the position of every value and key."""

    path: Path
    data: Any
    positions: dict[FieldPath, Position] = field(default_factory=dict)
    key_positions: dict[FieldPath, Position] = field(default_factory=dict)

    def position(self, path: FieldPath, *, key: bool = False) -> Position | None:
        """Position of ``path`` (or of its key), else of the nearest ancestor that has one."""
        table = self.key_positions if key else self.positions
        if path in table:
            return table[path]
        while path:
            path = path[:-1]
            if path in self.positions:
                return self.positions[path]
        return None

    def error(self, message: str, path: FieldPath = (), *, key: bool = False) -> InputError:
        """An ``InputError`` located at ``path`` in this document."""
        pos = self.position(path, key=key)
        line, col = pos if pos else (None, None)
        return InputError(message, self.path, line, col)


def _mark_position(node_or_event: Any) -> Position:
    mark = node_or_event.start_mark
    return mark.line + 1, mark.column + 1


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses anchors, aliases and deep nesting."""

    def __init__(self, stream: str, path: Path) -> None:
        super().__init__(stream)
        self._path = path
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        event = self.peek_event()
        if self.check_event(AliasEvent) or getattr(event, "anchor", None):
            line, col = _mark_position(event)
            raise InputError(
                "anchors and aliases (&name / *name) are not allowed in a submission; "
                "write each value out in full",
                self._path,
                line,
                col,
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            line, col = _mark_position(event)
            raise InputError(
                f"nesting deeper than {MAX_DEPTH} levels; a submission is a few flat sections",
                self._path,
                line,
                col,
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


class _Builder:
    """Turns a composed node tree into plain data, recording positions on the way."""

    def __init__(self, loader: _StrictLoader, doc: YamlDocument) -> None:
        self.loader = loader
        self.doc = doc

    def fail(self, message: str, node: Node) -> InputError:
        line, col = _mark_position(node)
        return InputError(message, self.doc.path, line, col)

    def require_tag(self, node: Node, allowed: set[str] | str) -> None:
        """Refuse explicit tags (``!!python/object``...): they would construct objects."""
        if node.tag == allowed or (isinstance(allowed, set) and node.tag in allowed):
            return
        raise self.fail(
            f"tag {_short_tag(node.tag)} is not allowed: a submission holds plain data "
            "(text, numbers, true/false, lists, mappings) only",
            node,
        )

    def build(self, node: Node, path: FieldPath) -> Any:
        self.doc.positions[path] = _mark_position(node)
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            self.require_tag(node, "tag:yaml.org,2002:seq")
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        if node.tag == _TIMESTAMP_TAG:
            # A date-like value (2025-05-01) stays the text the student wrote.
            return node.value
        self.require_tag(node, _PLAIN_TAGS)
        try:
            value = self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError):  # e.g. 5,000 decimal digits: int() refuses
            raise self.fail(_TOO_LARGE, node) from None
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise self.fail(_TOO_LARGE, node)
        return value

    def _mapping(self, node: MappingNode, path: FieldPath) -> dict[str, Any]:
        self.require_tag(node, "tag:yaml.org,2002:map")
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE_TAG:
                raise self.fail("merge keys (<<) are not allowed; write the fields out", key_node)
            if not isinstance(key_node, ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                raise self.fail("a key must be plain text", key_node)
            key = key_node.value
            if key == "<<":
                raise self.fail("merge keys (<<) are not allowed; write the fields out", key_node)
            child = (*path, key)
            if key in result:
                first = self.doc.key_positions[child][0]
                raise self.fail(
                    f"duplicate key {key!r} (first defined on line {first}); keep only one of them",
                    key_node,
                )
            self.doc.key_positions[child] = _mark_position(key_node)
            result[key] = self.build(value_node, child)
        return result


def read_yaml(
    path: Path, *, max_bytes: int, display_path: str | Path | None = None
) -> YamlDocument:
    """Read ``path`` as strict YAML data; any problem is an ``InputError`` with its position.

    ``display_path`` is how the file is named in messages (usually repository-relative).
    """
    shown = Path(display_path) if display_path is not None else path
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror}", shown) from None
    if size > max_bytes:
        raise InputError(
            f"file is {size:,} bytes, over the {max_bytes:,}-byte limit for a submission; "
            "a submission is a short text file",
            shown,
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
            shown,
            line,
            col,
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    doc = YamlDocument(path=shown, data=None)
    try:
        # PyYAML's reader checks for control characters already in the constructor.
        loader = _StrictLoader(text, shown)
    except yaml.reader.ReaderError as exc:
        raise _control_character(exc, text, shown) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise InputError("the file is empty", shown, 1, 1)
        doc.data = _Builder(loader, doc).build(root, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in str(exc.context or ""):
            problem = "only one YAML document per file (remove the '---' separator)"
        elif problem == "sequence entries are not allowed here":
            problem += (
                ' (a dash alone starts a list; for "not measured" write N/A or "-", or leave '
                "the field out)"
            )
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise InputError(f"invalid YAML: {problem}", shown, line, col) from None
    except yaml.reader.ReaderError as exc:
        raise _control_character(exc, text, shown) from None
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", shown) from None
    except RecursionError:
        raise InputError("nesting is too deep to be a submission", shown) from None
    finally:
        loader.dispose()
    return doc


def _control_character(exc: yaml.reader.ReaderError, text: str, shown: Path) -> InputError:
    """The position of a character YAML refuses (a control character such as ESC or BEL)."""
    line = text.count("\n", 0, exc.position) + 1
    col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    char = chr(exc.character) if isinstance(exc.character, int) else exc.character
    return InputError(
        f"control character {char!r} is not allowed in YAML text; remove it",
        shown,
        line,
        col,
    )
