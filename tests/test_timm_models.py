"""timm image classifiers (``model.library: timm``), built from their configs offline.

They run in .venv-vision (``make test``; timm needs torchvision, which needs CUDA torch):
loaded from safetensors with timm's own registry and eval transforms, measured on all four
runtimes with identical accuracy, sized like any checkpoint, and a repository's
``config.json`` never reaches timm's own file loading (``checkpoint_path`` is a pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tiny_models import QUICK_MEASURE_TOML, measure_json, write_submission

from mcval.cli import main

pytestmark = pytest.mark.timm
RUNTIMES = ("pytorch", "torchscript", "onnxruntime", "openvino")
ANIMALS = ("cat", "dog", "bird", "fish", "frog", "horse")
MIB = 2**20


def save_classifier(directory: Path, arch: str, **kwargs: Any) -> Any:
    """A timm classifier built from its config (no download), saved as a timm hub repo."""
    import timm
    import torch

    from mcval.models.timm_loading import save_timm

    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=len(ANIMALS), **kwargs).eval()
    save_timm(model, directory, list(ANIMALS))
    return model


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("timm")
    (root / ".git").mkdir()
    (root / "mcval.toml").write_text(QUICK_MEASURE_TOML, encoding="utf-8")
    save_classifier(root / "models" / "effnet", "test_efficientnet")
    rng = np.random.default_rng(0)
    pics = root / "data" / "pics"
    pics.mkdir(parents=True)
    rows = []
    for i in range(6):
        pixels = rng.integers(0, 256, size=(150 + 7 * i, 170 - 5 * i, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(pics / f"{i}.png")
        rows.append({"image": f"pics/{i}.png", "label": ANIMALS[i % 6]})
    (root / "data" / "img.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def submission(repo: Path, model: str, runtime: str, name: str, size: int = 160) -> Path:
    doc = {
        "schema": 1,
        "team": "team",
        "model": {
            "id": f"./models/{model}",
            "task": "image-classification",
            "library": "timm",
            "runtime": runtime,
        },
        "method": {"name": "FP32"},
        "evaluation": {
            "dataset": {"path": "json", "data_files": ["data/img.jsonl"]},
            "batch_size": 3,
        },
        "benchmark": {"input": {"image_size": size}},
    }
    return write_submission(repo, "team", f"{name}-{runtime}", doc)


@pytest.mark.slow
def test_a_timm_model_measures_the_same_on_all_four_runtimes(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import timm

    monkeypatch.chdir(repo)
    results = {r: measure_json(submission(repo, "effnet", r, "effnet"), capsys) for r in RUNTIMES}
    reference = results["pytorch"]
    assert set(reference["quality"]) == {"accuracy"}
    for runtime, measured in results.items():
        assert measured["quality"]["accuracy"] == pytest.approx(
            reference["quality"]["accuracy"], abs=1e-9
        ), runtime
        assert measured["latency_cpu_ms"] > 0, runtime
    # PyTorch's size is the parameters' bytes: the same model built again, counted directly.
    rebuilt = timm.create_model("test_efficientnet", num_classes=len(ANIMALS))
    expected = sum(t.numel() * t.element_size() for t in rebuilt.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in rebuilt.parameters())
    assert params <= reference["weights_mb"] * MIB <= expected + 1
    # Every exported runtime keeps the weights at fp32: within a few per cent of PyTorch
    # (export folds batch norms into the convolutions, so counts differ slightly).
    for runtime in ("torchscript", "onnxruntime", "openvino"):
        ratio = results[runtime]["weights_mb"] / reference["weights_mb"]
        assert 0.9 < ratio < 1.1, (runtime, ratio)


def test_inputs_are_prepared_by_timms_own_eval_transform(repo: Path) -> None:
    """The pixels the task feeds are exactly timm's eval transform of the image (resize by
    crop_pct, centre crop, the model's mean/std), not transformers' processor."""
    import timm
    import torch
    from PIL import Image

    from mcval.models.timm_loading import load_timm
    from mcval.policy import Policy

    spec = type("Spec", (), {"id": "./models/effnet", "revision": None})()
    loaded = load_timm(spec, repo, "cpu", Policy())
    image = Image.open(repo / "data" / "pics" / "3.png").convert("RGB")
    fed = loaded.preprocessor([image])["pixel_values"]
    model = timm.create_model("test_efficientnet", num_classes=len(ANIMALS))
    cfg = timm.data.resolve_data_config({}, model=model)
    own = timm.data.create_transform(**cfg, is_training=False)(image)
    assert fed.shape == (1, *cfg["input_size"])
    assert torch.equal(fed[0], own)
    assert loaded.config.id2label == dict(enumerate(ANIMALS))
    assert loaded.config.image_size == cfg["input_size"][-1]


def _copy_with_config(repo: Path, name: str, **changes: Any) -> Path:
    import shutil

    source = repo / "models" / "effnet"
    target = repo / "models" / name
    shutil.copytree(source, target, dirs_exist_ok=True)
    config = json.loads((source / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return target


def _check_refuses(
    repo: Path, model: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> str:
    monkeypatch.chdir(repo)
    sub = submission(repo, model, "pytorch", model)
    capsys.readouterr()
    rc = main(["measure", str(sub), "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 2, captured.out + captured.err
    return " ".join((captured.out + captured.err).split())  # rich wraps long lines


def test_model_args_cannot_make_timm_open_a_pickle(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``checkpoint_path`` would make timm ``torch.load`` a file (pickle: code execution).
    The pickle here would write a marker file if it ever ran."""
    import pickle

    marker = repo / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.write_text, (marker, "ran"))

    evil = repo / "models" / "evil.pth"
    evil.write_bytes(pickle.dumps(Payload()))
    _copy_with_config(repo, "hostile", model_args={"checkpoint_path": str(evil)})
    out = _check_refuses(repo, "hostile", capsys, monkeypatch)
    assert "model_args sets 'checkpoint_path'" in out
    assert not marker.exists()


