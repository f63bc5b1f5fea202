"""What the task modules share (these import torch; ``base`` and ``data`` do not).

``HandlerBase`` holds the one ``evaluate`` every task runs (metrics, columns, slice) and
calls the task's ``score``; the benchmark helpers build the seeded inputs and the timed
forward or exact-length ``generate`` calls, so each task module keeps only what is its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch

from mcval.tasks.base import (
    NotedCall,
    Scores,
    TaskDataError,
    fitted_input,
    resolve_columns,
    resolve_metrics,
)
from mcval.tasks.data import EvalSlice, load_slice, media_columns

if TYPE_CHECKING:
    from mcval.submission.schema import Benchmark, Evaluation

T = TypeVar("T")
BENCHMARK_SEED = 0
"""Seed of every synthetic benchmark input (token ids, audio, image tensors)."""
_HUGE = 1_000_000  # tokenizers without a limit report model_max_length ~ 1e30


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive chunks of ``size`` items (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def float_dtype(model: Any) -> torch.dtype:
    """The dtype floating inputs (pixel values, audio features) must have for ``model``."""
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    for param in model.parameters():
        if param.dtype.is_floating_point:
            return param.dtype
    return torch.float32


def to_device(batch: Mapping[str, Any], model: Any, device: str) -> dict[str, Any]:
    """Move tensors to ``device``, cast floating ones to the model's dtype, and drop inputs
    the model's ``forward`` does not accept (e.g. ``token_type_ids`` for DistilBERT)."""
    accepted = _accepted_inputs(model)
    dtype = float_dtype(model)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if accepted is not None and key not in accepted:
            continue
        if isinstance(value, torch.Tensor):
            value = value.to(device)
            if value.is_floating_point():
                value = value.to(dtype)
        out[key] = value
    return out


def _accepted_inputs(model: Any) -> set[str] | None:
    """Named parameters of ``model.forward``; ``None`` (pass everything) when it has none."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    variadic = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    names = {name for name, p in params.items() if p.kind not in variadic}
    return names or None


def max_input_tokens(tokenizer: Any, config: Any) -> int | None:
    """The longest input the model takes: the tokenizer's limit and the position table's."""
    limits = []
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < _HUGE:
        limits.append(tok_limit)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    return min(limits) if limits else None


def ensure_pad_token(tokenizer: Any, model: Any | None = None) -> None:
    """Batches need a pad token: fall back to EOS (the usual choice for decoder-only LMs)."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise TaskDataError("the tokenizer has neither a pad nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "pad_token_id", 0) is None:
        config.pad_token_id = tokenizer.pad_token_id


def seeded_token_ids(tokenizer: Any, config: Any, batch: int, length: int) -> torch.Tensor:
    """A fixed ``batch × length`` tensor of ordinary (non-special) token ids, seeded."""
    vocab = min(len(tokenizer), getattr(config, "vocab_size", None) or len(tokenizer))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    allowed = torch.tensor([i for i in range(vocab) if i not in special], dtype=torch.long)
    generator = torch.Generator().manual_seed(BENCHMARK_SEED)
    picks = torch.randint(0, len(allowed), (batch, length), generator=generator)
    return allowed[picks]


def check_length(tokens: int, limit: int | None, what: str) -> None:
    """Refuse an input longer than the model's position table (it would fail or wrap)."""
    if limit is not None and tokens > limit:
        raise TaskDataError(f"{what} is {tokens} tokens; the model takes at most {limit}")


class LabelMap:
    """Maps a dataset's label values to the model's class ids (documented rule).

    * a string label is looked up in ``config.label2id`` (exactly, then ignoring case);
    * an integer label of a ``ClassLabel`` column is turned into its class name first and
      looked up the same way, unless the model's labels are the generic ``LABEL_0``... names,
      in which case the integer is the class id;
    * any other integer is the class id itself and must be one of ``config.id2label``.
    A label outside the model's label set is an error naming the row.
    """

    def __init__(self, config: Any, dataset_names: list[str] | None) -> None:
        self.id2label: dict[int, str] = {int(k): v for k, v in config.id2label.items()}
        self.exact = {v: k for k, v in self.id2label.items()}
        self.folded = {v.lower(): k for k, v in self.id2label.items()}
        self.generic = all(v == f"LABEL_{k}" for k, v in self.id2label.items())
        self.dataset_names = dataset_names

    def model_id(self, value: Any, where: str) -> int:
        """The model's class id for one dataset label value."""
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int) and self.dataset_names is not None and not self.generic:
            if not 0 <= value < len(self.dataset_names):
                raise TaskDataError(f"{where}: label {value} is not a class of the dataset")
            value = self.dataset_names[value]
        if isinstance(value, str):
            found = self.exact.get(value, self.folded.get(value.lower()))
            if found is None:
                raise TaskDataError(
                    f"{where}: label {value!r} is not one of the model's labels "
                    f"({', '.join(self.id2label.values())})"
                )
            return found
        if isinstance(value, int):
            if value not in self.id2label:
                raise TaskDataError(
                    f"{where}: label id {value} is outside the model's label ids "
                    f"0..{len(self.id2label) - 1}"
                )
            return value
        raise TaskDataError(f"{where}: label {value!r} is neither a class name nor a class id")

    def name(self, class_id: int) -> str:
        """The model's name of a class id."""
        return self.id2label[class_id]


def load_tokenizer(source: str | Path, revision: str | None, gguf_file: str | None) -> Any:
    """``AutoTokenizer`` from the model's source (GGUF-embedded tokenizers included)."""
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": False}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    return AutoTokenizer.from_pretrained(str(source), **kwargs)


