"""Translation / text2text (Marian, T5, BART...): BLEU and chrF with sacrebleu.

Columns (roles): ``source`` (default ``source``) and ``target`` (default ``target``);
dotted names reach into the ``translation`` dict of WMT-style datasets, e.g.
``{source: translation.en, target: translation.de}``. If the evaluation declares a
``source_prefix`` (T5-style ``"translate English to German: "``) it is prepended to every
source (the submission schema does not have that field yet; see the report).

Decoding: greedy (``num_beams=1``, no sampling), at most ``evaluation.max_new_tokens`` new
tokens (default ``DEFAULT_MAX_NEW_TOKENS``); sources right-padded with attention masks and
truncated to the model's maximum length; outputs decoded with ``skip_special_tokens``.
Scores: ``scoring.bleu`` / ``scoring.chrf`` (sacrebleu corpus scores, 0-100).

Benchmark: ``{prompt_tokens: P, new_tokens: M}`` → a seeded source of P tokens per batch
row, ``generate`` producing exactly M tokens (greedy, ``min_new_tokens = max_new_tokens``);
``{tokens: N}`` means P = M = N.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from mcval.tasks import scoring
from mcval.tasks.base import NotedCall, fitted_input
from mcval.tasks.common import (
    EvalJob,
    HandlerBase,
    check_length,
    encode_batch,
    ensure_pad_token,
    exact_generate_call,
    max_input_tokens,
    to_device,
)
from mcval.tasks.data import text_cell

if TYPE_CHECKING:
    from mcval.submission.schema import Benchmark

TASK = "translation"
DEFAULT_MAX_NEW_TOKENS = 128


class Translation(HandlerBase):
    """Sequence-to-sequence generation with ``AutoModelForSeq2SeqLM``."""

    name = TASK
    auto_class = "AutoModelForSeq2SeqLM"

    def benchmark_call(
        self, model: Any, preprocessor: Any, benchmark: Benchmark, device: str
    ) -> Callable[[], Any]:
        limit = max_input_tokens(preprocessor, model.config)
        shape, note = fitted_input(TASK, benchmark, limit, counts_new_tokens=False)
        prompt = int(shape.get("prompt_tokens", shape.get("tokens", 0)))
        new = int(shape.get("new_tokens", shape.get("tokens", 0)))
        check_length(prompt, limit, "the benchmark source")
        call = exact_generate_call(model, preprocessor, benchmark.batch_size, prompt, new, device)
        return NotedCall(call, note)

    def translate(
        self,
        model: Any,
        tokenizer: Any,
        sources: list[str],
        batch_size: int,
        max_new_tokens: int,
        device: str,
    ) -> list[str]:
        """Greedy translations, ``batch_size`` sources at a time."""
        from transformers import GenerationConfig

        ensure_pad_token(tokenizer, model)
        limit = max_input_tokens(tokenizer, model.config)
        gen = model.generation_config
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=gen.eos_token_id,
            pad_token_id=gen.pad_token_id
            if gen.pad_token_id is not None
            else tokenizer.pad_token_id,
            bos_token_id=gen.bos_token_id,
            decoder_start_token_id=gen.decoder_start_token_id,
            forced_bos_token_id=gen.forced_bos_token_id,
        )
        outputs: list[str] = []
        for start in range(0, len(sources), batch_size):
            encoded = encode_batch(tokenizer, limit, sources[start : start + batch_size])
            with torch.inference_mode():
                generated = model.generate(
                    **to_device(encoded, model, device), generation_config=config
                )
            outputs.extend(tokenizer.batch_decode(generated, skip_special_tokens=True))
        return [o.strip() for o in outputs]

    def score(self, model: Any, preprocessor: Any, job: EvalJob, device: str) -> dict[str, float]:
        """BLEU / chrF of greedy translations (only the metrics asked for are computed)."""
        rows, columns = job.data.rows, job.columns
        prefix = getattr(job.evaluation, "source_prefix", None) or ""
        sources = [prefix + text_cell(r, columns["source"], "source") for r in rows]
        references = [text_cell(r, columns["target"], "target") for r in rows]
        hypotheses = self.translate(
            model,
            preprocessor,
            sources,
            job.evaluation.batch_size,
            job.evaluation.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
            device,
        )
        scorers = {"bleu": scoring.bleu, "chrf": scoring.chrf}
        return {m: scorers[m](hypotheses, references) for m in job.metrics}
