"""A bounded walk over a GGUF file's header and tensor table, before any parser trusts it.

llama.cpp's own GGUF parser (C++) has had memory-safety bugs, and the ``gguf`` package's
Python reader loops over whatever counts a header claims. So every GGUF is walked here
first, with ``struct`` and explicit bounds: each length, count and offset is checked against
the bytes left in the file before it is used, so a hostile file cannot make any later
reader allocate, loop or read out of bounds. What the walk checks (the rules llama.cpp's
loader applies, made explicit):

- magic ``GGUF``, little-endian, version 2 or 3;
- every metadata key and value inside the file, known value types only, no nested arrays,
  no duplicate keys; ``general.alignment`` (when present) a power of two;
- per tensor: a unique name under 64 bytes, 1 to 4 dimensions each ≥ 1, a known GGML type
  (``gguf.GGML_QUANT_SIZES``), a first dimension that is a whole number of the type's
  blocks, an offset aligned to the file's alignment, and data (offset + size at the
  stored width) inside the file and not overlapping another tensor's.

The result is the tensor table as numbers (``GGUFTable``): the per-type counts and bytes
that ``weights_mb`` of a llama.cpp row is made of (docs/measurement.md). Torch-free.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_NAME_BYTES = 63
"""llama.cpp's ``GGML_MAX_NAME`` is 64 bytes with the terminating NUL."""
MAX_DIMS = 4
INT64_MAX = 2**63 - 1
_SCALARS: dict[int, str] = {
    0: "<B",  # UINT8
    1: "<b",  # INT8
    2: "<H",  # UINT16
    3: "<h",  # INT16
    4: "<I",  # UINT32
    5: "<i",  # INT32
    6: "<f",  # FLOAT32
    7: "<?",  # BOOL
    10: "<Q",  # UINT64
    11: "<q",  # INT64
    12: "<d",  # FLOAT64
}
STRING, ARRAY = 8, 9
_KEPT_STRING_BYTES = 1024
"""Longer metadata strings (chat templates) are skipped, not decoded."""


class GGUFFormatError(ValueError):
    """The file breaks a rule of the walk; the message is the one-line reason."""


@dataclass
class TensorEntry:
    """One row of the tensor table."""

    name: str
    type_name: str
    dims: tuple[int, ...]
    elements: int
    nbytes: int
    offset: int
    """Relative to the start of the data section."""


@dataclass
class GGUFTable:
    """The validated header and tensor table of a GGUF file."""

    version: int
    file_bytes: int
    alignment: int
    data_offset: int
    tensors: list[TensorEntry]
    metadata: dict[str, Any] = field(default_factory=dict)
    """Scalar and short string values by key; arrays as their length (``len:N``)."""
    array_lengths: dict[str, int] = field(default_factory=dict)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def type_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.type_name] = counts.get(t.type_name, 0) + 1
        return counts

    def type_bytes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for t in self.tensors:
            sizes[t.type_name] = sizes.get(t.type_name, 0) + t.nbytes
        return sizes


def known_types() -> dict[int, tuple[str, int, int]]:
    """GGML type id → (name, block size, bytes per block), from the ``gguf`` package."""
    from gguf import GGML_QUANT_SIZES

    return {int(t): (t.name, int(b), int(s)) for t, (b, s) in GGML_QUANT_SIZES.items()}


class _Cursor:
    """Reads little-endian values from ``data``, refusing any read past its end."""

    def __init__(self, data: memoryview, what: str = "header") -> None:
        self.data = data
        self.pos = 0
        self.what = what

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or n > self.left:
            raise GGUFFormatError(
                f"truncated {self.what}: {what} needs {n} bytes at offset {self.pos}, "
                f"the file has {self.left} left"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str, keep: bool = True) -> str | None:
        length = self.unpack("<Q", f"the length of {what}")
        raw = self.take(length, what)
        if not keep or length > _KEPT_STRING_BYTES:
            return None
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFFormatError(f"{what} is not UTF-8") from None


def _value(cur: _Cursor, vtype: int, key: str, in_array: bool = False) -> Any:
    if vtype in _SCALARS:
        return cur.unpack(_SCALARS[vtype], f"the value of {key!r}")
    if vtype == STRING:
        return cur.string(f"the value of {key!r}", keep=not in_array)
    if vtype == ARRAY:
        if in_array:
            raise GGUFFormatError(f"metadata {key!r} nests arrays, which GGUF readers refuse")
        itype = cur.unpack("<I", f"the array type of {key!r}")
        count = cur.unpack("<Q", f"the array length of {key!r}")
        if itype in _SCALARS:
            width = struct.calcsize(_SCALARS[itype])
            cur.take(count * width, f"array {key!r}")
            return ("len", count)
        if itype == STRING:
            if count * 8 > cur.left:  # each string has at least its 8-byte length
                raise GGUFFormatError(
                    f"truncated header: array {key!r} claims {count} strings, more than the "
                    f"{cur.left} bytes left can hold"
                )
            for _ in range(count):
                cur.string(f"an item of {key!r}", keep=False)
            return ("len", count)
        if itype == ARRAY:
            raise GGUFFormatError(f"metadata {key!r} nests arrays, which GGUF readers refuse")
        raise GGUFFormatError(f"metadata {key!r} has unknown array item type {itype}")
    raise GGUFFormatError(f"metadata {key!r} has unknown value type {vtype}")


