"""What a measuring child does for one device: load, apply the recipe, time, read memory,
count the weights, evaluate quality (see measurement.py for the order of devices).

Runs inside ``python -m mcval.measure.child`` (fresh process, CUDA hidden for CPU). The order
is deliberate: the RSS baseline is taken after every import, the memory peak is read right
after the timed calls (before the weight count and the evaluation, whose temporaries are not
the model's), and quality comes last so a failing dataset cannot cost the timing figures.
"""

from __future__ import annotations

import contextlib
import importlib
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mcval.measure.environment import Environment, collect_environment
from mcval.measure.latency import LatencyStats, Stability, measure_latency
from mcval.measure.memory import (
    PeakRSS,
    RamStats,
    VramStats,
    end_vram_load_window,
    read_vram,
    reset_vram,
)
from mcval.measure.size import SizeReport, measure_size
from mcval.models.inspection import ModelInspection

Progress = Callable[[str], None]


class WorkerRequest(BaseModel):
    """Everything one device's child needs, as plain JSON (the child re-validates it)."""

    submission_json: str = Field(description="Submission.model_dump_json(by_alias=True)")
    submission_id: str
    repo_root: str
    policy_json: str
    device: str
    quality: bool
    threads: int
    seed: int = 0


class StepError(BaseModel):
    """A failure the child caught itself (so the other figures survive)."""

    stage: str
    exc_type: str
    message: str
    field: list[str | int] | None = Field(
        default=None, description="submission field it concerns (InputError.field)"
    )


class DeviceResult(BaseModel):
    """Figures of one device, as returned by the child."""

    device: str
    not_applicable: str | None = None
    input_error: StepError | None = Field(
        default=None, description="the submission's model/recipe cannot be used"
    )
    runner_error: StepError | None = Field(
        default=None,
        description="this machine could not do its part (the hub unreachable): re-run",
    )
    size: SizeReport | None = None
    latency: LatencyStats | None = None
    ram: RamStats | None = None
    vram: VramStats | None = None
    quality: dict[str, float] = Field(default_factory=dict)
    quality_error: StepError | None = None
    quality_computed: bool = False
    quality_details: dict[str, Any] = Field(
        default_factory=dict, description="how quality was computed (tasks.base.Scores)"
    )
    environment: Environment | None = None
    source: str | None = Field(default=None, description="resolved model directory / hub id")
    gguf: bool = False
    inspection: ModelInspection | None = Field(
        default=None, description="mcval.models.ModelInspection of the measured model"
    )
    recipe_applied: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    timings_s: dict[str, float] = Field(
        default_factory=dict, description="load, benchmark (warm-up + timed), size, quality"
    )


def _not_applicable_reason(exc: BaseException) -> str | None:
    """Reason text if ``exc`` is the models area's NotApplicableError."""
    if type(exc).__name__ == "NotApplicableError":
        return str(getattr(exc, "reason", None) or exc)
    return None


def _step_error(stage: str, exc: BaseException) -> StepError:
    field = getattr(exc, "field", None)
    message = str(getattr(exc, "message", None) or exc)
    return StepError(
        stage=stage,
        exc_type=type(exc).__name__,
        message=message,
        field=list(field) if isinstance(field, (tuple, list)) else None,
    )


