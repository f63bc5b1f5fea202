"""Text and token classification on tiny random BERT/DistilBERT models and local data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from seqeval.metrics import f1_score, precision_score, recall_score

from mcval.errors import InputError
from mcval.submission.schema import Benchmark, Evaluation
from mcval.tasks import get_task
from mcval.tasks.base import TaskDataError
from tests.tiny_models import (
    TASK_CORPUS,
    build_tiny_bert_classifier,
    build_tiny_bert_token_classifier,
    build_tiny_distilbert_classifier,
)

TEXT = get_task("text-classification")
TOKENS = get_task("token-classification")
SENTIMENTS = ("negative", "neutral", "positive")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def evaluation(**fields: Any) -> Evaluation:
    fields.setdefault("dataset", {"path": "json", "data_files": ["eval.jsonl"]})
    return Evaluation.model_validate(fields)


def sentence(i: int) -> str:
    """Sentences of varied length (so batches really pad), some with unseen words."""
    words = " ".join(TASK_CORPUS).split()
    start = (i * 7) % len(words)
    extra = " parisians zebra" if i % 3 == 0 else ""
    return " ".join(words[start : start + 2 + (i * 5) % 17]) + extra


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    path = build_tiny_bert_classifier(tmp_path_factory.mktemp("bert"), labels=SENTIMENTS)
    model = TEXT.model_class().from_pretrained(path).eval()
    return model, TEXT.load_preprocessor(path, None, None)


@pytest.fixture()
def sentiment_repo(tmp_path: Path) -> Path:
    rows = [{"text": sentence(i), "label": SENTIMENTS[(i * 2) % 3]} for i in range(24)]
    write_jsonl(tmp_path / "eval.jsonl", rows)
    return tmp_path


def hand_predictions(model: Any, tokenizer: Any, texts: list[str]) -> list[int]:
    out = []
    with torch.no_grad():
        for text in texts:
            logits = model(**tokenizer(text, return_tensors="pt")).logits
            out.append(int(logits[0].argmax()))
    return out


def hand_macro_f1(pred: list[int], gold: list[int]) -> float:
    scores = []
    for c in sorted(set(pred) | set(gold)):
        tp = sum(p == g == c for p, g in zip(pred, gold, strict=True))
        fp = sum(p == c != g for p, g in zip(pred, gold, strict=True))
        fn = sum(g == c != p for p, g in zip(pred, gold, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    return sum(scores) / len(scores)


def test_text_accuracy_and_macro_f1_equal_hand_computation(
    bert: tuple[Any, Any], sentiment_repo: Path
) -> None:
    model, tokenizer = bert
    rows = [json.loads(line) for line in (sentiment_repo / "eval.jsonl").read_text().splitlines()]
    pred = hand_predictions(model, tokenizer, [r["text"] for r in rows])
    gold = [SENTIMENTS.index(r["label"]) for r in rows]
    result = TEXT.evaluate(model, tokenizer, evaluation(batch_size=8), sentiment_repo, "cpu")
    assert list(result) == ["accuracy", "macro_f1"]
    assert result["accuracy"] == sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold)
    assert result["macro_f1"] == pytest.approx(hand_macro_f1(pred, gold), abs=1e-12)
    one_by_one = TEXT.evaluate(model, tokenizer, evaluation(batch_size=1), sentiment_repo, "cpu")
    assert one_by_one == result


def test_text_labels_as_class_ids_and_sentence_pairs(bert: tuple[Any, Any], tmp_path: Path) -> None:
    model, tokenizer = bert
    rows = [{"a": sentence(i), "b": sentence(i + 5), "y": i % 3} for i in range(10)]
    write_jsonl(tmp_path / "eval.jsonl", rows)
    with torch.no_grad():
        pred = [
            int(model(**tokenizer(r["a"], r["b"], return_tensors="pt")).logits[0].argmax())
            for r in rows
        ]
    expected = sum(p == r["y"] for p, r in zip(pred, rows, strict=True)) / len(rows)
    ev = evaluation(columns={"text": "a", "text_pair": "b", "label": "y"}, metrics=["accuracy"])
    assert TEXT.evaluate(model, tokenizer, ev, tmp_path, "cpu") == {"accuracy": expected}


def test_label_outside_the_model_label_set_names_the_row(
    bert: tuple[Any, Any], tmp_path: Path
) -> None:
    model, tokenizer = bert
    write_jsonl(
        tmp_path / "eval.jsonl",
        [{"text": "hi", "label": "positive"}] * 2 + [{"text": "ho", "label": "happy"}],
    )
    with pytest.raises(TaskDataError) as err:
        TEXT.evaluate(model, tokenizer, evaluation(), tmp_path, "cpu")
    assert str(err.value) == (
        "eval.jsonl row 3: label 'happy' is not one of the model's labels "
        "(negative, neutral, positive)"
    )
    write_jsonl(tmp_path / "eval.jsonl", [{"text": "hi", "label": 7}])
    with pytest.raises(TaskDataError) as err:
        TEXT.evaluate(model, tokenizer, evaluation(), tmp_path, "cpu")
    assert str(err.value) == "eval.jsonl row 1: label id 7 is outside the model's label ids 0..2"


def test_label_names_match_ignoring_case(bert: tuple[Any, Any], tmp_path: Path) -> None:
    model, tokenizer = bert
    write_jsonl(tmp_path / "eval.jsonl", [{"text": "hello world", "label": "POSITIVE"}])
    pred = hand_predictions(model, tokenizer, ["hello world"])[0]
    result = TEXT.evaluate(model, tokenizer, evaluation(metrics=["accuracy"]), tmp_path, "cpu")
    assert result == {"accuracy": float(pred == 2)}


def test_distilbert_takes_no_token_type_ids(tmp_path: Path, sentiment_repo: Path) -> None:
    path = build_tiny_distilbert_classifier(tmp_path / "distil", labels=("negative", "positive"))
    model = TEXT.model_class().from_pretrained(path).eval()
    tokenizer = TEXT.load_preprocessor(path, None, None)
    rows = [{"text": sentence(i), "label": ("negative", "positive")[i % 2]} for i in range(12)]
    write_jsonl(sentiment_repo / "eval.jsonl", rows)
    pred = hand_predictions(model, tokenizer, [r["text"] for r in rows])
    expected = sum(p == i % 2 for i, p in enumerate(pred)) / len(rows)
    result = TEXT.evaluate(model, tokenizer, evaluation(batch_size=5), sentiment_repo, "cpu")
    assert result["accuracy"] == expected


def test_text_benchmark_call_is_one_fixed_forward(bert: tuple[Any, Any]) -> None:
    model, tokenizer = bert
    bench = Benchmark.model_validate({"batch_size": 3, "input": {"tokens": 40}})
    call = TEXT.benchmark_call(model, tokenizer, bench, "cpu")
    first, second = call(), call()
    assert first.shape == (3, 3)
    assert torch.equal(first, second)
    again = TEXT.benchmark_call(model, tokenizer, bench, "cpu")()
    assert torch.equal(first, again)  # seeded: the same input every time it is built
    too_long = Benchmark.model_validate({"input": {"tokens": 100}})
    with pytest.raises(TaskDataError) as err:
        TEXT.benchmark_call(model, tokenizer, too_long, "cpu")
    assert str(err.value) == "benchmark.input.tokens is 100 tokens; the model takes at most 64"
    wrong = Benchmark.model_validate({"input": {"seconds": 3}})
    # The same table and words as mcval check (submission.schema.input_shape_problem).
    fits = r"\{seconds: \.\.\.\} does not fit text-classification; use \{tokens: \.\.\.\}"
    with pytest.raises(InputError, match=fits):
        TEXT.benchmark_call(model, tokenizer, wrong, "cpu")


def test_default_input_is_fitted_to_a_shorter_model(bert: tuple[Any, Any]) -> None:
    model, tokenizer = bert
    call = TEXT.benchmark_call(model, tokenizer, Benchmark(), "cpu")  # input left out
    assert call.note == (
        "benchmark.input: the model takes at most 64 tokens, fewer than the default 128 "
        "tokens; timed with 64 tokens instead (set benchmark.input to choose)"
    )
    chosen = Benchmark.model_validate({"input": {"tokens": 64}})
    explicit = TEXT.benchmark_call(model, tokenizer, chosen, "cpu")
    assert explicit.note is None
    assert torch.equal(call(), explicit())  # the same 64-token input


# --- token classification -------------------------------------------------------------

NER_ROWS = [
    (["alice", "lives", "in", "paris"], ["B-PER", "O", "O", "B-LOC"]),
    (
        ["bob", "marley", "works", "in", "london", "town"],
        ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"],
    ),
    (["the", "parisians", "sat"], ["O", "B-LOC", "O"]),
    (["zebra"], ["O"]),
    (["hello", "world", "from", "alice", "and", "bob"], ["O", "O", "O", "B-PER", "O", "B-PER"]),
    (["to", "be", "or", "not"], ["O", "O", "O", "O"]),
    (
        ["londoners", "love", "london", "and", "paris", "too"],
        ["B-LOC", "O", "B-LOC", "O", "B-LOC", "O"],
    ),
]


@pytest.fixture(scope="module")
def ner(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    path = build_tiny_bert_token_classifier(tmp_path_factory.mktemp("ner"), seed=3)
    model = TOKENS.model_class().from_pretrained(path).eval()
    return model, TOKENS.load_preprocessor(path, None, None)


def hand_tags(model: Any, tokenizer: Any, words: list[str]) -> list[str]:
    encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        best = model(**encoded).logits[0].argmax(-1).tolist()
    tags: dict[int, str] = {}
    for position, word in enumerate(encoded.word_ids(0)):
        if word is not None and word not in tags:
            tags[word] = model.config.id2label[best[position]]
    return [tags[i] for i in range(len(words))]


def test_entity_scores_equal_seqeval_on_first_subtoken_predictions(
    ner: tuple[Any, Any], tmp_path: Path
) -> None:
    model, tokenizer = ner
    write_jsonl(tmp_path / "eval.jsonl", [{"tokens": w, "ner_tags": t} for w, t in NER_ROWS])
    assert len(tokenizer("parisians")["input_ids"]) > 3  # really split into sub-tokens
    pred = [hand_tags(model, tokenizer, w) for w, _ in NER_ROWS]
    gold = [t for _, t in NER_ROWS]
    metrics = ["entity_precision", "entity_recall", "entity_f1"]
    result = TOKENS.evaluate(
        model, tokenizer, evaluation(metrics=metrics, batch_size=4), tmp_path, "cpu"
    )
    assert result == {
        "entity_precision": precision_score(gold, pred, zero_division=0),
        "entity_recall": recall_score(gold, pred, zero_division=0),
        "entity_f1": f1_score(gold, pred, zero_division=0),
    }
    single = TOKENS.evaluate(
        model, tokenizer, evaluation(metrics=metrics, batch_size=1), tmp_path, "cpu"
    )
    assert single == result


def test_bad_tags_name_the_row(ner: tuple[Any, Any], tmp_path: Path) -> None:
    model, tokenizer = ner
    write_jsonl(
        tmp_path / "eval.jsonl",
        [{"tokens": ["a", "b"], "ner_tags": ["O", "O"]}, {"tokens": ["a"], "ner_tags": ["B-ORG"]}],
    )
    with pytest.raises(TaskDataError) as err:
        TOKENS.evaluate(model, tokenizer, evaluation(), tmp_path, "cpu")
    assert str(err.value) == (
        "eval.jsonl row 2: label 'B-ORG' is not one of the model's labels "
        "(O, B-PER, I-PER, B-LOC, I-LOC)"
    )
    write_jsonl(tmp_path / "eval.jsonl", [{"tokens": ["a", "b"], "ner_tags": ["O"]}])
    with pytest.raises(TaskDataError) as err:
        TOKENS.evaluate(model, tokenizer, evaluation(), tmp_path, "cpu")
    assert str(err.value) == "eval.jsonl row 1: 2 words but 1 tags"
