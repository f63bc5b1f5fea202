"""Causal language models (LLaMA/Mistral/Qwen-class, GPT-2, GGUF checkpoints): perplexity.

Perplexity (token-weighted, the standard strided evaluation of the transformers docs)
    1. The slice's ``text`` column (default ``text``) is joined with ``"\\n\\n"`` in slice
       order and tokenised once (with the tokenizer's usual special tokens, e.g. BOS).
    2. Windows of ``context`` tokens start every ``stride`` tokens:
       ``context = evaluation.context_length`` or the model's maximum length
       (``max_position_embeddings``/``n_positions``), ``stride = evaluation.stride`` or
       ``context // 2``. Each window scores only the tokens not scored by the previous one,
       so every token is scored exactly once, with ``context - stride`` tokens of history
       or more; a window's first token has no history in it and is never scored there
       (so with ``stride == context`` each window's first token goes unscored, and the
       first token of the text never is).
    3. ``perplexity = exp(sum of -log p(token | history) / number of scored tokens)``,
       log-probabilities from float32 log-softmax of the logits.
    Windows are run ``evaluation.batch_size`` at a time (right-padded, attention-masked),
    fewer when their float32 logits would exceed ``LOGITS_BUDGET_BYTES``.

Benchmark
    ``{tokens: N}``: one forward pass over ``batch_size × N`` seeded token ids.
    ``{prompt_tokens: P, new_tokens: M}``: ``generate`` from a ``batch_size × P`` seeded
    prompt producing exactly M new tokens (greedy, ``min_new_tokens = max_new_tokens = M``,
    so an early end-of-sequence token cannot shorten the call). On ONNX Runtime and
    OpenVINO the same greedy loop runs in numpy on the runtime with its KV cache
    (``mcval.backends.decoding``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from mcval.tasks import scoring
from mcval.tasks.base import NotedCall, TaskDataError, fitted_input
from mcval.tasks.common import (
    EvalJob,
    HandlerBase,
    check_length,
    ensure_pad_token,
    exact_generate_call,
    forward_call,
    seeded_inputs,
    to_device,
)
from mcval.tasks.data import text_cell

if TYPE_CHECKING:
    from mcval.submission.schema import Benchmark

TASK = "causal-lm"
LOGITS_BUDGET_BYTES = 2 * 2**30
"""Upper bound of one batch's float32 logits; larger batches are split."""


def model_max_length(config: Any) -> int | None:
    """The model's position limit (the default perplexity context)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def windows(total: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first_scored)`` token ranges of the strided evaluation.

    Tokens ``first_scored .. end-1`` of window ``begin .. end-1`` are scored there;
    ``first_scored > begin`` always, since a token needs history inside its window.
    """
    if not 0 < stride <= context:
        raise TaskDataError(f"evaluation.stride must be between 1 and the context ({context})")
    spans: list[tuple[int, int, int]] = []
    previous_end = 0
    for begin in range(0, total, stride):
        end = min(begin + context, total)
        first = max(previous_end, begin + 1)
        if first < end:
            spans.append((begin, end, first))
        previous_end = end
        if end == total:
            break
    return spans


class CausalLM(HandlerBase):
    """Decoder-only LMs with ``AutoModelForCausalLM``."""

    name = TASK
    auto_class = "AutoModelForCausalLM"

    def benchmark_call(
        self, model: Any, preprocessor: Any, benchmark: Benchmark, device: str
    ) -> Callable[[], Any]:
        limit = model_max_length(model.config)
        shape, note = fitted_input(TASK, benchmark, limit, counts_new_tokens=True)
        if "tokens" in shape:
            tokens = int(shape["tokens"])
            check_length(tokens, limit, "benchmark.input.tokens")
            inputs = seeded_inputs(preprocessor, model, benchmark.batch_size, tokens, device)
            return NotedCall(forward_call(model, inputs), note)
        prompt, new = int(shape["prompt_tokens"]), int(shape["new_tokens"])
        check_length(prompt + new, limit, "benchmark prompt_tokens + new_tokens")
        if getattr(model, "runtime", "pytorch") != "pytorch":  # ONNX Runtime, OpenVINO
            from mcval.backends.decoding import generation_call

            call = generation_call(model, preprocessor, benchmark.batch_size, prompt, new)
            notes = [n for n in (note, getattr(call, "note", None)) if n]
            return NotedCall(call, "; ".join(notes) or None)
        call = exact_generate_call(model, preprocessor, benchmark.batch_size, prompt, new, device)
        return NotedCall(call, note)

    def score(self, model: Any, preprocessor: Any, job: EvalJob, device: str) -> dict[str, float]:
        """Perplexity of the slice's texts joined into one document (module docstring)."""
        evaluation = job.evaluation
        text = "\n\n".join(text_cell(r, job.columns["text"], "text") for r in job.data.rows)
        ids = preprocessor(text, return_tensors="pt", truncation=False, verbose=False).input_ids[0]
        if ids.numel() < 2:
            raise TaskDataError(f"the evaluation text of {job.data.description} has under 2 tokens")
        limit = model_max_length(model.config)
        context = evaluation.context_length or limit
        if context is None:
            raise TaskDataError(
                "the model declares no maximum length; set evaluation.context_length"
            )
        if limit is not None and context > limit:
            raise TaskDataError(
                f"evaluation.context_length {context} exceeds the model's maximum {limit}"
            )
        stride = evaluation.stride or max(1, context // 2)
        nll, count = self.negative_log_likelihood(
            model, preprocessor, ids, context, stride, evaluation.batch_size, device
        )
        return {"perplexity": scoring.perplexity(nll, count)}

    def negative_log_likelihood(
        self,
        model: Any,
        tokenizer: Any,
        ids: torch.Tensor,
        context: int,
        stride: int,
        batch_size: int,
        device: str,
    ) -> tuple[float, int]:
        """Summed NLL (nats) and number of scored tokens over the strided windows."""
        ensure_pad_token(tokenizer, model)
        spans = windows(int(ids.numel()), context, stride)
        vocab = int(getattr(model.config, "vocab_size", 0) or len(tokenizer))
        per_batch = max(1, min(batch_size, LOGITS_BUDGET_BYTES // max(1, context * vocab * 4)))
        total, count = 0.0, 0
        for start in range(0, len(spans), per_batch):
            chunk = spans[start : start + per_batch]
            width = max(end - begin for begin, end, _ in chunk)
            input_ids = torch.full((len(chunk), width), int(tokenizer.pad_token_id))
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            targets = torch.full((len(chunk), width), -100)
            for row, (begin, end, first) in enumerate(chunk):
                input_ids[row, : end - begin] = ids[begin:end]
                mask[row, : end - begin] = 1
                targets[row, first - begin : end - begin] = ids[first:end]
            inputs = to_device({"input_ids": input_ids, "attention_mask": mask}, model, device)
            with torch.inference_mode():
                logits = model(**inputs).logits
            shifted = targets[:, 1:].to(logits.device)
            for row in range(len(chunk)):
                scored = shifted[row] != -100
                log_probs = torch.log_softmax(logits[row, :-1][scored].float(), dim=-1)
                picked = log_probs.gather(1, shifted[row][scored].unsqueeze(1))
                total -= float(picked.sum())
                count += int(scored.sum())
        return total, count
