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

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mcval.tasks import scoring
from mcval.tasks.base import resolve_columns, resolve_metrics
from mcval.tasks.common import (
    HandlerBase,
    LabelMap,
    ensure_pad_token,
    forward_logits_call,
    max_input_tokens,
    to_device,
)
from mcval.tasks.data import cell, load_slice, text_cell

if TYPE_CHECKING:
    from mcval.submission.schema import Benchmark, Evaluation

TASK = "text-classification"


class TextClassification(HandlerBase):
    """Sequence classification with ``AutoModelForSequenceClassification``."""

    name = TASK
    auto_class = "AutoModelForSequenceClassification"

    def benchmark_call(
        self, model: Any, preprocessor: Any, benchmark: Benchmark, device: str
    ) -> Callable[[], Any]:
        return forward_logits_call(TASK, model, preprocessor, benchmark, device)

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
            encoded = tokenizer(
                chunk,
                pair,
                padding=True,
                truncation=limit is not None,
                max_length=limit,
                return_tensors="pt",
            )
            with torch.inference_mode():
                logits = model(**to_device(encoded, model, device)).logits
            predictions.extend(int(i) for i in logits.argmax(dim=-1).tolist())
        return predictions

    def evaluate(
        self,
        model: Any,
        preprocessor: Any,
        evaluation: Evaluation,
        repo_root: Path,
        device: str,
    ) -> dict[str, float]:
        metrics = resolve_metrics(TASK, evaluation.metrics)
        columns = resolve_columns(TASK, evaluation.columns)
        data = load_slice(evaluation.dataset, repo_root, columns)
        labels = LabelMap(model.config, data.label_names(columns["label"]))
        texts = [text_cell(r, columns["text"], "text") for r in data.rows]
        pairs = (
            [text_cell(r, columns["text_pair"], "text_pair") for r in data.rows]
            if "text_pair" in columns
            else None
        )
        gold = [labels.model_id(cell(r, columns["label"]), r.where) for r in data.rows]
        predicted = self.predict(model, preprocessor, texts, pairs, evaluation.batch_size, device)
        values = {
            "accuracy": scoring.accuracy(predicted, gold),
            "macro_f1": scoring.macro_f1(predicted, gold),
        }
        return {m: values[m] for m in metrics}