def test_an_architecture_timm_does_not_know_is_refused(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy_with_config(repo, "unknown", architecture="hf-hub:someone/remote_code")
    out = _check_refuses(repo, "unknown", capsys, monkeypatch)
    assert "names no timm architecture timm knows ('hf-hub:someone/remote_code')" in out


def test_weights_that_do_not_fit_the_architecture_are_refused(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy_with_config(repo, "mismatch", num_classes=4, label_names=list(ANIMALS[:4]))
    out = _check_refuses(repo, "mismatch", capsys, monkeypatch)
    assert "timm could not build 'test_efficientnet' from the checkpoint" in out


@pytest.mark.slow
def test_efficientvit_logits_agree_across_runtimes(tmp_path: Path) -> None:
    """The course's efficientvit family (b0 here, b3 in the 2025 table), built from its
    config: each exported runtime returns PyTorch's logits on the same pixels, so equal
    accuracy above is not a coincidence of a random classifier."""
    import importlib

    import torch

    from mcval.backends.base import ConvertRequest
    from mcval.models.timm_loading import load_timm
    from mcval.policy import Policy

    save_classifier(tmp_path / "evit", "efficientvit_b0")
    spec = type("Spec", (), {"id": "./evit", "revision": None})()
    loaded = load_timm(spec, tmp_path, "cpu", Policy())
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = loaded.model(pixel_values=pixels).logits
    assert expected.shape == (2, len(ANIMALS))
    for runtime in ("torchscript", "onnxruntime", "openvino"):
        backend = importlib.import_module(f"mcval.backends.{runtime}_backend")
        (tmp_path / runtime).mkdir()
        converted = backend.convert(
            ConvertRequest(
                task="image-classification",
                model=loaded.model,
                config=loaded.config,
                accepted={"pixel_values"},
                workdir=tmp_path / runtime,
                threads=1,
                device="cpu",
            )
        )
        logits = converted(pixel_values=pixels).logits
        torch.testing.assert_close(logits, expected, rtol=1e-3, atol=1e-4, msg=runtime)
        assert converted.size.weights_mb == pytest.approx(8.17, abs=0.06), runtime
