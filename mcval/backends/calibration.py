"""Calibration inputs of static quantization: the first rows of the declared evaluation
slice, encoded one row per batch exactly as the task encodes them for quality."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcval.tasks.base import resolve_columns
from mcval.tasks.data import load_slice, media_columns, text_cell


def calibration_feeds(
    task: str, preprocessor: Any, config: Any, evaluation: Any, repo_root: Path, samples: int
) -> list[dict[str, Any]]:
    """Up to ``samples`` encoded rows (torch tensors by input name)."""
    from mcval.tasks.common import encode_batch, max_input_tokens

    columns = resolve_columns(task, evaluation.columns)
    data = load_slice(evaluation.dataset, repo_root, columns, media=media_columns(columns))
    rows = data.rows[:samples]
    if task == "image-classification":
        from mcval.tasks.image_classification import open_image

        return [
            dict(
                preprocessor(
                    images=[open_image(r, columns["image"], repo_root)], return_tensors="pt"
                )
            )
            for r in rows
        ]
    limit = max_input_tokens(preprocessor, config)
    if task == "causal-lm":
        limit = min(limit or 128, 128)
    feeds: list[dict[str, Any]] = []
    for row in rows:
        if task == "token-classification":
            words = [str(w) for w in row.values[columns["tokens"]]]
            encoded = encode_batch(preprocessor, limit, [words], is_split_into_words=True)
        else:
            encoded = encode_batch(preprocessor, limit, [text_cell(row, columns["text"], "text")])
        feeds.append(dict(encoded))
    return feeds
