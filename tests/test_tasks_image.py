"""Image classification (tiny ViT): top-1 / top-5 accuracy by hand, batched = one-by-one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mcval.submission.schema import Benchmark, Evaluation
from mcval.tasks import get_task
from mcval.tasks.base import TaskDataError
from tests.tiny_models import build_tiny_vit

IMG = get_task("image-classification")
ANIMALS = ("cat", "dog", "bird", "fish", "frog", "horse")


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    path = build_tiny_vit(tmp_path_factory.mktemp("vit"), labels=ANIMALS)
    return IMG.model_class().from_pretrained(path).eval(), IMG.load_preprocessor(path, None, None)


@pytest.fixture()
def image_repo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    (tmp_path / "img" / "pics").mkdir(parents=True)
    for i in range(14):
        size = (20 + 3 * i, 28 + i)  # different sizes: the processor resizes
        pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        mode = "L" if i % 5 == 0 else "RGB"  # grey images are converted to RGB
        Image.fromarray(pixels).convert(mode).save(tmp_path / "img" / "pics" / f"{i}.png")
        rows.append({"image": f"pics/{i}.png", "label": ANIMALS[(i * 5) % 6]})
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "img" / "eval.jsonl").write_text(lines, encoding="utf-8")
    return tmp_path


def evaluation(**fields: Any) -> Evaluation:
    fields.setdefault("dataset", {"path": "json", "data_files": ["img/eval.jsonl"]})
    return Evaluation.model_validate(fields)


def test_top1_and_top5_equal_hand_computation(vit: tuple[Any, Any], image_repo: Path) -> None:
    model, processor = vit
    rows = [json.loads(x) for x in (image_repo / "img" / "eval.jsonl").read_text().splitlines()]
    top1 = top5 = 0
    for row in rows:
        image = Image.open(image_repo / "img" / row["image"]).convert("RGB")
        with torch.no_grad():
            logits = model(**processor(images=image, return_tensors="pt")).logits[0]
        order = logits.argsort(descending=True).tolist()
        gold = ANIMALS.index(row["label"])
        top1 += order[0] == gold
        top5 += gold in order[:5]
    metrics = ["accuracy", "top5_accuracy"]
    result = IMG.evaluate(
        model, processor, evaluation(metrics=metrics, batch_size=4), image_repo, "cpu"
    )
    assert result == {"accuracy": top1 / len(rows), "top5_accuracy": top5 / len(rows)}
    single = IMG.evaluate(
        model, processor, evaluation(metrics=metrics, batch_size=1), image_repo, "cpu"
    )
    assert single == result


def test_broken_image_names_the_row(vit: tuple[Any, Any], image_repo: Path) -> None:
    model, processor = vit
    (image_repo / "img" / "pics" / "bad.png").write_bytes(b"not a png")
    (image_repo / "img" / "eval.jsonl").write_text(
        json.dumps({"image": "pics/0.png", "label": "cat"})
        + "\n"
        + json.dumps({"image": "pics/bad.png", "label": "cat"})
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(TaskDataError, match=r"^img/eval.jsonl row 2: cannot read the image: "):
        IMG.evaluate(model, processor, evaluation(), image_repo, "cpu")


def test_top5_needs_five_classes(tmp_path: Path, image_repo: Path) -> None:
    path = build_tiny_vit(tmp_path / "vit3", labels=("a", "b", "c"))
    model = IMG.model_class().from_pretrained(path).eval()
    processor = IMG.load_preprocessor(path, None, None)
    with pytest.raises(TaskDataError) as err:
        IMG.evaluate(model, processor, evaluation(metrics=["top5_accuracy"]), image_repo, "cpu")
    assert str(err.value) == "top5_accuracy needs at least 5 classes; the model has 3"


def test_image_benchmark_is_a_seeded_tensor(vit: tuple[Any, Any]) -> None:
    model, processor = vit
    bench = Benchmark.model_validate({"batch_size": 2, "input": {"image_size": 32}})
    first = IMG.benchmark_call(model, processor, bench, "cpu")()
    assert first.shape == (2, len(ANIMALS))
    assert torch.equal(first, IMG.benchmark_call(model, processor, bench, "cpu")())
