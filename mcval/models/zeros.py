"""Exact count of zero weights, fast on every sparsity: shared by ``measure_size`` and
``inspect_model``, which both count zeros over (most of) the model after the timed calls.

Why not ``torch.count_nonzero``: on CPU it branches per element, so a pruned layer (zeros
and non-zeros interleaved at random) runs ~10x slower than a dense one (~2 GB/s), and it is
slow on bfloat16/float16 whatever the data. A float is zero (+0.0 or -0.0) exactly when its
bits shifted left by one (dropping the sign) are zero; numpy shifts and counts integers
with SIMD, without branches, chunk by chunk in a cache-sized buffer (no model-sized copy).
Torch and numpy are imported inside, as everywhere in ``mcval.models``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CHUNK = 1 << 18
"""Elements shifted per step: 1 MiB of float32, small enough to stay in cache."""


def count_zeros(tensor: torch.Tensor) -> int:
    """Elements equal to zero (either sign), exactly ``numel - torch.count_nonzero``.

    Contiguous float tensors on the CPU take the bit path; anything else (integers, other
    devices, strided views) is counted by ``torch.count_nonzero``, as before.
    """
    import numpy as np
    import torch

    bits = {
        torch.float16: (torch.int16, np.uint16),
        torch.bfloat16: (torch.int16, np.uint16),
        torch.float32: (torch.int32, np.uint32),
        torch.float64: (torch.int64, np.uint64),
    }.get(tensor.dtype)
    if bits is None or tensor.device.type != "cpu" or not tensor.is_contiguous():
        return tensor.numel() - int(torch.count_nonzero(tensor.detach()))
    torch_bits, np_bits = bits
    flat = tensor.detach().reshape(-1).view(torch_bits).numpy().view(np_bits)
    buffer = np.empty(min(CHUNK, flat.size), dtype=np_bits)
    nonzero = 0
    for start in range(0, flat.size, CHUNK):
        chunk = flat[start : start + CHUNK]
        shifted = buffer[: chunk.size]
        np.left_shift(chunk, 1, out=shifted)
        nonzero += int(np.count_nonzero(shifted))
    return flat.size - nonzero
