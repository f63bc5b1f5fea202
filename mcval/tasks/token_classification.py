"""Token classification (NER with BERT-like models): entity-level precision, recall, F1.

Columns (roles): ``tokens`` (default ``tokens``, a list of words) and ``tags`` (default
``ner_tags``, one IOB tag per word: tag names, or ids of a ``ClassLabel`` sequence, mapped
to the model's labels with ``common.LabelMap``). Scoring is word-level: the words are
tokenised with ``is_split_into_words=True`` (right padding, attention masks, truncation to
the model's maximum length) and each word's predicted tag is the model's label of its
**first sub-token**. Words cut off by truncation are predicted ``O``. Entities are then
scored with seqeval (see ``scoring.entity_scores``).

Benchmark: ``{tokens: N}`` → a batch of ``benchmark.batch_size`` sequences of N seeded
token ids, one forward pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcval.tasks import scoring
from mcval.tasks.base import TaskDataError
from mcval.tasks.common import (
    EncoderHandler,
    EvalJob,
    LabelMap,
    argmax_batch,
    ensure_pad_token,
    load_tokenizer,
    max_input_tokens,
)
from mcval.tasks.data import Row, cell

TASK = "token-classification"
OUTSIDE = "O"


class TokenClassification(EncoderHandler):
    """Word-level tagging with ``AutoModelForTokenClassification``."""

    name = TASK
    auto_class = "AutoModelForTokenClassification"

    def load_preprocessor(
        self, source: str | Path, revision: str | None, gguf_file: str | None
    ) -> Any:
        tokenizer = load_tokenizer(source, revision, gguf_file)
        if getattr(tokenizer, "add_prefix_space", None) is False:
            # Byte-level BPE (RoBERTa, GPT-2) must see a space before each pre-split word.
            from transformers import AutoTokenizer

            kwargs: dict[str, Any] = {"revision": revision, "add_prefix_space": True}
            if gguf_file:
                kwargs["gguf_file"] = gguf_file
            tokenizer = AutoTokenizer.from_pretrained(str(source), **kwargs)
        return tokenizer

    def predict(
        self, model: Any, tokenizer: Any, sentences: list[list[str]], batch_size: int, device: str
    ) -> list[list[str]]:
        """Predicted tag names per word, ``batch_size`` sentences at a time."""
        ensure_pad_token(tokenizer, model)
        if not getattr(tokenizer, "is_fast", True):
            raise TaskDataError("token-classification needs a fast tokenizer (word alignment)")
        limit = max_input_tokens(tokenizer, model.config)
        id2label = {int(k): v for k, v in model.config.id2label.items()}
        predictions: list[list[str]] = [[OUTSIDE] * len(words) for words in sentences]
        todo = [i for i, words in enumerate(sentences) if words]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            words = [sentences[i] for i in chunk]
            encoded, best = argmax_batch(
                model, tokenizer, limit, device, words, is_split_into_words=True
            )
            for b, i in enumerate(chunk):
                seen: set[int] = set()
                for position, word in enumerate(encoded.word_ids(b)):
                    if word is None or word in seen:
                        continue
                    seen.add(word)
                    predictions[i][word] = id2label[best[b][position]]
        return predictions

    def score(self, model: Any, preprocessor: Any, job: EvalJob, device: str) -> dict[str, float]:
        """Entity-level scores of the first-sub-token tags against the mapped gold tags."""
        labels = LabelMap(model.config, job.data.label_names(job.columns["tags"]))
        sentences: list[list[str]] = []
        gold: list[list[str]] = []
        for row in job.data.rows:
            words, tags = _words_and_tags(row, job.columns)
            sentences.append(words)
            gold.append([labels.name(labels.model_id(t, row.where)) for t in tags])
        batch_size = job.evaluation.batch_size
        predicted = self.predict(model, preprocessor, sentences, batch_size, device)
        return scoring.entity_scores(predicted, gold)


def _words_and_tags(row: Row, columns: dict[str, str]) -> tuple[list[str], list[Any]]:
    words = cell(row, columns["tokens"])
    tags = cell(row, columns["tags"])
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise TaskDataError(f"{row.where}: column {columns['tokens']!r} must be a list of words")
    if not isinstance(tags, list):
        raise TaskDataError(f"{row.where}: column {columns['tags']!r} must be a list of tags")
    if len(words) != len(tags):
        raise TaskDataError(f"{row.where}: {len(words)} words but {len(tags)} tags")
    return words, tags
