"""Weight size: every figure is checked against a byte count computed another way."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tiny_models import build_tiny_bert_classifier, build_tiny_gpt2, build_tiny_llama
from torch import nn

from mcval.measure.size import MIB, files_size, measure_size

WHISPER_SMALL = {
    "d_model": 768,
    "encoder_layers": 12,
    "decoder_layers": 12,
    "encoder_attention_heads": 12,
    "decoder_attention_heads": 12,
    "encoder_ffn_dim": 3072,
    "decoder_ffn_dim": 3072,
    "vocab_size": 51865,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "max_target_positions": 448,
}


def safetensors_payload_bytes(path: Path) -> int:
    """Bytes of tensor data according to the safetensors header (independent of torch)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return sum(
        end - start
        for key, v in header.items()
        if key != "__metadata__"
        for start, end in [v["data_offsets"]]
    )


def non_persistent_buffer_bytes(model: nn.Module) -> int:
    """Buffers that are in memory but not in the checkpoint (rotary inv_freq, position ids)."""
    saved = set(model.state_dict().keys())
    return sum(
        b.numel() * b.element_size() for name, b in model.named_buffers() if name not in saved
    )


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("size_models")
    return {
        "gpt2": build_tiny_gpt2(root / "gpt2"),
        "llama": build_tiny_llama(root / "llama"),
        "bert": build_tiny_bert_classifier(root / "bert"),
    }


def _load(kind: str, path: Path) -> nn.Module:
    import transformers

    cls = {
        "gpt2": transformers.GPT2LMHeadModel,
        "llama": transformers.LlamaForCausalLM,
        "bert": transformers.BertForSequenceClassification,
    }[kind]
    return cls.from_pretrained(path).eval()


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_size_equals_safetensors_header_count(kind: str, saved_models: dict[str, Path]) -> None:
    path = saved_models[kind]
    model = _load(kind, path)
    weights = path / "model.safetensors"
    expected = safetensors_payload_bytes(weights) + non_persistent_buffer_bytes(model)
    report = measure_size(model, [weights])
    assert report.weights_bytes == expected
    assert report.weights_mb == expected / 2**20
    assert report.files_bytes == weights.stat().st_size
    assert report.files == [str(weights)]
    assert report.parameters == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_tied_embeddings_counted_once(kind: str, saved_models: dict[str, Path]) -> None:
    model = _load(kind, saved_models[kind])
    head, emb = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert head is emb  # the configs tie them
    all_params = [p for _, p in model.named_parameters(remove_duplicate=False)]
    with_duplicates = sum(p.numel() * 4 for p in all_params)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    report = measure_size(model)
    assert report.weights_bytes == with_duplicates - emb.numel() * 4 + buffers
    # Untying (a real copy) adds exactly one embedding matrix.
    model.get_output_embeddings().weight = nn.Parameter(emb.detach().clone())
    assert measure_size(model).weights_bytes == report.weights_bytes + emb.numel() * 4


def test_views_of_one_storage_count_the_storage_once() -> None:
    holder = nn.Module()
    big = torch.arange(100, dtype=torch.float32)
    holder.register_buffer("a", big[:40])
    holder.register_buffer("b", big[40:])
    holder.w = nn.Parameter(torch.zeros(3, 5, dtype=torch.float16))
    report = measure_size(holder)
    assert report.weights_bytes == 100 * 4 + 15 * 2
    assert report.dtype_bytes == {"float32": 400, "float16": 30}
    assert report.tensors == 2
    assert report.parameters == 15
    assert report.buffer_elements == 40
    assert report.sparsity == 1.0  # the fp16 parameter is all zeros; buffers are not weights


def test_dtype_cast_halves_the_size(saved_models: dict[str, Path]) -> None:
    model = _load("bert", saved_models["bert"])
    fp32 = measure_size(model)
    fp16 = measure_size(model.half())
    int64_buffers = fp32.dtype_bytes["int64"]
    assert fp16.weights_bytes == (fp32.weights_bytes - int64_buffers) // 2 + int64_buffers
    assert set(fp16.dtype_bytes) == {"float16", "int64"}


def _expected_dynamic_bytes(fp32: nn.Module, per_channel: bool, fp16: bool = False) -> int:
    """Packed size from the fp32 model's structure: int8 weights + quant params + fp32 bias,
    plus every parameter outside Linear layers and every buffer, at fp32."""
    total = 0
    linear_params: set[int] = set()
    for mod in fp32.modules():
        if isinstance(mod, nn.Linear):
            out_f, in_f = mod.weight.shape
            linear_params.add(id(mod.weight))
            if fp16:
                total += out_f * in_f * 2
            else:
                total += out_f * in_f  # int8
                total += (out_f * 8 + out_f * 8) if per_channel else 16  # float64 + int64
            if mod.bias is not None:
                linear_params.add(id(mod.bias))
                total += mod.bias.numel() * 4
    seen: set[int] = set()
    for p in fp32.parameters():
        if id(p) not in linear_params and id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * 4
    total += sum(b.numel() * b.element_size() for b in fp32.buffers())
    return total


