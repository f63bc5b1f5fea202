"""Scoring functions: predictions and references in, metric values (natural units) out.

Torch-free, and separate from inference so each metric can be tested on fixed inputs.
Metric names and units are those of ``mcval.metrics``.

* ``accuracy``: share of exact matches.
* ``macro_f1``: unweighted mean over classes of per-class F1, over the classes that occur
  in the references or the predictions (a class with no true positive has F1 0); the same
  definition as scikit-learn's ``f1_score(average="macro", zero_division=0)``.
* entity precision/recall/F1: seqeval's default (CoNLL-2000 ``conlleval``) chunking of
  IOB tags, micro-averaged over entities, 0 when there is nothing to divide.
* ``perplexity``: ``exp(total negative log-likelihood / scored tokens)`` (token-weighted).
* ``bleu`` / ``chrf``: sacrebleu's ``corpus_bleu`` / ``corpus_chrf`` with default settings
  (13a tokenisation; chrF with character 6-grams, beta 2), 0-100.
* ``wer`` / ``cer``: jiwer's corpus-level rates (total edits / total reference words or
  characters) after ``normalize_transcript`` on both sides, under the submission's
  normaliser: ``basic`` (mcval's, ``basic_normalize``) or ``whisper-english`` (transformers'
  ``EnglishTextNormalizer``, the one behind Whisper's published WERs, with Whisper's
  British → American spelling table from the ``whisper-normalizer`` package).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Hashable, Sequence

_APOSTROPHES = "'\u2019\u02bc"
_SPACES = re.compile(r"\s+")


def accuracy(predictions: Sequence[Hashable], references: Sequence[Hashable]) -> float:
    """Share of predictions equal to their reference."""
    _same_length(predictions, references)
    return sum(p == r for p, r in zip(predictions, references, strict=True)) / len(references)


def macro_f1(predictions: Sequence[Hashable], references: Sequence[Hashable]) -> float:
    """Unweighted mean of per-class F1 over the classes seen in references or predictions."""
    _same_length(predictions, references)
    true_pos: Counter[Hashable] = Counter()
    predicted: Counter[Hashable] = Counter(predictions)
    actual: Counter[Hashable] = Counter(references)
    for p, r in zip(predictions, references, strict=True):
        if p == r:
            true_pos[p] += 1
    classes = set(predicted) | set(actual)
    scores = []
    for c in classes:
        denominator = predicted[c] + actual[c]  # F1 = 2 TP / (2 TP + FP + FN)
        scores.append(2 * true_pos[c] / denominator if denominator else 0.0)
    return sum(scores) / len(scores)


def entity_scores(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Entity-level precision, recall and F1 (seqeval, conlleval chunking)."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    _same_length(predictions, references)
    y_true = [list(r) for r in references]
    y_pred = [list(p) for p in predictions]
    return {
        "entity_precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "entity_recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "entity_f1": float(f1_score(y_true, y_pred, zero_division=0)),
    }


def perplexity(total_nll: float, tokens: int) -> float:
    """Token-weighted perplexity from a summed negative log-likelihood (natural log)."""
    if tokens <= 0:
        raise ValueError("perplexity needs at least one scored token")
    return math.exp(total_nll / tokens)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (one reference per segment), 0-100."""
    import sacrebleu

    _same_length(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus chrF (one reference per segment), 0-100."""
    import sacrebleu

    _same_length(hypotheses, references)
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


def normalize_transcript(text: str, normalizer: str = "basic") -> str:
    """``text`` under the named normaliser (``mcval.metrics.NORMALIZERS``)."""
    return _NORMALIZERS[normalizer]()(text)


def basic_normalize(text: str) -> str:
    """The ``basic`` normaliser, mcval's own.

    NFKC Unicode normalisation; lower case; apostrophes removed (``don't`` → ``dont``);
    every other punctuation character (Unicode category P*, which includes ``%`` and ``&``)
    replaced by a space; runs of whitespace collapsed to one space, trimmed. Numbers are
    kept as written: ``7`` and ``seven`` differ, and ``3.5`` becomes ``3 5`` on both sides
    alike. Symbols (category S*: ``$``, ``+``) are kept.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(
        "" if ch in _APOSTROPHES else " " if unicodedata.category(ch).startswith("P") else ch
        for ch in text
    )
    return _SPACES.sub(" ", text).strip()


@functools.cache
def whisper_english() -> Callable[[str], str]:
    """transformers' ``EnglishTextNormalizer`` with Whisper's spelling table: lower case,
    bracketed and filler words (``uh``, ``[noise]``) dropped, contractions and numbers
    standardised (``twenty five`` → ``25``, ``$5`` → ``5 dollars``), British spellings
    Americanised, punctuation removed."""
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    table = importlib.resources.files("whisper_normalizer") / "normalizers" / "english.json"
    return EnglishTextNormalizer(json.loads(table.read_text(encoding="utf-8")))


_NORMALIZERS: dict[str, Callable[[], Callable[[str], str]]] = {
    "basic": lambda: basic_normalize,
    "whisper-english": whisper_english,
}


def error_rates(
    hypotheses: Sequence[str], references: Sequence[str], normalizer: str = "basic"
) -> dict[str, float]:
    """Corpus WER and CER (jiwer) of normalised hypotheses against normalised references.

    Every reference must be non-empty after normalisation (the caller names the row).
    """
    import jiwer

    _same_length(hypotheses, references)
    refs = [normalize_transcript(r, normalizer) for r in references]
    hyps = [normalize_transcript(h, normalizer) for h in hypotheses]
    if any(not r for r in refs):
        raise ValueError("a reference transcript is empty after normalisation")
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}


def _same_length(a: Sequence[object], b: Sequence[object]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} predictions for {len(b)} references")
    if not b:
        raise ValueError("nothing to score")
