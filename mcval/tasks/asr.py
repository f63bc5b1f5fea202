"""Automatic speech recognition (Whisper and other speech seq2seq models): WER and CER.

Columns (roles): ``audio`` (default ``audio``: a path relative to the data file for local
data, or a hub ``Audio`` feature, read undecoded) and ``text`` (default ``text``, the
reference transcript). Every clip goes through ``mcval.tasks.audio``: soundfile, mono,
resampled to the feature extractor's ``sampling_rate``. A clip longer than the extractor's
window (30 s for Whisper) is an error naming the row, since the extractor would silently
cut it. Features are computed per batch (padding and attention mask from the extractor);
decoding is greedy (``num_beams=1``) with at most ``evaluation.max_new_tokens`` new tokens
(default: the decoder's limit minus ``DECODER_PROMPT_TOKENS``), stopping at end of text.
Hypotheses and references are normalised the same way before jiwer (``scoring``).

Benchmark: ``{seconds: S}`` → S seconds of seeded Gaussian noise (std 0.1) at the
extractor's rate, through the feature extractor once; each call is one ``generate`` of
exactly ``ceil(TOKENS_PER_SECOND × S)`` new tokens (greedy, ``min_new_tokens =
max_new_tokens``), capped by the decoder's limit. 3 tokens/s is ordinary English speech
(~150 words/min at ~1.2 tokens/word), so the timed call decodes as much text as a real
clip of that length would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mcval.tasks import scoring
from mcval.tasks.audio import load_audio
from mcval.tasks.base import TaskDataError, benchmark_input
from mcval.tasks.common import (
    BENCHMARK_SEED,
    EvalJob,
    HandlerBase,
    to_device,
)
from mcval.tasks.data import media_source, text_cell

if TYPE_CHECKING:
    from mcval.submission.schema import Benchmark

TASK = "automatic-speech-recognition"
TOKENS_PER_SECOND = 3.0
DECODER_PROMPT_TOKENS = 4
"""Room left for the decoder prompt (Whisper: start, language, task, no-timestamps)."""


def decoder_limit(model: Any) -> int | None:
    """How many new tokens the decoder can produce after its prompt."""
    limit = getattr(model.config, "max_target_positions", None) or getattr(
        model.config, "max_length", None
    )
    return int(limit) - DECODER_PROMPT_TOKENS if limit else None


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
        limit = decoder_limit(model)
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
    ) -> list[str]:
        """Greedy transcripts, ``batch_size`` clips at a time."""
        _, tokenizer = _parts(processor)
        limit = decoder_limit(model)
        new = max_new_tokens or limit
        kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1}
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
        clips: list[np.ndarray] = []
        references: list[str] = []
        for row in data.rows:
            reference = text_cell(row, columns["text"], "text")
            if not scoring.normalize_transcript(reference):
                raise TaskDataError(f"{row.where}: the reference transcript is empty")
            clip = load_audio(media_source(row, columns["audio"], data.repo_root), rate, row.where)
            if window is not None and len(clip) > window * rate:
                raise TaskDataError(
                    f"{row.where}: the clip lasts {len(clip) / rate:.1f} s, longer than the "
                    f"model's {window:g} s window; choose shorter clips"
                )
            clips.append(clip)
            references.append(reference)
        hypotheses = self.transcribe(
            model, preprocessor, clips, evaluation.batch_size, evaluation.max_new_tokens, device
        )
        return scoring.error_rates(hypotheses, references)