@pytest.mark.parametrize(
    "scheme", ["per_tensor", "per_channel", "float16"], ids=["int8", "int8-per-channel", "fp16"]
)
def test_dynamic_quantized_size_is_packed_size(scheme: str, saved_models: dict[str, Path]) -> None:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    fp32 = _load("bert", saved_models["bert"])
    expected = _expected_dynamic_bytes(
        fp32, per_channel=scheme == "per_channel", fp16=scheme == "float16"
    )
    n_linear = sum(isinstance(m, nn.Linear) for m in fp32.modules())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if scheme == "per_channel":
            q = quantize_dynamic(fp32, {nn.Linear: per_channel_dynamic_qconfig}, inplace=False)
        elif scheme == "float16":
            q = quantize_dynamic(fp32, {nn.Linear}, dtype=torch.float16, inplace=False)
        else:
            q = quantize_dynamic(fp32, {nn.Linear}, dtype=torch.qint8, inplace=False)
    # parameters() no longer lists the Linear weights: the naive count is far too small.
    naive = sum(p.numel() * 4 for p in q.parameters())
    report = measure_size(q)
    assert report.weights_bytes == expected
    assert report.packed_modules == n_linear
    assert report.weights_bytes > naive
    assert report.parameters == sum(p.numel() for p in fp32.parameters())
    if scheme != "float16":
        assert report.dtype_bytes["qint8"] == sum(
            m.weight.numel() for m in fp32.modules() if isinstance(m, nn.Linear)
        )


def test_dynamic_quantized_lstm_counts_all_gates() -> None:
    from torch.ao.quantization import quantize_dynamic

    torch.manual_seed(0)
    lstm = nn.LSTM(8, 16, num_layers=2)
    weights = [p for n, p in lstm.named_parameters() if n.startswith("weight")]
    biases = [p for n, p in lstm.named_parameters() if n.startswith("bias")]
    expected = sum(w.numel() + 16 for w in weights) + sum(b.numel() * 4 for b in biases)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_dynamic(nn.Sequential(lstm), {nn.LSTM}, dtype=torch.qint8)
    report = measure_size(q)
    assert report.weights_bytes == expected
    assert report.packed_modules == 1


