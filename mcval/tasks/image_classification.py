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
from mcval.tasks.base import TaskDataError, benchmark_input
from mcval.tasks.common import (
    BENCHMARK_SEED,
    EvalJob,
    HandlerBase,
    LabelMap,
    batch_logits,
    forward_call,
    to_device,
)
from mcval.tasks.data import Row, cell, media_source

if TYPE_CHECKING:
    from mcval.submission.schema import Benchmark

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
    preprocessor_class = "AutoImageProcessor"

    def benchmark_call(
        self, model: Any, preprocessor: Any, benchmark: Benchmark, device: str
    ) -> Callable[[], Any]:
        size = int(benchmark_input(TASK, benchmark)["image_size"])
        channels = int(getattr(model.config, "num_channels", 3) or 3)
        generator = torch.Generator().manual_seed(BENCHMARK_SEED)
        pixels = torch.randn((benchmark.batch_size, channels, size, size), generator=generator)
        return forward_call(model, to_device({"pixel_values": pixels}, model, device))

    def check_metrics(self, model: Any, metrics: list[str]) -> None:
        """Top-5 accuracy is meaningless with fewer than 5 classes."""
        classes = int(model.config.num_labels)
        if "top5_accuracy" in metrics and classes < 5:
            raise TaskDataError(f"top5_accuracy needs at least 5 classes; the model has {classes}")

    def score(self, model: Any, preprocessor: Any, job: EvalJob, device: str) -> dict[str, float]:
        """Top-1 and top-5 accuracy of the logits against the mapped gold labels."""
        data, columns, batch_size = job.data, job.columns, job.evaluation.batch_size
        labels = LabelMap(model.config, data.label_names(columns["label"]))
        gold = [labels.model_id(cell(r, columns["label"]), r.where) for r in data.rows]
        top1: list[int] = []
        top5_hits: list[bool] = []
        k = min(5, int(model.config.num_labels))
        for start in range(0, len(data.rows), batch_size):
            rows = data.rows[start : start + batch_size]
            images = [open_image(r, columns["image"], data.repo_root) for r in rows]
            encoded = preprocessor(images=images, return_tensors="pt")
            logits = batch_logits(model, encoded, device)
            best = logits.topk(k, dim=-1).indices.tolist()
            for offset, candidates in enumerate(best):
                top1.append(int(candidates[0]))
                top5_hits.append(gold[start + offset] in candidates)
        return {
            "accuracy": scoring.accuracy(top1, gold),
            "top5_accuracy": sum(top5_hits) / len(top5_hits),
        }
