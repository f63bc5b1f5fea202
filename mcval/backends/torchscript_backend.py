"""TorchScript: ``torch.jit.trace`` of the runner's own PyTorch model, on CPU or CUDA.

Only the runner traces: a TorchScript archive is a pickle-backed program, so one from a
student is never loaded (``mcval.runtimes.file_problem`` refuses it in ``mcval check``). The
traced module is timed as traced (not frozen); its size is its distinct tensors
(docs/measurement.md).

TorchScript's profiling executor profiles the first calls on a shape, then optimizes and
compiles fusion groups: on an H200 runner's CPU the 4th–6th calls of a tiny LLaMA took 22 ms
against 0.4 ms afterwards, past the protocol's default 3 warm-up calls. The runtime asks for
``WARMUP_CALLS`` warm-up calls so the timed window starts on the optimized graph.
"""

from __future__ import annotations

import warnings
from typing import Any

from mcval.backends.base import (
    ConvertRequest,
    LogitsOnly,
    RuntimeModel,
    WeightCount,
    example_inputs,
    graph_inputs,
)

RUNTIME = "torchscript"
OWN_THREAD_POOL = False  # the traced module runs on torch's own intra-op pool
WARMUP_CALLS = 10
"""At least this many warm-up calls (profiling runs, then optimization and fusion compiles)."""


def traced_weight_count(module: Any) -> WeightCount:
    """Distinct tensor storages of the traced module (parameters and buffers), each once."""
    count = WeightCount()
    seen: set[tuple[str, int]] = set()
    tensors = [t for _, t in module.named_parameters()] + [t for _, t in module.named_buffers()]
    for t in tensors:
        key = (str(t.device), t.untyped_storage().data_ptr())
        if key in seen:
            continue
        seen.add(key)
        count.add(str(t.dtype).removeprefix("torch."), t.untyped_storage().nbytes(), t.numel())
    return count


def convert(request: ConvertRequest) -> RuntimeModel:
    """Trace the model with small example inputs (batch and sequence stay free)."""
    import torch

    names = graph_inputs(request.task, request.accepted)
    wrapper = LogitsOnly(request.model, names).eval()
    args = tuple(a.to(request.device) for a in example_inputs(request.task, names, request.config))
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, args, strict=False, check_trace=False)
    traced.eval()
    count = traced_weight_count(traced)
    device = torch.device(request.device)

    def run(feed: dict[str, Any]) -> Any:
        with torch.inference_mode():
            return traced(*(feed[n].to(device) for n in names)).float()

    model = RuntimeModel(
        RUNTIME, run, names, request.config, count.report([]), [], traced, torch_inputs=True
    )
    model.min_warmup_calls = WARMUP_CALLS
    return model
