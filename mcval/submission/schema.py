"""The submission file as pydantic models: the contract between students and the runner.

Top-level and section names are fixed by the course contract (submissions/README.md).
Every model forbids unknown keys (a typo must not pass silently) and is strict about
types (``"8"`` is not a batch size).
Defaults that depend on the task are documented in ``submissions/README.md``: the
metrics are filled in by ``load_submission``; a left-out ``benchmark.input`` stays None
and the runner takes the task's default, shortened to the model's maximum length
(``mcval.tasks.base.fitted_input``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from mcval.metrics import Normalizer, Task
from mcval.runtimes import Library, Runtime
from mcval.submission.units import NOT_MEASURED_SPELLINGS

SCHEMA_VERSION = 1
TEAM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
SUBMISSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
SHA_PATTERN = r"^[0-9a-f]{40}$"
"""A full git commit SHA: a pinned hub revision, a pull request's head, a status target."""


def is_commit_sha(text: str) -> bool:
    """Whether ``text`` is a full 40-character lower-case commit SHA (nothing around it)."""
    return re.fullmatch(SHA_PATTERN, text) is not None


ShortText = Annotated[str, Field(min_length=1, max_length=200)]
LanguageCode = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")]
"""A language as the model family names it: ``en``, ``english``, ``eng_Latn``, ``en_XX``."""
PositiveInt = Annotated[int, Field(gt=0, le=10**9)]


class StrictModel(BaseModel):
    """Base: unknown keys are errors and types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ModelSpec(StrictModel):
    """Which checkpoint to measure."""

    id: ShortText = Field(
        description="Hugging Face hub id 'org/name', or a directory relative to the repository "
        "root (start it with './' to make clear it is local)."
    )
    revision: ShortText | None = Field(
        default=None, description="Commit sha the hub id is pinned to (a missing pin is a warning)."
    )
    task: Task
    gguf_file: ShortText | None = Field(
        default=None,
        description="Name of a GGUF file inside the model repository or directory. With "
        "runtime llama.cpp it is measured as GGUF, quantized types (Q4_1, Q8_0, k-quants) "
        "included; on PyTorch its tensors must be F32, F16 or BF16 (transformers would "
        "dequantize a quantized GGUF, so it would be measured as a floating-point model).",
    )
    runtime: Runtime = Field(
        default="pytorch",
        description="What runs the model: pytorch, or the runner converts the checkpoint to "
        "torchscript, onnxruntime or openvino (or loads model.file); llama.cpp runs "
        "model.gguf_file (causal-lm).",
    )
    library: Library = Field(
        default="transformers",
        description="transformers, or timm for image-classification (safetensors + config.json).",
    )
    file: ShortText | None = Field(
        default=None,
        description="An .onnx file (onnxruntime) or OpenVINO IR .xml with its .bin (openvino) "
        "inside the model directory or hub repo (e.g. onnx/model.onnx), measured as shipped "
        "instead of converting the checkpoint.",
    )

    @field_validator("id", "gguf_file", "file")
    @classmethod
    def _no_escape(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith(("/", "~")) or "\\" in value or ".." in value.split("/"):
            raise ValueError("must be a hub id or a path inside the repository (no '..', '/', '~')")
        return value


class RecipeStep(StrictModel):
    """One compression step the runner applies after loading, e.g. ``quantize_dynamic``."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_one_key_mapping(cls, data: Any) -> Any:
        """YAML writes a step as ``- quantize_dynamic: {dtype: qint8}``."""
        if isinstance(data, dict) and set(data) - {"name", "params"}:
            if len(data) != 1:
                raise ValueError(
                    "each recipe step is a mapping with exactly one key, the step name, e.g. "
                    "'- quantize_dynamic: {dtype: qint8}'"
                )
            ((name, params),) = data.items()
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise ValueError(f"the parameters of recipe step {name!r} must be a mapping")
            return {"name": name, "params": params}
        return data


RecipeStepSchema = Annotated[
    RecipeStep,
    WithJsonSchema(
        {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": {"type": ["object", "null"]},
            "description": "A step as a one-key mapping: {step_name: {parameters}}",
        }
    ),
]


class Method(StrictModel):
    """The compression method, as it appears in the table's "Метод" column."""

    name: Annotated[str, Field(min_length=1, max_length=80)]
    baseline: Annotated[str, Field(pattern=SUBMISSION_ID_PATTERN)] | None = Field(
        default=None,
        description="Id 'team/name' of the submission this one compresses; none for a baseline.",
    )
    recipe: list[RecipeStepSchema] = Field(default_factory=list)
    notes: Annotated[str, Field(max_length=500)] | None = Field(
        default=None,
        description="Free text; say here why a compressed row may be larger than its baseline.",
    )


