"""llama.cpp: a GGUF file measured as GGUF (``model.runtime: llama.cpp``, causal-lm).

transformers dequantizes a GGUF on load, so a Q4 file would be timed and sized as fp32; this
runtime runs the file itself through ``llama-cpp-python`` (pinned in the ``measure`` extra).

- **Safety.** llama.cpp's C++ GGUF parser has had memory-safety bugs, so the file reaches
  it only after ``mcval.models.gguf_checks.walk_gguf`` (bounded walk: header, counts,
  dimensions, known types, every tensor's data inside the file) and the ``gguf`` package's
  reader agreed on it (``safety.validate_gguf``, at resolve time and again here, right
  before ``Llama`` opens the path). The measuring child's isolation applies as everywhere.
- **Size** is the bytes of all tensor data at their stored width, from that tensor table
  (not the file size: metadata and the tokenizer are not weights), with the tensors per
  GGML type kept in the results (``SizeReport.tensor_types``).
- **Memory.** ``use_mmap=False``: llama.cpp reads the tensors into buffers of its own, so
  every weight byte is resident in the measuring process and counted in ``ram_mb`` (a
  memory-mapped file would be charged only for the pages an inference happened to touch).
  The KV cache holds ``n_ctx`` positions: the longest sequence the submission needs
  (benchmark input, perplexity window), not the model's training context.
- **Calls.** The task code drives a ``RuntimeModel`` as on every runtime: a forward returns
  the logits at every position (llama.cpp's ``logits_all``: one decode of the sequence with
  an output per token), which perplexity (``tasks.causal_lm``'s windows, on the same token
  ids as PyTorch) and the ``{tokens: N}`` benchmark use; for generation ``decode`` (the
  ``DecodeFn`` that ``backends.decoding``'s greedy loop drives on every runtime) decodes
  the prompt from an empty KV cache, then one token at a time in llama.cpp's own cache,
  computing only the last position's logits, as transformers' ``generate`` does.
  ``n_threads = n_threads_batch =`` the protocol's threads.
- **GPU**: a CUDA build of llama-cpp-python (``CMAKE_ARGS=-DGGML_CUDA=on``,
  docs/maintainers.md) offloads every layer (``n_gpu_layers=-1``); its VRAM is read per
  process through NVML (``gpu_memory``), as for ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import ctypes
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from mcval.backends.base import ConvertRequest, RuntimeModel, WeightCount
from mcval.measure.size import SizeReport
from mcval.models.errors import LoadError, NotApplicableError

if TYPE_CHECKING:
    from mcval.models.gguf_checks import GGUFTable
    from mcval.models.loading import LoadedModel

RUNTIME = "llama.cpp"
OWN_THREAD_POOL = True  # ggml's ``n_threads`` / ``n_threads_batch``, not torch's
MAX_BATCH = 512
"""Tokens per ``llama_decode`` (llama.cpp's default ``n_batch``)."""


def _llama_cpp() -> Any:
    """The ``llama_cpp`` module; a runner without it cannot measure (exit 3, re-run)."""
    try:
        import llama_cpp
    except ImportError as exc:
        from mcval.errors import RunnerError

        raise RunnerError(
            f"llama-cpp-python is not installed on this runner ({exc}); install mcval's "
            "[measure] extra"
        ) from None
    return llama_cpp


def preload() -> None:
    """Import llama.cpp and initialise its backends before the RSS baseline (the library's
    code is not the model's memory)."""
    with contextlib.suppress(Exception):  # a missing library is reported by ``convert``
        _llama_cpp().llama_backend_init()


@dataclass
class GGUFConfig:
    """What the task code reads of a model's config, from the GGUF's metadata."""

    architecture: str
    max_position_embeddings: int | None
    vocab_size: int
    pad_token_id: int | None
    bos_token_id: int | None
    eos_token_id: int | None
    is_decoder: bool = True
    model_type: str = "gguf"


def gguf_config(metadata: dict[str, Any], vocab_size: int) -> GGUFConfig:
    """A ``GGUFConfig`` from the walked metadata (``gguf_checks.GGUFTable.metadata``)."""
    arch = str(metadata.get("general.architecture", ""))
    context = metadata.get(f"{arch}.context_length")

    def token(key: str) -> int | None:
        value = metadata.get(f"tokenizer.ggml.{key}")
        return int(value) if isinstance(value, int) else None

    return GGUFConfig(
        architecture=arch,
        max_position_embeddings=int(context) if isinstance(context, int) else None,
        vocab_size=vocab_size,
        pad_token_id=token("padding_token_id"),
        bos_token_id=token("bos_token_id"),
        eos_token_id=token("eos_token_id"),
    )


def load_source(spec: Any, repo_root: Path, policy: Any) -> LoadedModel:
    """The GGUF of a llama.cpp submission, resolved and validated (quantized types accepted),
    as the ``LoadedModel`` the measuring child converts with ``to_runtime``."""
    from mcval.models.gguf_checks import walk_gguf
    from mcval.models.loading import LoadedModel
    from mcval.models.sources import resolve_source

    limit = int(float(policy.measure.max_download_gb) * 1e9)
    resolved = resolve_source(
        spec.id,
        spec.revision,
        spec.gguf_file,
        repo_root,
        max_download_bytes=limit,
        class_name="GGUF",
        quantized_gguf=True,
    )
    path = resolved.weight_files[0]
    table = walk_gguf(path)
    vocab = table.array_lengths.get("tokenizer.ggml.tokens") or table.metadata.get(
        f"{table.metadata.get('general.architecture')}.vocab_size"
    )
    return LoadedModel(
        model=None,
        source=str(resolved.directory),
        files=[path],
        files_bytes=resolved.files_bytes,
        warnings=list(resolved.warnings),
        gguf_file=resolved.gguf_file,
        resolved=resolved,
        config=gguf_config(table.metadata, int(vocab or 0)),
        artefact={"artefact": path, "model_dir": resolved.directory, "max_bytes": limit},
    )


def context_needed(sub: Any, config: Any) -> int:
    """``n_ctx``: the longest sequence this submission runs (benchmark input, perplexity
    window), capped at the model's training context."""
    from mcval.submission.schema import DEFAULT_BENCHMARK_INPUT

    limit = getattr(config, "max_position_embeddings", None)
    lengths = [64]
    if sub is not None:
        shape = (sub.benchmark.input or DEFAULT_BENCHMARK_INPUT["causal-lm"]).given()
        lengths.append(int(shape.get("tokens", 0)))
        lengths.append(int(shape.get("prompt_tokens", 0)) + int(shape.get("new_tokens", 0)))
        lengths.append(int(sub.evaluation.context_length or limit or 0))
    needed = max(lengths)
    return min(needed, limit) if limit else needed


def size_report(table: GGUFTable, path: Path) -> SizeReport:
    """``weights_mb``: every tensor's data at its stored width, per type (module docstring)."""
    count = WeightCount()
    for tensor in table.tensors:
        count.add(tensor.type_name, tensor.nbytes, tensor.elements)
    report = count.report([path])
    return report.model_copy(update={"tensor_types": table.type_counts()})


class LlamaCppModel(RuntimeModel):
    """A ``RuntimeModel`` whose calls run llama.cpp on token ids (module docstring)."""

    def __init__(self, llm: Any, config: Any, size: SizeReport, notes: list[str]) -> None:
        import llama_cpp

        self.llm = llm
        self.lib = llama_cpp
        self.n_vocab = int(llm.n_vocab())
        self.n_ctx = int(llm.n_ctx())
        self.n_batch = min(MAX_BATCH, self.n_ctx)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        inputs = ["input_ids", "attention_mask"]
        super().__init__(RUNTIME, self._logits, inputs, config, size, notes)
        self.decode = self._step  # backends.base.DecodeFn: llama.cpp's own KV cache
        # The GGUF's own end-of-sequence ids (``to_runtime`` keeps a backend's settings).
        self.generation_config = SimpleNamespace(
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
            bos_token_id=config.bos_token_id,
            decoder_start_token_id=None,
        )

    def close(self) -> None:
        """Free the batch, the context and the model (also at garbage collection)."""
        if self.batch is not None:
            self.lib.llama_batch_free(self.batch)
            self.batch = None
        self.llm.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at shutdown the library may be gone already
            self.close()

    def _clear(self) -> None:
        memory = self.lib.llama_get_memory(self.llm.ctx)
        self.lib.llama_memory_clear(memory, True)

    def run_tokens(self, tokens: list[int], start: int, every_position: bool) -> np.ndarray:
        """Decode ``tokens`` at positions ``start..``; the logits of every position
        (``every_position``) or of the last one only, as float32 ``(n, vocab)``."""
        if start + len(tokens) > self.n_ctx:
            raise RuntimeError(
                f"llama.cpp: {start + len(tokens)} positions exceed its context of {self.n_ctx}"
            )
        rows: list[np.ndarray] = []
        for first in range(0, len(tokens), self.n_batch):
            chunk = tokens[first : first + self.n_batch]
            last_chunk = first + self.n_batch >= len(tokens)
            b = self.batch
            b.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                b.token[i] = int(token)
                b.pos[i] = start + first + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = every_position or (last_chunk and i == len(chunk) - 1)
            code = self.lib.llama_decode(self.llm.ctx, b)
            if code != 0:
                raise RuntimeError(f"llama_decode failed with code {code}")
            if every_position:
                pointer = self.lib.llama_get_logits(self.llm.ctx)
                rows.append(_as_array(pointer, len(chunk), self.n_vocab))
        if every_position:
            return np.concatenate(rows) if len(rows) > 1 else rows[0]
        pointer = self.lib.llama_get_logits_ith(self.llm.ctx, -1)
        return _as_array(pointer, 1, self.n_vocab)

    def _logits(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of every position of each (right-padded) row, each row decoded alone
        from an empty cache; padded positions stay zero (never scored)."""
        ids = np.asarray(feed["input_ids"])
        mask = np.asarray(feed.get("attention_mask", np.ones_like(ids)))
        out = np.zeros((ids.shape[0], ids.shape[1], self.n_vocab), dtype=np.float32)
        for row in range(ids.shape[0]):
            n = int(mask[row].sum())
            self._clear()
            out[row, :n] = self.run_tokens(ids[row, :n].tolist(), 0, every_position=True)
        return out

    def _step(self, input_ids: np.ndarray, attention_mask: np.ndarray, past: Any) -> Any:
        """The generation benchmark's step (``backends.base.DecodeFn``, driven by
        ``backends.decoding.greedy_tokens``): the prefill from an empty cache when ``past``
        is None, then one token at the position ``past`` (llama.cpp keeps the KV cache in
        its context; ``past`` is how many positions it holds). Logits of the last position
        only, as transformers' ``generate`` computes them."""
        ids = np.asarray(input_ids)
        if ids.shape[0] != 1:
            raise ValueError("llama.cpp decodes one sequence per call (benchmark.batch_size 1)")
        if past is None:
            self._clear()
            past = 0
        tokens = ids[0].tolist()
        logits = self.run_tokens(tokens, int(past), every_position=False)
        return logits, int(past) + len(tokens)


def _as_array(pointer: Any, rows: int, vocab: int) -> np.ndarray:
    """A copy of ``rows × vocab`` float32 logits from llama.cpp's output buffer."""
    address = ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float))
    return np.ctypeslib.as_array(address, shape=(rows, vocab)).copy()


