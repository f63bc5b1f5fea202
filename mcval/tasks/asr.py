"""Automatic speech recognition (Whisper and other speech seq2seq models): WER and CER.

Columns (roles): ``audio`` (default ``audio``: a path relative to the data file's folder
for local data, or a hub ``Audio`` feature, read undecoded) and ``text`` (default ``text``,
the reference transcript). Every clip goes through ``mcval.tasks.audio``: soundfile, mono,
resampled with soxr to the feature extractor's ``sampling_rate``; each clip's original
rate and channels are recorded. A clip longer than the extractor's window (30 s for
Whisper) is an error naming the row, since the extractor would silently cut it. Features
are computed per batch (padding and attention mask from the extractor); decoding is greedy
(``num_beams=1``), stopping at end of text, with at most ``evaluation.max_new_tokens`` new
tokens (default: the decoder's limit minus its prompt, 448 − 4 = 444 for a multilingual
Whisper, 448 − 2 = 446 for an English-only one).

Language and task (Whisper): a multilingual Whisper gets ``evaluation.language`` and
``evaluation.task`` (default ``transcribe``) as ``generate(language=, task=)``, i.e. the
decoder prompt ``<|startoftranscript|><|xx|><|transcribe|><|notimestamps|>``; without a
language it would detect one per clip, so that is refused. An English-only Whisper's
prompt is ``<|startoftranscript|><|notimestamps|>`` and takes no language.
Hypotheses and references are normalised by ``evaluation.normalizer`` before jiwer
(``scoring``); the normaliser and the resampler are recorded with the figures.

Benchmark: ``{seconds: S}`` → S seconds of seeded Gaussian noise (std 0.1) at the
extractor's rate, through the feature extractor once; each call is one ``generate`` of
exactly ``ceil(TOKENS_PER_SECOND × S)`` new tokens (greedy, ``min_new_tokens =
max_new_tokens``; a multilingual Whisper's prompt names English and transcription, as
long as any evaluation prompt), capped by the decoder's limit.
3 tokens/s is ordinary English speech (~150 words/min at ~1.2 tokens/word), so the timed
call decodes as much text as a real clip of that length would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mcval.tasks import scoring
from mcval.tasks.audio import RESAMPLER, load_clip
from mcval.tasks.base import Scores, TaskDataError, benchmark_input
from mcval.tasks.common import (
    BENCHMARK_SEED,
    EvalJob,
    HandlerBase,
    to_device,
)
from mcval.tasks.data import media_source, text_cell

if TYPE_CHECKING:
    from mcval.submission.schema import Benchmark, Evaluation

TASK = "automatic-speech-recognition"
TOKENS_PER_SECOND = 3.0
ENGLISH = ("en", "english")


def is_whisper(model: Any) -> bool:
    return getattr(model.config, "model_type", None) == "whisper"


def prompt_options(model: Any, evaluation: Evaluation | None) -> dict[str, str]:
    """``generate``'s ``language`` / ``task`` for this model (module docstring); refuses
    what the model cannot honour."""
    language = evaluation.language if evaluation else None
    task = evaluation.task if evaluation else None
    if not is_whisper(model):
        if language or task:
            raise TaskDataError(
                "evaluation.language and evaluation.task apply to Whisper models; this model "
                f"is {getattr(model.config, 'model_type', 'another kind')}: remove them"
            )
        return {}
    if not getattr(model.generation_config, "is_multilingual", False):
        if (language and language.lower() not in ENGLISH) or task == "translate":
            raise TaskDataError(
                "this English-only Whisper (.en) transcribes English only; remove "
                "evaluation.language and evaluation.task"
            )
        return {}
    if language is None:
        raise TaskDataError(
            "this Whisper is multilingual: without evaluation.language it detects the language "
            "clip by clip; add evaluation.language (e.g. 'language: en') and, to translate "
            "into English, 'task: translate'"
        )
    return {"language": language.lower(), "task": task or "transcribe"}


def prompt_length(model: Any, options: dict[str, str]) -> int:
    """Tokens of the decoder prompt: start (+ language + task) (+ no-timestamps)."""
    if not is_whisper(model):
        return 1
    no_timestamps = getattr(model.generation_config, "no_timestamps_token_id", None)
    return 1 + (2 if options else 0) + (no_timestamps is not None)


def decoder_limit(model: Any, options: dict[str, str] | None = None) -> int | None:
    """How many new tokens the decoder can produce after its prompt."""
    limit = getattr(model.config, "max_target_positions", None) or getattr(
        model.config, "max_length", None
    )
    return int(limit) - prompt_length(model, options or {}) if limit else None


def window_seconds(extractor: Any) -> float | None:
    """Longest clip the feature extractor takes without cutting (Whisper: 30 s)."""
    n_samples = getattr(extractor, "n_samples", None)
    return n_samples / extractor.sampling_rate if n_samples else None


def _parts(processor: Any) -> tuple[Any, Any]:
    extractor = getattr(processor, "feature_extractor", None)
    tokenizer = getattr(processor, "tokenizer", None)
    if extractor is None or tokenizer is None:
        raise TaskDataError(
            "the model's processor lacks a feature extractor or a tokenizer "
            "(automatic-speech-recognition needs both)"
        )
    return extractor, tokenizer


class SpeechRecognition(HandlerBase):
    """Speech-to-text with ``AutoModelForSpeechSeq2Seq`` (Whisper, Speech2Text)."""

    name = TASK
    auto_class = "AutoModelForSpeechSeq2Seq"
    preprocessor_class = "AutoProcessor"

    def load_preprocessor(
        self, source: str | Path, revision: str | None, gguf_file: str | None
    ) -> Any:
        processor = super().load_preprocessor(source, revision, gguf_file)
        _parts(processor)
        return processor

    def features(self, processor: Any, clips: list[np.ndarray], model: Any, device: str) -> dict:
        """Feature-extractor inputs for a batch of clips (at the extractor's rate)."""
        extractor, _ = _parts(processor)
        encoded = extractor(
            clips,
            sampling_rate=extractor.sampling_rate,
            return_tensors="pt",
            return_attention_mask=True,
        )
        return to_device(encoded, model, device)

    def benchmark_call(
        self, model: Any, preprocessor: Any, benchmark: Benchmark, device: str
    ) -> Callable[[], Any]:
        seconds = float(benchmark_input(TASK, benchmark)["seconds"])
        extractor, _ = _parts(preprocessor)
        window = window_seconds(extractor)
        if window is not None and seconds > window:
            raise TaskDataError(
                f"benchmark.input.seconds {seconds:g} exceeds the model's {window:g} s window"
            )
        rate = int(extractor.sampling_rate)
        rng = np.random.default_rng(BENCHMARK_SEED)
        clip = (rng.standard_normal(round(seconds * rate)) * 0.1).astype(np.float32)
        inputs = self.features(preprocessor, [clip] * benchmark.batch_size, model, device)
        new = math.ceil(TOKENS_PER_SECOND * seconds)
        options = _default_options(model)
        limit = decoder_limit(model, options)
        if limit is not None:
            new = min(new, limit)

        def generate() -> Any:
            with torch.inference_mode():
                return model.generate(
                    **inputs,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                    num_beams=1,
                    **options,
                )

        return generate

    def transcribe(
        self,
        model: Any,
        processor: Any,
        clips: list[np.ndarray],
        batch_size: int,
        max_new_tokens: int | None,
        device: str,
        options: dict[str, str] | None = None,
    ) -> list[str]:
        """Greedy transcripts, ``batch_size`` clips at a time."""
        _, tokenizer = _parts(processor)
        options = options or {}
        limit = decoder_limit(model, options)
        new = max_new_tokens or limit
        kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1, **options}
        if new is not None:
            kwargs["max_new_tokens"] = new
        texts: list[str] = []
        for start in range(0, len(clips), batch_size):
            inputs = self.features(processor, clips[start : start + batch_size], model, device)
            with torch.inference_mode():
                generated = model.generate(**inputs, **kwargs)
            texts.extend(tokenizer.batch_decode(generated, skip_special_tokens=True))
        return [t.strip() for t in texts]

    def score(self, model: Any, preprocessor: Any, job: EvalJob, device: str) -> dict[str, float]:
        """WER and CER of greedy transcripts of the slice's clips (module docstring)."""
        data, columns, evaluation = job.data, job.columns, job.evaluation
        extractor, _ = _parts(preprocessor)
        rate = int(extractor.sampling_rate)
        window = window_seconds(extractor)
        options = prompt_options(model, evaluation)
        normalizer = evaluation.normalizer or "basic"
        clips: list[np.ndarray] = []
        references: list[str] = []
        originals: list[dict[str, Any]] = []
        for row in data.rows:
            reference = text_cell(row, columns["text"], "text")
            if not scoring.normalize_transcript(reference, normalizer):
                raise TaskDataError(
                    f"{row.where}: the reference transcript is empty after the {normalizer} "
                    "normaliser"
                )
            source = media_source(row, columns["audio"], data.repo_root)
            clip, info = load_clip(source, rate, row.where)
            originals.append({"row": row.where, "rate": info.rate, "channels": info.channels})
            if window is not None and len(clip) > window * rate:
                raise TaskDataError(
                    f"{row.where}: the clip lasts {len(clip) / rate:.1f} s, longer than the "
                    f"model's {window:g} s window; choose shorter clips"
                )
            clips.append(clip)
            references.append(reference)
        hypotheses = self.transcribe(
            model,
            preprocessor,
            clips,
            evaluation.batch_size,
            evaluation.max_new_tokens,
            device,
            options,
        )
        details = {
            "normalizer": normalizer,
            "resampler": RESAMPLER,
            "sampling_rate": rate,
            **options,
            "clips": originals,
        }
        return Scores(scoring.error_rates(hypotheses, references, normalizer), details)


def _default_options(model: Any) -> dict[str, str]:
    """The benchmark's prompt: English for a multilingual Whisper (every language/task
    prompt has the same length, so the timed call is the same work)."""
    if is_whisper(model) and getattr(model.generation_config, "is_multilingual", False):
        return {"language": "en", "task": "transcribe"}
    return {}
