"""Builders of tiny models for tests: random weights from small configs, tokenizers trained
on the fly with ``tokenizers``, saved with ``save_pretrained`` (safetensors) to a directory.

The hub cannot be reached from tests, so every test model is made here in a fraction of a
second. Several areas add builders to this file: add functions, never rename others'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------
# Task builders (tasks area): tiny models for every task, each saved with its
# preprocessor as a loadable directory (safetensors + tokenizer/processor files).
# ---------------------------------------------------------------------------

LOAD_TOLERANT = {"max_other_load": 1.0, "max_spread": 1e6, "stable_attempts": 1}
"""``[measure]`` settings for tests about something other than timing stability: their
timings are never judged unstable, so a busy machine (CI, a second test process) cannot
turn their pass into "re-run". Tests of the stability rules themselves leave these out."""
LOAD_TOLERANT_TOML = "".join(f"{key} = {value}\n" for key, value in LOAD_TOLERANT.items())
QUICK_MEASURE_TOML = (
    "[measure]\nwarmup_calls = 1\nmin_calls = 2\nmin_seconds = 0.05\nthreads = 1\n"
    + LOAD_TOLERANT_TOML
)
"""A short protocol for tests whose subject is not timing (runtimes, artefacts)."""


def write_classification_rows(
    path: Path, labels: Sequence[str] = ("negative", "neutral", "positive")
) -> Path:
    """TASK_CORPUS as a text-classification JSONL file, labels in turn."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"text": t, "label": labels[i % len(labels)]} for i, t in enumerate(TASK_CORPUS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_submission(root: Path, team: str, name: str, doc: Mapping[str, Any] | str) -> Path:
    """Write ``submissions/<team>/<name>.yaml`` under ``root`` and return its path.

    ``doc`` is the file's text as it stands, or a mapping dumped as YAML in its own key
    order (so a test's line numbers follow the order it wrote the fields in)."""
    import yaml

    path = root / "submissions" / team / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = doc if isinstance(doc, str) else yaml.safe_dump(dict(doc), sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def measure_json(sub: Path, capsys: Any) -> dict[str, Any]:
    """``mcval measure <sub> --device cpu --json`` in this process: the figures it printed,
    after asserting it exited 0 (its output is the failure message)."""
    import json

    from mcval.cli import main

    capsys.readouterr()
    rc = main(["measure", str(sub), "--device", "cpu", "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    return json.loads(out)


TASK_CORPUS: tuple[str, ...] = (
    "the quick brown fox jumps over the lazy dog",
    "hello world from a tiny model",
    "one two three four five six seven eight nine ten",
    "alice lives in paris and bob works in london",
    "to be or not to be that is the question",
    "a model compression course measures size speed and quality",
    "whether tis nobler in the mind to suffer",
    "the cat sat on the mat while the dog slept",
)
"""Text the tiny tokenizers are trained on (lower-case English words)."""

NER_LABELS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def _wordpiece_tokenizer(model_max_length: int = 64) -> Any:
    """A BERT-style WordPiece tokenizer trained on TASK_CORPUS ([CLS] A [SEP] B [SEP])."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers as tok_trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = tok_trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials)
    tok.train_from_iterator(list(TASK_CORPUS) * 4, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def _byte_bpe_tokenizer(
    specials: list[str], vocab_size: int = 400, model_max_length: int = 128
) -> Any:
    """A GPT-2-style byte-level BPE tokenizer (vocab >= 262 so every byte is covered)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import trainers as tok_trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = tok_trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(TASK_CORPUS) * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=specials[0],
        eos_token=specials[0],
        pad_token=specials[0],
        unk_token=specials[0],
        model_max_length=model_max_length,
    )


def _labels(names: Sequence[str]) -> tuple[dict[int, str], dict[str, int]]:
    return dict(enumerate(names)), {n: i for i, n in enumerate(names)}


def build_tiny_bert_classifier(
    path: Path, labels: Sequence[str] = ("negative", "neutral", "positive"), seed: int = 0
) -> Path:
    """Tiny BertForSequenceClassification + WordPiece tokenizer saved to ``path``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tok = _wordpiece_tokenizer()
    id2label, label2id = _labels(labels)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=len(labels),
        id2label=id2label,
        label2id=label2id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_distilbert_classifier(
    path: Path, labels: Sequence[str] = ("negative", "positive"), seed: int = 0
) -> Path:
    """Tiny DistilBertForSequenceClassification (no token_type_ids) saved to ``path``."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tok = _wordpiece_tokenizer()
    id2label, label2id = _labels(labels)
    config = DistilBertConfig(
        vocab_size=len(tok),
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=64,
        num_labels=len(labels),
        id2label=id2label,
        label2id=label2id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    DistilBertForSequenceClassification(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_bert_token_classifier(
    path: Path, labels: Sequence[str] = NER_LABELS, seed: int = 0
) -> Path:
    """Tiny BertForTokenClassification with IOB2 labels saved to ``path``."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    tok = _wordpiece_tokenizer()
    id2label, label2id = _labels(labels)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=len(labels),
        id2label=id2label,
        label2id=label2id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    BertForTokenClassification(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_llama(path: Path, max_positions: int = 128, seed: int = 0) -> Path:
    """Tiny LlamaForCausalLM + byte-level BPE tokenizer saved to ``path``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _byte_bpe_tokenizer(["<|endoftext|>"], model_max_length=max_positions)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_gpt2(path: Path, max_positions: int = 128, seed: int = 0) -> Path:
    """Tiny GPT2LMHeadModel (learned positions, no pad token in config) saved to ``path``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _byte_bpe_tokenizer(["<|endoftext|>"], model_max_length=max_positions)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=max_positions,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_t5(path: Path, seed: int = 0) -> Path:
    """Tiny T5ForConditionalGeneration (text2text / translation) saved to ``path``."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = _byte_bpe_tokenizer(["<pad>", "</s>", "<unk>"], model_max_length=64)
    tok.pad_token, tok.eos_token, tok.unk_token, tok.bos_token = "<pad>", "</s>", "<unk>", None
    config = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    T5ForConditionalGeneration(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


TINY_ENCODER_DECODER = {
    "d_model": 16,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
}
"""Sizes of the tiny encoder-decoder builders (Whisper, NLLB)."""


def whisper_special_ids(tok: Any) -> dict[str, int]:
    """The start, end, pad and bos ids of a Whisper tokenizer, as ``WhisperConfig`` and
    ``GenerationConfig`` take them."""
    start = tok.convert_tokens_to_ids("<|startoftranscript|>")
    end = tok.convert_tokens_to_ids("<|endoftext|>")
    return {
        "decoder_start_token_id": start,
        "eos_token_id": end,
        "pad_token_id": end,
        "bos_token_id": end,
    }


def _tiny_whisper_config(tok: Any) -> Any:
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=len(tok),
        num_mel_bins=80,
        **TINY_ENCODER_DECODER,
        max_source_positions=1500,
        max_target_positions=64,
        begin_suppress_tokens=None,
        suppress_tokens=None,
        **whisper_special_ids(tok),
    )


def build_tiny_whisper(path: Path, seed: int = 0) -> Path:
    """Tiny WhisperForConditionalGeneration + WhisperProcessor (16 kHz, 80 mel bins)."""
    import torch
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>"]
    tok = _byte_bpe_tokenizer([*specials, "<|notimestamps|>"], model_max_length=64)
    torch.manual_seed(seed)
    WhisperForConditionalGeneration(_tiny_whisper_config(tok)).eval().save_pretrained(path)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tok).save_pretrained(
        path
    )
    return path


def build_tiny_vit(
    path: Path,
    labels: Sequence[str] = ("cat", "dog", "bird", "fish", "frog", "horse"),
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Tiny ViTForImageClassification + ViTImageProcessor (resize to ``image_size``)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    id2label, label2id = _labels(labels)
    config = ViTConfig(
        image_size=image_size,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(labels),
        id2label=id2label,
        label2id=label2id,
    )
    torch.manual_seed(seed)
    ViTForImageClassification(config).eval().save_pretrained(path)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


# ---------------------------------------------------------------------------
# GGUF builders (models area): llama.cpp-style GGUF files written with the ``gguf``
# package's GGUFWriter, so tests need neither llama.cpp nor the hub.
# ---------------------------------------------------------------------------


def llama_to_gguf(source: Path, target: Path, weight_type: str = "F16") -> Path:
    """The ``build_tiny_llama`` checkpoint in ``source`` written as a GGUF file ``target``,
    as llama.cpp's convert_hf_to_gguf.py lays it out: tensors renamed (``blk.0.attn_q``),
    q/k rows permuted for its rotary layout, 2-D weights stored as ``weight_type`` (``F32``,
    ``F16``, ``BF16`` or a quantized type such as ``Q8_0``) and the norms kept in F32. No
    tokenizer: transformers builds the model from the metadata alone."""
    import json

    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    layers = config["num_hidden_layers"]
    qtype = gguf.GGMLQuantizationType[weight_type]
    writer = gguf.GGUFWriter(str(target), "llama")
    writer.add_name(source.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(float(config.get("rope_theta") or 10000.0))
    writer.add_vocab_size(config["vocab_size"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)

    def permute(weight: Any, n_head: int) -> Any:
        rows = weight.shape[0] // n_head // 2
        return (
            weight.reshape(n_head, 2, rows, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
        )

    for name, array in load_file(str(source / "model.safetensors")).items():
        base = name.removesuffix(".weight")
        new = names.get_name(base)
        if new is None:
            raise ValueError(f"no GGUF name for {name}")
        data = array.astype(np.float32)
        if base.endswith("q_proj"):
            data = permute(data, heads)
        elif base.endswith("k_proj"):
            data = permute(data, kv_heads)
        if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(f"{new}.weight", data)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(f"{new}.weight", data.astype(np.float16))
        else:
            packed = gguf.quants.quantize(data, qtype)
            writer.add_tensor(f"{new}.weight", packed, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


WHISPER_LANGUAGES = ("en", "de", "fr")


def build_tiny_multilingual_whisper(path: Path, seed: int = 0) -> Path:
    """Tiny multilingual Whisper: language and task tokens in the vocabulary and the
    generation config (``lang_to_id``, ``task_to_id``, ``is_multilingual``), as the real
    multilingual checkpoints have them, so ``generate(language=, task=)`` builds its prompt."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    languages = [f"<|{code}|>" for code in WHISPER_LANGUAGES]
    tasks = ["<|translate|>", "<|transcribe|>"]
    specials = ["<|endoftext|>", "<|startoftranscript|>", *languages, *tasks, "<|notimestamps|>"]
    tok = _byte_bpe_tokenizer(specials, model_max_length=64)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(_tiny_whisper_config(tok)).eval()
    model.generation_config = GenerationConfig(
        no_timestamps_token_id=tok.convert_tokens_to_ids("<|notimestamps|>"),
        is_multilingual=True,
        lang_to_id={t: tok.convert_tokens_to_ids(t) for t in languages},
        task_to_id={t.strip("<|>"): tok.convert_tokens_to_ids(t) for t in tasks},
        max_length=64,
        **whisper_special_ids(tok),
    )
    model.save_pretrained(path)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tok).save_pretrained(
        path
    )
    return path


def build_tiny_nllb(path: Path, seed: int = 0) -> Path:
    """Tiny NLLB (``M2M100ForConditionalGeneration`` + ``NllbTokenizerFast``, whose language
    codes such as ``fra_Latn`` are special tokens), saved to ``path``."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizerFast

    base = _byte_bpe_tokenizer(["</s>", "<s>", "<pad>", "<unk>"], model_max_length=64)
    tok = NllbTokenizerFast(
        tokenizer_object=base._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        src_lang="eng_Latn",
        model_max_length=64,
    )
    config = M2M100Config(
        vocab_size=len(tok),
        **TINY_ENCODER_DECODER,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        decoder_start_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    M2M100ForConditionalGeneration(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path