@dataclass(frozen=True)
class EvalJob:
    """What a task scores: the loaded slice, its resolved columns, the declared evaluation
    and the metrics asked for (validated, in the requested order)."""

    data: EvalSlice
    columns: dict[str, str]
    evaluation: Evaluation
    metrics: list[str]


class HandlerBase:
    """What every task handler shares: its transformers Auto class (named, imported on
    use), its preprocessor (a tokenizer unless it names an ``Auto*`` processor class), and
    the evaluation template.

    ``evaluate`` resolves the metrics and columns and loads the slice the same way for
    every task, so a task writes only ``score``: its own reading of the rows and its own
    scoring.
    """

    name: str
    auto_class: str
    preprocessor_class: ClassVar[str | None] = None

    @property
    def default_metrics(self) -> tuple[str, ...]:
        from mcval.metrics import DEFAULT_METRICS

        return DEFAULT_METRICS[self.name]

    def model_class(self) -> type:
        import transformers

        return getattr(transformers, self.auto_class)

    def load_preprocessor(
        self, source: str | Path, revision: str | None, gguf_file: str | None
    ) -> Any:
        if self.preprocessor_class is None:
            return load_tokenizer(source, revision, gguf_file)
        import transformers

        auto = getattr(transformers, self.preprocessor_class)
        return auto.from_pretrained(str(source), revision=revision, trust_remote_code=False)

    def evaluate(
        self,
        model: Any,
        preprocessor: Any,
        evaluation: Evaluation,
        repo_root: Path,
        device: str,
    ) -> dict[str, float]:
        """Quality metrics on the declared slice, in the order the metrics were requested."""
        metrics = resolve_metrics(self.name, evaluation.metrics)
        columns = resolve_columns(self.name, evaluation.columns)
        self.check_metrics(model, metrics)
        data = load_slice(evaluation.dataset, repo_root, columns, media=media_columns(columns))
        values = self.score(
            model, preprocessor, EvalJob(data, columns, evaluation, metrics), device
        )
        return Scores({m: values[m] for m in metrics}, getattr(values, "details", None))

    def check_metrics(self, model: Any, metrics: list[str]) -> None:
        """Refuse a metric the model cannot give, before any data is read (default: none)."""

    def score(self, model: Any, preprocessor: Any, job: EvalJob, device: str) -> dict[str, float]:
        """The task's own part of ``evaluate``: ``{metric: value}`` for (at least)
        ``job.metrics``."""
        raise NotImplementedError


def seeded_inputs(
    tokenizer: Any, model: Any, batch: int, length: int, device: str
) -> dict[str, Any]:
    """``batch`` seeded sequences of ``length`` ordinary token ids, all attended, on ``device``."""
    ids = seeded_token_ids(tokenizer, model.config, batch, length)
    return to_device({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, model, device)


def forward_call(model: Any, inputs: Mapping[str, Any]) -> Callable[[], Any]:
    """The timed call of a forward benchmark: one pass over ``inputs``, returning logits."""

    def call() -> Any:
        with torch.inference_mode():
            return model(**inputs).logits

    return call


class EncoderHandler(HandlerBase):
    """An encoder timed by one forward pass over ``batch_size`` seeded sequences of
    ``tokens`` ordinary ids (``{tokens: N}``), refused beyond the model's input limit."""

    def benchmark_call(
        self, model: Any, preprocessor: Any, benchmark: Benchmark, device: str
    ) -> Callable[[], Any]:
        limit = max_input_tokens(preprocessor, model.config)
        shape, note = fitted_input(self.name, benchmark, limit, counts_new_tokens=False)
        tokens = int(shape["tokens"])
        check_length(tokens, limit, "benchmark.input.tokens")
        inputs = seeded_inputs(preprocessor, model, benchmark.batch_size, tokens, device)
        return NotedCall(forward_call(model, inputs), note)


def encode_batch(tokenizer: Any, limit: int | None, *texts: Any, **options: Any) -> Any:
    """One batch of texts tokenised for the model: right-padded with attention masks and
    truncated to ``limit`` (the model's input limit, ``None``: none known)."""
    return tokenizer(
        *texts,
        padding=True,
        truncation=limit is not None,
        max_length=limit,
        return_tensors="pt",
        **options,
    )


def batch_logits(model: Any, encoded: Mapping[str, Any], device: str) -> torch.Tensor:
    """The logits of one encoded batch (no gradients)."""
    with torch.inference_mode():
        return model(**to_device(encoded, model, device)).logits


def argmax_batch(
    model: Any, tokenizer: Any, limit: int | None, device: str, *texts: Any, **options: Any
) -> tuple[Any, list[Any]]:
    """An encoder's predictions for one batch of texts: the encoding (for word alignment)
    and the argmax class id per sequence, or per token for token-level heads."""
    encoded = encode_batch(tokenizer, limit, *texts, **options)
    return encoded, batch_logits(model, encoded, device).argmax(dim=-1).tolist()


def exact_generate_call(
    model: Any, tokenizer: Any, batch: int, prompt: int, new: int, device: str
) -> Callable[[], Any]:
    """The timed call of a generation benchmark: ``generate`` from ``batch`` seeded prompts
    of ``prompt`` tokens producing exactly ``new`` tokens each."""
    inputs = seeded_inputs(tokenizer, model, batch, prompt, device)
    config = exact_generation_config(model, tokenizer, new)

    def generate() -> Any:
        with torch.inference_mode():
            return model.generate(**inputs, generation_config=config)

    return generate


def exact_generation_config(model: Any, tokenizer: Any, new_tokens: int) -> Any:
    """Greedy decoding of exactly ``new_tokens`` tokens (EOS suppressed until then)."""
    from transformers import GenerationConfig

    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if isinstance(pad, list):
        pad = pad[0]
    return GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=model.generation_config.bos_token_id,
        decoder_start_token_id=model.generation_config.decoder_start_token_id,
    )
