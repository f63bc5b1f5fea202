"""Translation / text2text (Marian, T5, BART...): BLEU and chrF with sacrebleu.

Columns (roles): ``source`` (default ``source``) and ``target`` (default ``target``);
dotted names reach into the ``translation`` dict of WMT-style datasets, e.g.
``{source: translation.en, target: translation.de}``. ``evaluation.source_prefix`` (T5:
``"translate English to German: "``) is prepended to every source.

Languages (``evaluation.source_language`` / ``target_language``), applied the way each
family expects:
* NLLB, M2M100, mBART-50 (``m2m_100``, ``mbart``): both required; the tokenizer's
  ``src_lang`` is the source, and the target's language token (``fra_Latn``, ``__fr__``,
  ``fr_XX``) is forced as the first generated token (``forced_bos_token_id``);
* multilingual Marian: the target's ``>>code<<`` token is put before every source when the
  vocabulary has it (a bilingual Marian has none and needs nothing);
* T5: without a ``source_prefix``, ``translate <Source> to <Target>: `` from the codes
  ``en``, ``de``, ``fr``, ``ro`` (the pairs T5 was trained on).

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
from mcval.tasks.base import NotedCall, Scores, TaskDataError, fitted_input
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
FORCED_BOS_FAMILIES = ("m2m_100", "mbart")
T5_LANGUAGES = {"en": "English", "de": "German", "fr": "French", "ro": "Romanian"}


def _language_token(tokenizer: Any, code: str, which: str) -> tuple[str, int]:
    """The vocabulary's token for a language code (NLLB ``fra_Latn``, M2M ``__fr__``)."""
    for token in (code, f"__{code}__"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            return token, int(token_id)
    raise TaskDataError(
        f"evaluation.{which}: {code!r} is not a language code of this model's tokenizer "
        "(NLLB: eng_Latn, M2M100: en, mBART-50: en_XX)"
    )


def language_setup(model: Any, tokenizer: Any, evaluation: Any) -> tuple[str, int | None, dict]:
    """The source prefix, the forced first token and what was applied (module docstring)."""
    family = getattr(model.config, "model_type", None)
    source, target = evaluation.source_language, evaluation.target_language
    prefix = evaluation.source_prefix or ""
    forced = model.generation_config.forced_bos_token_id
    applied: dict[str, Any] = {"source_language": source, "target_language": target}
    if family in FORCED_BOS_FAMILIES:
        if not (source and target):
            raise TaskDataError(
                f"a {family} model translates into the language its first generated token "
                "names: add evaluation.source_language and evaluation.target_language"
            )
        _language_token(tokenizer, source, "source_language")
        if hasattr(tokenizer, "src_lang"):  # M2M100 takes 'en', NLLB 'eng_Latn'
            tokenizer.src_lang = source
        token, forced = _language_token(tokenizer, target, "target_language")
        applied["forced_bos_token"] = token
    elif family == "marian" and target:
        token = f">>{target}<<"
        if token in tokenizer.get_vocab():
            prefix = f"{token} {prefix}"
    elif family == "t5" and source and target and not evaluation.source_prefix:
        if source not in T5_LANGUAGES or target not in T5_LANGUAGES:
            raise TaskDataError(
                f"T5 translates between {', '.join(T5_LANGUAGES)} only; write "
                "evaluation.source_prefix yourself for another pair"
            )
        prefix = f"translate {T5_LANGUAGES[source]} to {T5_LANGUAGES[target]}: "
    applied["source_prefix"] = prefix or None
    return prefix, forced, {k: v for k, v in applied.items() if v is not None}


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
        forced_bos_token_id: int | None = None,
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
            forced_bos_token_id=forced_bos_token_id,
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
        prefix, forced, applied = language_setup(model, preprocessor, job.evaluation)
        sources = [prefix + text_cell(r, columns["source"], "source") for r in rows]
        references = [text_cell(r, columns["target"], "target") for r in rows]
        hypotheses = self.translate(
            model,
            preprocessor,
            sources,
            job.evaluation.batch_size,
            job.evaluation.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
            device,
            forced,
        )
        scorers = {"bleu": scoring.bleu, "chrf": scoring.chrf}
        return Scores({m: scorers[m](hypotheses, references) for m in job.metrics}, applied)