class DatasetSpec(StrictModel):
    """The evaluation slice: a hub dataset, or local files inside the repository."""

    path: ShortText = Field(
        description="Hub dataset id, or json / csv / parquet / text with data_files."
    )
    name: ShortText | None = None
    split: ShortText = "test"
    revision: ShortText | None = None
    data_files: list[ShortText] | None = Field(
        default=None, description="Repository-relative files for a local dataset."
    )
    samples: PositiveInt | None = Field(
        default=None, description="Rows to evaluate (default 200, or the whole split if smaller)."
    )
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = Field(
        default=0, description="Seed of the shuffle that picks the rows (0 to 2^32 - 1)."
    )

    @field_validator("data_files", mode="before")
    @classmethod
    def _one_file(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Evaluation(StrictModel):
    """How quality is computed."""

    dataset: DatasetSpec
    columns: dict[str, ShortText] = Field(
        default_factory=dict, description="Role → column name, e.g. {text: sentence}."
    )
    metrics: list[str] = Field(
        default_factory=list, description="Metrics to compute (default: the task's own)."
    )
    batch_size: Annotated[int, Field(gt=0, le=1024)] = 8
    max_new_tokens: Annotated[int, Field(gt=0, le=4096)] | None = None
    source_prefix: Annotated[str, Field(max_length=200)] | None = Field(
        default=None,
        description="Text put before each source sentence (T5: 'translate English to German: ').",
    )
    language: LanguageCode | None = Field(
        default=None,
        description="Speech recognition: the language spoken in the clips, as Whisper names it "
        "('en' or 'english'); required for a multilingual Whisper, not needed for '.en' models.",
    )
    task: Literal["transcribe", "translate"] | None = Field(
        default=None,
        description="Speech recognition: 'transcribe' (text in the spoken language, the default) "
        "or 'translate' (Whisper: English text of speech in another language).",
    )
    source_language: LanguageCode | None = Field(
        default=None,
        description="Translation: the source language in the model family's code (NLLB "
        "'eng_Latn', M2M100 'en', mBART-50 'en_XX', T5 'en'); required for NLLB, M2M100, mBART.",
    )
    target_language: LanguageCode | None = Field(
        default=None,
        description="Translation: the target language, coded like source_language; NLLB, "
        "M2M100 and mBART force it as the first generated token, multilingual Marian "
        "prefixes '>>code<<', T5 gets 'translate X to Y: '.",
    )
    normalizer: Normalizer | None = Field(
        default=None,
        description="Speech recognition: the text normaliser applied to hypotheses and "
        "references before WER/CER: 'basic' or 'whisper-english' (default: the policy's).",
    )
    context_length: Annotated[int, Field(gt=0, le=1_000_000)] | None = None
    stride: Annotated[int, Field(gt=0, le=1_000_000)] | None = None


InputShape = frozenset[str]
"""The fields of ``benchmark.input`` one shape gives, e.g. ``{prompt_tokens, new_tokens}``."""

INPUT_SHAPES: dict[InputShape, str] = {
    frozenset({"tokens"}): "{tokens: N}",
    frozenset({"prompt_tokens", "new_tokens"}): "{prompt_tokens: N, new_tokens: M}",
    frozenset({"seconds"}): "{seconds: S}",
    frozenset({"image_size"}): "{image_size: N}",
}
"""Every shape a benchmark input can have, as the error messages write it."""

_TOKENS, _GENERATE, _AUDIO, _IMAGE = INPUT_SHAPES
TASK_INPUT_SHAPES: dict[str, tuple[InputShape, ...]] = {
    "text-classification": (_TOKENS,),
    "token-classification": (_TOKENS,),
    "causal-lm": (_TOKENS, _GENERATE),
    "translation": (_TOKENS, _GENERATE),
    "automatic-speech-recognition": (_AUDIO,),
    "image-classification": (_IMAGE,),
}
"""The shapes each task's benchmark call takes: ``mcval check`` and the runner both read
this one table, so a shape the check accepts is one the runner can time."""


class BenchmarkInput(StrictModel):
    """The fixed input every latency call uses; exactly one shape."""

    tokens: Annotated[int, Field(gt=0, le=32768)] | None = None
    prompt_tokens: Annotated[int, Field(gt=0, le=32768)] | None = None
    new_tokens: Annotated[int, Field(gt=0, le=4096)] | None = None
    seconds: Annotated[float, Field(gt=0, le=600)] | None = None
    image_size: Annotated[int, Field(gt=0, le=4096)] | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> BenchmarkInput:
        if self.given_shape() not in INPUT_SHAPES:
            *first, last = INPUT_SHAPES.values()
            raise ValueError(f"use exactly one input shape: {', '.join(first)} or {last}")
        return self

    def given(self) -> dict[str, int | float]:
        """The fields this input sets, e.g. ``{"prompt_tokens": 128, "new_tokens": 50}``."""
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def given_shape(self) -> InputShape:
        """The shape this input has (its set fields)."""
        return frozenset(self.given())

    def shape(self) -> str:
        """Short human description, e.g. ``128 tokens``."""
        if self.tokens is not None:
            return f"{self.tokens} tokens"
        if self.prompt_tokens is not None:
            return f"{self.prompt_tokens} prompt tokens + {self.new_tokens} new tokens"
        if self.seconds is not None:
            return f"{self.seconds:g} s of audio"
        return f"{self.image_size}×{self.image_size} image"


DEFAULT_BENCHMARK_INPUT: dict[str, BenchmarkInput] = {
    "text-classification": BenchmarkInput(tokens=128),
    "token-classification": BenchmarkInput(tokens=128),
    "causal-lm": BenchmarkInput(prompt_tokens=128, new_tokens=50),
    "translation": BenchmarkInput(prompt_tokens=64, new_tokens=64),
    "automatic-speech-recognition": BenchmarkInput(seconds=30),
    "image-classification": BenchmarkInput(image_size=224),
}
"""The fixed latency input of each task when ``benchmark.input`` is left out."""


_FIELD_ORDER = list(BenchmarkInput.model_fields)


def _written(shape: InputShape) -> str:
    return "{" + ", ".join(f"{k}: ..." for k in sorted(shape, key=_FIELD_ORDER.index)) + "}"


def input_shape_problem(task: str, given: InputShape) -> str | None:
    """Why an input of shape ``given`` cannot be timed for ``task``, or None when it can."""
    accepted = TASK_INPUT_SHAPES[task]
    if given in accepted:
        return None
    use = " or ".join(_written(s) for s in accepted)
    return f"benchmark input {_written(given)} does not fit {task}; use {use}"


class Benchmark(StrictModel):
    """Latency protocol inputs."""

    batch_size: Annotated[int, Field(gt=0, le=256)] = 1
    input: BenchmarkInput | None = Field(
        default=None,
        description="Default: the task's own, shortened to the model's maximum length when "
        "the model takes fewer tokens.",
    )
    threads: Annotated[int, Field(gt=0, le=256)] | None = Field(
        default=None, description="CPU threads (default: the policy's, else physical cores)."
    )


class Hardware(StrictModel):
    """Where the team measured its reported numbers (free text)."""

    cpu: ShortText | None = None
    gpu: ShortText | None = None


_NUMBER_OR_UNIT_TEXT = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {
            "type": "string",
            "pattern": r"^\s*\d+(\.\d*)?([eE][+-]?\d+)?\s*[A-Za-zµ%]*"
            r"(\s*\(\s*10\s*\^\s*\d+\s*\))?\s*$",
        },
        {"enum": list(NOT_MEASURED_SPELLINGS)},
        {"type": "null"},
    ],
    "description": "A number in the canonical unit, text with a unit such as '1.33 GB' "
    "(MiB) or '1.33 GB (10^9)' (decimal), or N/A / '-' for not measured.",
}
ReportedNumber = Annotated[
    Annotated[float, Field(ge=0, allow_inf_nan=False)] | None,
    WithJsonSchema(_NUMBER_OR_UNIT_TEXT),
]
QualityNumber = Annotated[float, Field(allow_inf_nan=False), WithJsonSchema(_NUMBER_OR_UNIT_TEXT)]


class Reported(StrictModel):
    """What the team measured; numbers in canonical units (MiB, ms, fractions)."""

    weights_mb: ReportedNumber = None
    latency_cpu_ms: ReportedNumber = None
    latency_gpu_ms: ReportedNumber = None
    ram_mb: ReportedNumber = None
    vram_mb: ReportedNumber = None
    quality: dict[str, QualityNumber] = Field(
        default_factory=dict, description="Metric → value: fractions for accuracy/F1/WER/CER."
    )
    hardware: Hardware = Field(default_factory=Hardware)


class Submission(StrictModel):
    """One row of the results table, as a team submits it."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        populate_by_name=True,
        json_schema_extra={"title": "mcval submission"},
    )

    schema_: Literal[1] = Field(alias="schema", description="Format version; always 1.")
    team: Annotated[str, Field(pattern=TEAM_PATTERN)]
    model: ModelSpec
    method: Method
    evaluation: Evaluation
    benchmark: Benchmark = Field(default_factory=Benchmark)
    reported: Reported = Field(default_factory=Reported)