def walk_gguf(path: Path) -> GGUFTable:
    """Validate ``path``'s header and tensor table (module docstring); raises
    ``GGUFFormatError`` with the first rule broken."""
    types = known_types()
    size = path.stat().st_size
    with path.open("rb") as handle:
        data = _HeaderBytes(handle, size)
        cur = _Cursor(data.view)
        try:
            return _walk(cur, size, types)
        finally:
            data.close()


class _HeaderBytes:
    """The file mapped read-only (no copy), so the walk's reads cost no memory."""

    def __init__(self, handle: Any, size: int) -> None:
        import mmap

        self._mmap = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self.view = memoryview(self._mmap) if self._mmap is not None else memoryview(b"")

    def close(self) -> None:
        self.view.release()
        if self._mmap is not None:
            self._mmap.close()


def _walk(cur: _Cursor, size: int, types: dict[int, tuple[str, int, int]]) -> GGUFTable:
    magic = bytes(cur.take(4, "the magic"))
    if magic != MAGIC:
        raise GGUFFormatError(f"GGUF magic invalid: the file starts with {magic!r}, not b'GGUF'")
    version = cur.unpack("<I", "the version")
    if version not in VERSIONS:
        raise GGUFFormatError(
            f"version {version} is not a GGUF version llama.cpp reads (2 or 3; big-endian "
            "files are refused too)"
        )
    n_tensors = cur.unpack("<Q", "the tensor count")
    n_kv = cur.unpack("<Q", "the metadata count")
    # Each metadata entry takes at least 8 + 4 + 1 bytes, each tensor entry 8 + 4 + 8 + 4 + 8.
    if n_kv * 13 > cur.left or n_tensors * 32 > cur.left:
        raise GGUFFormatError(
            f"truncated header: it claims {n_kv} metadata entries and {n_tensors} tensors, more "
            f"than the file's {size} bytes can hold"
        )
    metadata: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for index in range(n_kv):
        key = cur.string(f"metadata key {index}")
        if key is None:
            raise GGUFFormatError(f"metadata key {index} is over {_KEPT_STRING_BYTES} bytes")
        if key in metadata or key in lengths:
            raise GGUFFormatError(f"metadata key {key!r} appears twice")
        vtype = cur.unpack("<I", f"the type of {key!r}")
        value = _value(cur, vtype, key)
        if isinstance(value, tuple):
            lengths[key] = int(value[1])
        else:
            metadata[key] = value
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFFormatError(f"general.alignment {alignment!r} is not a power of two")
    entries: list[TensorEntry] = []
    names: set[str] = set()
    for index in range(n_tensors):
        name = cur.string(f"the name of tensor {index}")
        if name is None or len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise GGUFFormatError(f"tensor {index}'s name is over {MAX_NAME_BYTES} bytes")
        if name in names:
            raise GGUFFormatError(f"tensor {name!r} appears twice")
        names.add(name)
        n_dims = cur.unpack("<I", f"the dimension count of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise GGUFFormatError(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS})")
        dims = tuple(cur.unpack("<Q", f"a dimension of {name!r}") for _ in range(n_dims))
        elements = 1
        for d in dims:
            if not 1 <= d <= INT64_MAX:
                raise GGUFFormatError(f"tensor {name!r} has dimension {d}")
            elements *= d
            if elements > INT64_MAX:
                raise GGUFFormatError(f"tensor {name!r}'s element count overflows 64 bits")
        raw_type = cur.unpack("<I", f"the type of {name!r}")
        if raw_type not in types:
            raise GGUFFormatError(
                f"tensor {name!r} has unknown tensor type {raw_type} (not a GGML type this "
                "runner's gguf package knows)"
            )
        type_name, block, block_bytes = types[raw_type]
        if dims[0] % block:
            raise GGUFFormatError(
                f"tensor {name!r}: its first dimension {dims[0]} is not a multiple of the "
                f"{type_name} block size {block}"
            )
        offset = cur.unpack("<Q", f"the offset of {name!r}")
        if offset % alignment:
            raise GGUFFormatError(
                f"tensor {name!r}: offset {offset} is not aligned to {alignment} bytes"
            )
        nbytes = elements // block * block_bytes
        entries.append(TensorEntry(name, type_name, dims, elements, nbytes, offset))
    data_offset = -(-cur.pos // alignment) * alignment
    end_of_previous = 0
    previous = ""
    for entry in sorted(entries, key=lambda e: e.offset):
        start = data_offset + entry.offset
        if start + entry.nbytes > size:
            raise GGUFFormatError(
                f"tensor {entry.name!r} ({entry.type_name}, {entry.nbytes} bytes at file offset "
                f"{start}) ends past the end of the file ({size} bytes)"
            )
        if entry.offset < end_of_previous:
            raise GGUFFormatError(f"tensors {previous!r} and {entry.name!r} overlap")
        end_of_previous, previous = entry.offset + entry.nbytes, entry.name
    return GGUFTable(
        version=version,
        file_bytes=size,
        alignment=alignment,
        data_offset=data_offset,
        tensors=entries,
        metadata=metadata,
        array_lengths=lengths,
    )