def seed_everything(seed: int) -> None:
    """Fixed seeds: the benchmark input and any sampling are the same every run."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy ships with torch here
        pass


def quiet_torch_threads(runtime: str) -> None:
    """A runtime with its own thread pool (ONNX Runtime, OpenVINO, llama.cpp: its backend's
    ``OWN_THREAD_POOL``) must not share the cores with torch's: after any parallel torch op
    (the export, the task's tensors) torch's OpenMP threads spin-wait, and on 2 cores that
    slowed an ONNX Runtime call 21 -> 47 ms (bench/bench_runtimes.py). torch keeps one
    thread for the task's small ops; TorchScript runs on torch's pool, so it keeps the
    protocol's threads."""
    from mcval.backends import own_thread_pool

    if not own_thread_pool(runtime):
        return
    import torch

    torch.set_num_threads(1)


def set_threads(threads: int) -> int:
    """Fix torch's thread pools before any parallel work; returns the intra-op count."""
    import torch

    torch.set_num_threads(threads)
    # Fails once parallel work has run; intra-op threads are what the timed calls use.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return torch.get_num_threads()


def measure_device(payload: dict[str, Any], progress: Progress) -> DeviceResult:
    """Child entry point (``mcval.measure.device_job:measure_device``)."""
    import torch

    from mcval.policy import Policy
    from mcval.submission.schema import Submission

    req = WorkerRequest.model_validate(payload)
    threads = set_threads(req.threads)
    seed_everything(req.seed)
    policy = Policy.model_validate_json(req.policy_json)
    sub = Submission.model_validate_json(req.submission_json)
    repo_root = Path(req.repo_root)
    device = req.device
    is_cuda = torch.device(device).type == "cuda"
    # The loading and task APIs are looked up on their modules at call time (a test's
    # monkeypatch on mcval.models / mcval.tasks reaches a LocalForkLauncher child).
    models = importlib.import_module("mcval.models")
    tasks = importlib.import_module("mcval.tasks")
    result = DeviceResult(device=device)
    nvml_baseline: int | None = None
    mp = policy.measure

    task = tasks.get_task(sub.model.task)
    model_class = task.model_class()
    if is_cuda:
        if not torch.cuda.is_available():
            result.not_applicable = "no CUDA device is available to the measuring process"
            return result
        torch.cuda.init()
        reset_vram(device)
        nvml_baseline = _nvml_baseline(sub.model.runtime, device)

    backends = importlib.import_module("mcval.backends")
    steps, runtime_steps = backends.split_recipe(sub.method.recipe)
    load_kwargs: dict[str, Any] = {}
    if steps:
        # Before loading: a step this device cannot run makes it "not applicable" without
        # loading anything; a bitsandbytes step becomes the load-time quantization_config.
        try:
            plan = models.plan_recipe(steps, device)
        except Exception as exc:
            if _is_input_error(exc):
                result.input_error = _step_error("recipe", exc)
                return result
            raise
        if plan.not_applicable:
            result.not_applicable = plan.not_applicable
            return result
        if plan.quantization_config is not None:
            load_kwargs["quantization_config"] = plan.quantization_config

    _import_model_module(sub.model, repo_root, model_class)
    tracker = PeakRSS()
    tracker.start()
    t0 = time.perf_counter()
    try:
        progress("loading model")
        loaded = _load(models, sub.model, repo_root, device, policy, model_class, load_kwargs)
        model = loaded.model
        result.source = str(loaded.source)
        result.gguf = getattr(loaded, "gguf_file", None) is not None
        result.warnings.extend(str(w) for w in getattr(loaded, "warnings", []) or [])
        if steps:
            progress("applying recipe")
            recipe = models.apply_recipe(model, steps, device)
            if recipe.not_applicable:
                result.not_applicable = recipe.not_applicable
                tracker.stop()
                return result
            model = recipe.model
            # A step that built a new module (dynamic int8 copies the model) must not leave
            # the fp32 original alive: the inference window would charge it to this row.
            loaded.model = model
            result.recipe_applied = [str(a) for a in recipe.applied]
        if hasattr(model, "eval"):
            model.eval()
        progress("loading preprocessor")
        preprocessor = getattr(loaded, "preprocessor", None) or task.load_preprocessor(
            loaded.source, sub.model.revision, sub.model.gguf_file
        )
        if sub.model.runtime != "pytorch":
            progress(f"converting to {sub.model.runtime}")
            model = backends.to_runtime(
                sub, model, loaded.config, preprocessor, repo_root, device, threads,
                runtime_steps, **loaded.artefact,
            )  # fmt: skip
            loaded.model = model  # the PyTorch module is freed before the inference window
            result.recipe_applied += model.notes
            quiet_torch_threads(sub.model.runtime)
    except Exception as exc:
        tracker.stop()
        reason = _not_applicable_reason(exc)
        if reason is not None:
            result.not_applicable = reason
            return result
        if _is_input_error(exc):
            result.input_error = _step_error("load", exc)
            return result
        if _is_runner_error(exc):
            # The whole sentence (who is at fault, re-run), not only the cause.
            result.runner_error = _step_error("load", exc).model_copy(update={"message": str(exc)})
            return result
        raise
    result.timings_s["load"] = time.perf_counter() - t0
    # The load window ends here: its peak is kept apart, inference gets a window of its own.
    tracker.new_window()
    vram_load_peak = end_vram_load_window(device) if is_cuda else None

    progress("building benchmark input")
    t1 = time.perf_counter()
    try:
        call = task.benchmark_call(model, preprocessor, sub.benchmark, device)
        note = getattr(call, "note", None)  # mcval chose the input (tasks.base.NotedCall)
        result.warnings += [note] if note else []
    except Exception as exc:
        if _is_input_error(exc):  # e.g. more benchmark tokens than the model takes
            tracker.stop()
            result.input_error = _step_error("benchmark", exc)
            if result.input_error.field is None:
                result.input_error.field = ["benchmark", "input"]
            return result
        raise
    # A runtime that compiles during its first calls (TorchScript) asks for more warm-up.
    warmup_calls = max(mp.warmup_calls, getattr(model, "min_warmup_calls", 0))
    progress(
        f"timing ({warmup_calls} warm-up, then >= {mp.min_calls} calls and "
        f">= {mp.min_seconds:g} s, {threads} threads)"
    )
    result.latency = measure_latency(
        call,
        warmup_calls=warmup_calls,
        min_calls=mp.min_calls,
        min_seconds=mp.min_seconds,
        max_seconds=mp.max_seconds,
        device=device,
        before_timed=tracker.pause,
        stability=Stability(
            max_other_load=mp.max_other_load,
            max_spread=mp.max_spread,
            attempts=mp.stable_attempts,
            pause_s=mp.unstable_pause_s,
        ),
    )
    result.timings_s["benchmark"] = time.perf_counter() - t1
    result.ram = tracker.stats()
    tracker.stop()
    if is_cuda and sub.model.runtime in NVML_RUNTIMES:  # their own CUDA memory: NVML
        result.vram = importlib.import_module("mcval.backends.gpu_memory").nvml_vram(
            device, nvml_baseline
        )
    elif is_cuda:
        result.vram = read_vram(device, vram_load_peak)
    del call

    progress("counting weights")
    t2 = time.perf_counter()
    if sub.model.runtime != "pytorch":
        result.size = model.size  # counted from the converted graph (docs/measurement.md)
        if getattr(model, "inspection", None) is not None:  # its stored dtypes, for claims
            result.inspection = ModelInspection.model_validate(
                model.inspection.model_dump(mode="json")
            )
    else:
        result.size = measure_size(model, getattr(loaded, "files", None))
        result.inspection = ModelInspection.model_validate(
            models.inspect_model(model).model_dump(mode="json")
        )
    result.timings_s["size"] = time.perf_counter() - t2

    if req.quality:
        progress("evaluating quality")
        t3 = time.perf_counter()
        try:
            with torch.inference_mode():
                values = task.evaluate(model, preprocessor, sub.evaluation, repo_root, device)
            result.quality = dict(values)
            result.quality_details = dict(getattr(values, "details", {}))
            result.quality_computed = True
        except Exception as exc:
            result.quality_error = _step_error("quality", exc)
        result.timings_s["quality"] = time.perf_counter() - t3
    result.environment = collect_environment(use_torch_cuda=is_cuda, threads=threads)
    return result


NVML_RUNTIMES = ("onnxruntime", "llama.cpp")
"""Runtimes whose GPU memory torch's allocator does not see (``backends.gpu_memory``)."""


def _nvml_baseline(runtime: str, device: str) -> int | None:
    """ONNX Runtime's and llama.cpp's VRAM is read from NVML: this process's use before
    loading."""
    if runtime not in NVML_RUNTIMES:
        return None
    return importlib.import_module("mcval.backends.gpu_memory").process_vram_bytes(device)


def _load(
    models: Any, spec: Any, repo_root: Path, device: str, policy: Any, cls: type, kwargs: Any
) -> Any:
    """The checkpoint: transformers (``models.load_model``), timm, or a shipped artefact;
    ``config`` and ``artefact`` are what a runtime conversion needs."""
    if spec.runtime == "llama.cpp":  # the GGUF itself, validated; llama.cpp opens it later
        from mcval.backends.llamacpp_backend import load_source

        return load_source(spec, repo_root, policy)
    if spec.file is not None:
        from mcval.backends import load_artefact

        shipped = load_artefact(spec, repo_root, policy)
        limit = int(float(policy.measure.max_download_gb) * 1e9)
        return models.LoadedModel(
            model=None, source=str(shipped.directory), files=[shipped.artefact], files_bytes=0,
            warnings=shipped.warnings, config=shipped.config,
            artefact=shipped.request_fields(limit),
        )  # fmt: skip
    if spec.library == "timm":
        from mcval.models.timm_loading import load_timm

        return load_timm(spec, repo_root, device, policy)
    loaded = models.load_model(spec, repo_root, device, policy, cls, **kwargs)
    loaded.config = getattr(loaded.model, "config", None)
    return loaded


def _import_model_module(spec: Any, repo_root: Path, model_class: type) -> None:
    """Import the architecture's modeling module before the RSS baseline (best effort).

    Reads ``config.json`` only from a local directory or the hub cache (never the network);
    when neither has it, the few MB of that module's import count towards ``ram_mb``.
    llama.cpp's library and backends are loaded here for the same reason.
    """
    if getattr(spec, "runtime", None) == "llama.cpp":
        importlib.import_module("mcval.backends.llamacpp_backend").preload()
        return
    if getattr(spec, "gguf_file", None):
        return
    try:
        config_file: Path | None = None
        local = (repo_root / spec.id).resolve()
        if local.is_relative_to(repo_root.resolve()) and (local / "config.json").is_file():
            config_file = local / "config.json"
        else:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(spec.id, "config.json", revision=spec.revision)
            if isinstance(cached, str):
                config_file = Path(cached)
        mapping = getattr(model_class, "_model_mapping", None)
        if config_file is None or mapping is None:
            return
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(config_file.parent, trust_remote_code=False)
        mapping[type(config)]  # importing the concrete class is the point
    except Exception:
        return


def _is_input_error(exc: BaseException) -> bool:
    from mcval.errors import InputError

    return isinstance(exc, InputError)


def _is_runner_error(exc: BaseException) -> bool:
    from mcval.errors import RunnerError

    return isinstance(exc, RunnerError)
