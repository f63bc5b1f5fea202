"""Text classification (BERT, DistilBERT...): accuracy and macro-F1.

Columns (roles): ``text`` (default ``text``), ``label`` (default ``label``) and, for
sentence-pair tasks, ``text_pair`` when mapped in ``evaluation.columns``. Labels are mapped
to the model's classes with ``common.LabelMap``. Inputs are tokenised per batch with
right padding and attention masks, truncated to the model's maximum length; the predicted
class is the argmax of the logits.

Benchmark: ``{tokens: N}`` → a batch of ``benchmark.batch_size`` sequences of N seeded
ordinary token ids (all attended), one forward pass.
"""

from __future__ import annotations

from typing import Any

from mcval.tasks import scoring
from mcval.tasks.common import (
    EncoderHandler,
    EvalJob,
    LabelMap,
    argmax_batch,
    ensure_pad_token,
    max_input_tokens,
)
from mcval.tasks.data import cell, text_cell

TASK = "text-classification"


class TextClassification(EncoderHandler):
    """Sequence classification with ``AutoModelForSequenceClassification``."""

    name = TASK
    auto_class = "AutoModelForSequenceClassification"

    def predict(
        self,
        model: Any,
        tokenizer: Any,
        texts: list[str],
        pairs: list[str] | None,
        batch_size: int,
        device: str,
    ) -> list[int]:
        """Predicted class ids, ``batch_size`` texts at a time."""
        ensure_pad_token(tokenizer, model)
        limit = max_input_tokens(tokenizer, model.config)
        predictions: list[int] = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            pair = pairs[start : start + batch_size] if pairs is not None else None
            _, best = argmax_batch(model, tokenizer, limit, device, chunk, pair)
            predictions.extend(int(i) for i in best)
        return predictions

    def score(self, model: Any, preprocessor: Any, job: EvalJob, device: str) -> dict[str, float]:
        """Accuracy and macro-F1 of the argmax class against the mapped gold labels."""
        rows, columns = job.data.rows, job.columns
        labels = LabelMap(model.config, job.data.label_names(columns["label"]))
        texts = [text_cell(r, columns["text"], "text") for r in rows]
        pairs = (
            [text_cell(r, columns["text_pair"], "text_pair") for r in rows]
            if "text_pair" in columns
            else None
        )
        gold = [labels.model_id(cell(r, columns["label"]), r.where) for r in rows]
        batch_size = job.evaluation.batch_size
        predicted = self.predict(model, preprocessor, texts, pairs, batch_size, device)
        return {
            "accuracy": scoring.accuracy(predicted, gold),
            "macro_f1": scoring.macro_f1(predicted, gold),
        }