def convert(request: ConvertRequest) -> RuntimeModel:
    """Validate the GGUF again, then open it with llama.cpp (module docstring)."""
    from mcval.models.gguf_checks import GGUFFormatError, walk_gguf
    from mcval.models.safety import InvalidGGUFError

    if request.artefact is None:
        raise LoadError("runtime llama.cpp runs a GGUF file: set model.gguf_file")
    path = request.artefact
    try:  # the bounded walk again, right before llama.cpp reads the path
        table = walk_gguf(path)
    except GGUFFormatError as exc:
        raise InvalidGGUFError(
            f"{path.name} is not a valid GGUF file ({exc}); re-export it (e.g. with llama.cpp's "
            "convert_hf_to_gguf.py) and commit it again",
            ("model", "gguf_file"),
        ) from None
    llama_cpp = _llama_cpp()
    cuda = request.device.startswith("cuda")
    if cuda and not llama_cpp.llama_supports_gpu_offload():
        raise NotApplicableError(
            "llama.cpp on GPU needs llama-cpp-python built with CUDA "
            "(CMAKE_ARGS=-DGGML_CUDA=on, docs/maintainers.md)"
        )
    n_ctx = context_needed(request.submission, request.config)
    try:
        llm = llama_cpp.Llama(
            model_path=str(path),
            n_gpu_layers=-1 if cuda else 0,
            main_gpu=int(request.device.split(":")[1]) if ":" in request.device else 0,
            use_mmap=False,
            use_mlock=False,
            n_ctx=n_ctx,
            n_batch=min(MAX_BATCH, n_ctx),
            n_ubatch=min(MAX_BATCH, n_ctx),
            n_threads=request.threads,
            n_threads_batch=request.threads,
            logits_all=False,  # the calls choose their output positions (``decode``)
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise LoadError(f"llama.cpp could not load {path.name}: {exc}") from None
    notes = [
        f"llama.cpp {llama_cpp.__version__}: n_ctx {llm.n_ctx()}, {request.threads} threads, "
        f"use_mmap=False (weights resident), " + ("all layers on the GPU" if cuda else "CPU"),
        "tensors: " + tensor_summary(table.type_counts()),
    ]
    request.config.vocab_size = int(llm.n_vocab())
    return LlamaCppModel(llm, request.config, size_report(table, path), notes)


def tensor_summary(types: dict[str, int]) -> str:
    """``210 × Q4_1, 1 × Q8_0, 61 × F32``: quantized types first, then by count."""
    from mcval.models.sources import GGUF_FLOAT_TYPES

    ordered = sorted(types.items(), key=lambda tn: (tn[0] in GGUF_FLOAT_TYPES, -tn[1], tn[0]))
    return ", ".join(f"{n} × {t}" for t, n in ordered)
