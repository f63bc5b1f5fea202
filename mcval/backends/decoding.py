"""Greedy generation on ONNX Runtime and OpenVINO: the ``{prompt_tokens, new_tokens}``
benchmark of a causal LM, decoded in numpy on the runtime.

The timed call does what PyTorch's timed ``generate`` does (``mcval.tasks.common.
exact_generate_call``): from the same seeded ``batch × prompt`` ids, exactly ``new`` greedy
tokens, the end-of-sequence ids suppressed until then (``min_new_tokens = new``), one
forward call per new token — the prefill over the prompt with an empty past, then one call
per token feeding the previous call's present as the past. So a row's latency compares
runtimes, not decoding strategies.

A graph without a KV cache (a shipped ``model.file`` exported logits-only, or an
architecture the cache export failed on) is decoded honestly without one: each new token
re-runs the whole sequence, and the measurement's warnings say so, since such a figure is
not comparable with a cached loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mcval.backends.base import RuntimeModel
from mcval.tasks.base import NotedCall

NO_CACHE_NOTE = (
    "generation without a KV cache: the {runtime} graph has no past_key_values inputs with "
    "matching present outputs, so each new token re-runs the whole sequence (slower than a "
    "cached loop; export with past key/values, e.g. Optimum's text-generation-with-past, "
    "or leave model.file out and the runner exports one)"
)


def greedy_tokens(
    model: RuntimeModel, prompt: np.ndarray, new: int, banned: Sequence[int]
) -> np.ndarray:
    """``batch × new`` greedy token ids after ``prompt`` (``batch × length``, all attended):
    the argmax of each step's last-position logits with the ``banned`` ids (end of
    sequence) excluded, ties to the lowest id as in torch."""
    batch = prompt.shape[0]
    tokens = np.empty((batch, new), dtype=np.int64)
    mask = np.ones(prompt.shape, dtype=np.int64)
    step_ids = prompt.astype(np.int64, copy=False)
    past: Any = None
    banned_ids = np.asarray(list(banned), dtype=np.int64)
    for i in range(new):
        if model.decode is not None:
            logits, past = model.decode(step_ids, mask, past)
        else:
            logits = model(input_ids=step_ids, attention_mask=mask).logits[:, -1, :].numpy()
        scores = np.array(logits, dtype=np.float32)  # a copy: the runtime's buffer stays
        if banned_ids.size:
            scores[:, banned_ids] = -np.inf
        tokens[:, i] = scores.argmax(axis=-1)
        mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
        if model.decode is not None:
            step_ids = tokens[:, i : i + 1]
        else:
            step_ids = np.concatenate([step_ids, tokens[:, i : i + 1]], axis=1)
    return tokens


def banned_ids(model: RuntimeModel, tokenizer: Any, new: int) -> list[int]:
    """The end-of-sequence ids PyTorch's exact-length ``generate`` suppresses: the same
    ``GenerationConfig`` (``mcval.tasks.common.exact_generation_config``), from the
    checkpoint's generation settings."""
    from mcval.tasks.common import exact_generation_config

    eos = exact_generation_config(model, tokenizer, new).eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def generation_call(
    model: RuntimeModel, tokenizer: Any, batch: int, prompt: int, new: int
) -> Callable[[], Any]:
    """The timed call of a generation benchmark on an exported runtime, noted when the
    graph has no KV cache (see the module docstring)."""
    from mcval.runtimes import RUNTIME_LABELS, generation_problem
    from mcval.tasks.base import TaskDataError
    from mcval.tasks.common import seeded_token_ids

    problem = generation_problem(model.runtime)
    if problem:  # ``mcval check`` refuses it first; kept for a direct ``measure``
        raise TaskDataError(problem)
    ids = seeded_token_ids(tokenizer, model.config, batch, prompt).numpy()
    banned = banned_ids(model, tokenizer, new)

    def generate() -> np.ndarray:
        return greedy_tokens(model, ids, new, banned)

    cached = model.decode is not None  # an exported cache, or the runtime's own (llama.cpp)
    note = None if cached else NO_CACHE_NOTE.format(runtime=RUNTIME_LABELS[model.runtime])
    return NotedCall(generate, note)