class _QuantState:
    """Shape of bitsandbytes' QuantState (absmax/code, nested state2 for double quant)."""

    def __init__(self, shape: tuple[int, int], blocks: int, nested: bool) -> None:
        self.shape = torch.Size(shape)
        self.quant_type = "nf4"
        self.code = torch.zeros(16)
        if nested:
            self.absmax = torch.zeros(blocks, dtype=torch.uint8)
            self.offset = torch.tensor(0.5)
            self.state2 = SimpleNamespace(
                absmax=torch.ones(blocks // 256 + 1), code=torch.ones(256)
            )
        else:
            self.absmax = torch.ones(blocks)
            self.offset = None
            self.state2 = None


class _Params4bit(nn.Parameter):
    """Duck-typed stand-in for bitsandbytes.nn.Params4bit (not installable without CUDA)."""

    quant_state: _QuantState


@pytest.mark.parametrize("nested", [False, True], ids=["plain", "double-quant"])
def test_4bit_params_count_packed_bytes_and_quant_state(nested: bool) -> None:
    out_f, in_f = 64, 128
    n = out_f * in_f
    blocks = n // 64
    layer = nn.Module()
    packed = _Params4bit(torch.zeros(n // 2, 1, dtype=torch.uint8), requires_grad=False)
    packed.quant_state = _QuantState((out_f, in_f), blocks, nested)
    layer.weight = packed
    layer.bias = nn.Parameter(torch.zeros(out_f))
    st = packed.quant_state
    expected = n // 2 + out_f * 4 + st.code.numel() * 4
    if nested:
        expected += blocks * 1 + 4 + st.state2.absmax.numel() * 4 + 256 * 4
    else:
        expected += blocks * 4
    report = measure_size(layer)
    assert report.weights_bytes == expected
    assert report.parameters == n + out_f  # logical shape, not the packed byte count
    assert report.dtype_bytes["nf4 (packed uint8)"] == n // 2
    assert report.sparsity_elements == out_f  # packed 4-bit bytes are not inspected for zeros


def test_sparsity_is_fraction_of_exact_zeros() -> None:
    lin = nn.Linear(10, 10)
    with torch.no_grad():
        lin.weight[:3] = 0.0  # 30 of 100
        lin.bias.fill_(1.0)
    report = measure_size(lin)
    assert report.sparsity_elements == 110
    assert report.sparsity == pytest.approx(30 / 110)
    assert measure_size(lin, sparsity=False).sparsity is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_count_zeros_is_count_nonzero_across_the_chunks(dtype: torch.dtype) -> None:
    from mcval.models.zeros import CHUNK, count_zeros

    gen = torch.Generator().manual_seed(0)
    values = torch.randn(CHUNK * 2 + 6, generator=gen)
    values[torch.rand(values.shape, generator=gen) < 0.4] = 0.0
    values[torch.rand(values.shape, generator=gen) < 0.1] = -0.0
    values[:4] = torch.tensor([float("nan"), float("-inf"), 1e-45, -1e-45])
    values = values.to(dtype)
    for t in (values, values[: CHUNK - 1], values[:0], values.reshape(2, -1)[:, 1:], values[::3]):
        assert count_zeros(t) == t.numel() - int(torch.count_nonzero(t))
    assert count_zeros(nn.Parameter(values)) == values.numel() - int(torch.count_nonzero(values))


def _dequantized_zeros(t: torch.Tensor) -> int:
    dense = t.dequantize()
    return dense.numel() - int(torch.count_nonzero(dense))


def test_quantized_zeros_are_the_dequantized_zeros() -> None:
    from mcval.measure.size import _quantized_zeros

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 30, generator=gen)
    x[torch.rand(x.shape, generator=gen) < 0.3] = 0.0
    channel_scales = torch.rand(40, generator=gen, dtype=torch.float64) * 0.1 + 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensor creation is deprecated, still used
        quantized = [
            torch.quantize_per_tensor(x, 0.02, 0, torch.qint8),
            torch.quantize_per_tensor(x, 0.02, 7, torch.qint8),
            torch.quantize_per_tensor(x, 0.02, -100, torch.qint8),
            torch.quantize_per_tensor(x, 0.02, 128, torch.quint8),
            torch.quantize_per_tensor(x, 0.02, 0, torch.quint8),
            torch.quantize_per_tensor(x, 1e-40, 3, torch.qint8),  # subnormal scale: dequantized
            torch.quantize_per_tensor(x, 0.02, 5, torch.qint32),  # not 8-bit: dequantized
            torch.quantize_per_channel(
                x, channel_scales, torch.zeros(40, dtype=torch.long), 0, torch.qint8
            ),
            torch.quantize_per_channel(x, channel_scales, torch.arange(40) % 9 - 4, 0, torch.qint8),
            torch.quantize_per_channel(
                x.t(), channel_scales, torch.arange(40) % 5, 1, torch.quint8
            ),
        ]
    for q in quantized:
        views = [q]
        if q.qscheme() == torch.per_tensor_affine:
            views += [q.t(), q[3:, ::2]]
        for view in views:
            assert _quantized_zeros(view) == _dequantized_zeros(view)


def test_sparsity_of_pruned_dynamic_quantized_model(saved_models: dict[str, Path]) -> None:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    fp32 = _load("bert", saved_models["bert"])
    with torch.no_grad():
        for mod in fp32.modules():
            if isinstance(mod, nn.Linear):
                mod.weight[mod.weight.abs() < mod.weight.abs().median()] = 0.0
    for qconfig in (None, per_channel_dynamic_qconfig):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = {nn.Linear: qconfig} if qconfig else {nn.Linear}
            q = quantize_dynamic(fp32, spec, dtype=torch.qint8, inplace=False)
        zeros = elements = 0
        for p in q.parameters():
            if p.is_floating_point():
                zeros += p.numel() - int(torch.count_nonzero(p))
                elements += p.numel()
        for mod in q.modules():
            if type(mod).__name__ == "Linear" and callable(getattr(mod, "_weight_bias", None)):
                for t in mod._weight_bias():
                    if t is not None:
                        zeros += _dequantized_zeros(t) if t.is_quantized else int((t == 0).sum())
                        elements += t.numel()
        report = measure_size(q)
        assert report.sparsity_elements == elements
        assert report.sparsity == zeros / elements
        assert report.sparsity > 0.3  # half of every Linear weight (not embeddings) pruned


def test_meta_model_counts_by_identity(saved_models: dict[str, Path]) -> None:
    real = _load("gpt2", saved_models["gpt2"])
    with torch.device("meta"):
        meta = type(real)(real.config)
    assert measure_size(meta).weights_bytes == measure_size(real).weights_bytes
    assert measure_size(meta).sparsity is None


def test_files_size_counts_each_file_once(tmp_path: Path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"y" * 24)
    assert files_size([a, b, a]) == 1024


@pytest.mark.slow
def test_whisper_small_from_config_is_922_15() -> None:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(**WHISPER_SMALL)
    # Built without the random init (it takes ~10 s here); to_empty gives real storages and
    # transformers' own tie_weights re-ties proj_out to the decoder embedding.
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model = model.to_empty(device="cpu")
    model.tie_weights()
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    report = measure_size(model, sparsity=False)
    assert report.parameters == 241_734_912
    assert report.weights_bytes == 241_734_912 * 4
    assert round(report.weights_mb, 2) == 922.15
    assert report.weights_bytes / MIB == report.weights_mb
