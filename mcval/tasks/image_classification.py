"""Image classification (ViT, ResNet, ConvNeXt...): top-1 accuracy, top-5 accuracy.

Columns (roles): ``image`` (default ``image``: a path relative to the data file for local
data, or a hub ``Image`` feature, read undecoded) and ``label`` (default ``label``, mapped
to the model's classes with ``common.LabelMap``). Images are opened with Pillow, converted
to RGB and prepared by the model's image processor per batch. ``top5_accuracy`` counts a
hit when the label is among the 5 highest logits; it needs at least 5 classes.

Benchmark: ``{image_size: S}`` → a seeded standard-normal ``batch_size × C × S × S``
pixel tensor (C = ``config.num_channels``, default 3), one forward pass.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mcval.tasks import scoring
from mcval.tasks.base import TaskDataError, benchmark_input, resolve_columns, resolve_metrics
from mcval.tasks.common import (
    BENCHMARK_SEED,
    HandlerBase,
    LabelMap,
    to_device,
)
from mcval.tasks.data import Row, cell, load_slice, media_source

if TYPE_CHECKING:
    from mcval.submission.schema import Benchmark, Evaluation

TASK = "image-classification"


def open_image(row: Row, column: str, repo_root: Path) -> Any:
    """The row's image as an RGB Pillow image; ``TaskDataError`` naming the row."""
    from PIL import Image

    source = media_source(row, column, repo_root)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return image.convert("RGB")
    except Exception as exc:  # Pillow raises several types for bad files
        raise TaskDataError(f"{row.where}: cannot read the image: {exc}") from exc


class ImageClassification(HandlerBase):
    """Image classification with ``AutoModelForImageClassification``."""

    name = TASK
    auto_class = "AutoModelForImageClassification"

    def load_preprocessor(
        self, source: str | Path, revision: str | None, gguf_file: str | None
    ) -> Any:
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(
            str(source), revision=revision, trust_remote_code=False
        )

    def benchmark_call(
        self, model: Any, preprocessor: Any, benchmark: Benchmark, device: str
    ) -> Callable[[], Any]:
        size = int(benchmark_input(TASK, benchmark)["image_size"])
        channels = int(getattr(model.config, "num_channels", 3) or 3)
        generator = torch.Generator().manual_seed(BENCHMARK_SEED)
        pixels = torch.randn((benchmark.batch_size, channels, size, size), generator=generator)
        inputs = to_device({"pixel_values": pixels}, model, device)

        def call() -> Any:
            with torch.inference_mode():
                return model(**inputs).logits

        return call

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
        classes = int(model.config.num_labels)
        if "top5_accuracy" in metrics and classes < 5:
            raise TaskDataError(f"top5_accuracy needs at least 5 classes; the model has {classes}")
        data = load_slice(evaluation.dataset, repo_root, columns, media={columns["image"]: "image"})
        labels = LabelMap(model.config, data.label_names(columns["label"]))
        gold = [labels.model_id(cell(r, columns["label"]), r.where) for r in data.rows]
        top1: list[int] = []
        top5_hits: list[bool] = []
        k = min(5, classes)
        for start in range(0, len(data.rows), evaluation.batch_size):
            rows = data.rows[start : start + evaluation.batch_size]
            images = [open_image(r, columns["image"], data.repo_root) for r in rows]
            encoded = preprocessor(images=images, return_tensors="pt")
            with torch.inference_mode():
                logits = model(**to_device(encoded, model, device)).logits
            best = logits.topk(k, dim=-1).indices.tolist()
            for offset, candidates in enumerate(best):
                top1.append(int(candidates[0]))
                top5_hits.append(gold[start + offset] in candidates)
        values = {
            "accuracy": scoring.accuracy(top1, gold),
            "top5_accuracy": sum(top5_hits) / len(top5_hits),
        }
        return {m: values[m] for m in metrics}
