"""Metric functions against hand-counted values on fixed inputs (no models involved)."""

from __future__ import annotations

import math

import pytest

from mcval.tasks import scoring


def test_wer_and_cer_match_hand_counted_edits() -> None:
    refs = ["The cat sat on the mat.", "Hello, world!"]
    hyps = ["the cat sit on mat", "hello big world"]
    # words: sat→sit (1 sub) + "the" deleted (1) over 6 words; "big" inserted (1) over 2 words
    # chars: a→i (1) + "the " deleted (4) over 22; "big " inserted (4) over 11
    rates = scoring.error_rates(hyps, refs)
    assert rates["wer"] == pytest.approx(3 / 8)
    assert rates["cer"] == pytest.approx(9 / 33)


def test_wer_is_zero_after_normalisation_and_counts_numbers_as_written() -> None:
    assert scoring.error_rates(["hello   WORLD"], ["Hello, world."])["wer"] == 0.0
    assert scoring.error_rates(["i have 7 cats"], ["I have seven cats."])["wer"] == 0.25


def test_normalize_transcript_rules() -> None:
    text = "Don't STOP—now!  It's 3.5% of $5"
    assert scoring.normalize_transcript(text) == "dont stop now its 3 5 of $5"
    assert scoring.normalize_transcript("  Ｈｅｌｌｏ\t\nworld ") == "hello world"


def test_empty_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="empty after normalisation"):
        scoring.error_rates(["x"], ["..."])


def test_accuracy_and_macro_f1_hand_counted() -> None:
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    assert scoring.accuracy(pred, gold) == pytest.approx(3 / 5)
    # F1 per class: a = 2·1/(2+2) = 0.5, b = 2·2/(3+2) = 0.8, c = 0 (never predicted)
    assert scoring.macro_f1(pred, gold) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_macro_f1_equals_scikit_learn_definition() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    gold = [0, 1, 2, 2, 1, 0, 3, 3, 3, 1]
    pred = [0, 2, 2, 2, 1, 1, 3, 0, 4, 1]
    expected = sklearn_metrics.f1_score(gold, pred, average="macro", zero_division=0)
    assert scoring.macro_f1(pred, gold) == pytest.approx(expected)


def test_entity_scores_hand_counted() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "B-PER"]]
    # gold entities: PER(0-1), LOC(3), LOC(0); predicted: PER(0-1), LOC(0), PER(1)
    scores = scoring.entity_scores(pred, gold)
    assert scores["entity_precision"] == pytest.approx(2 / 3)
    assert scores["entity_recall"] == pytest.approx(2 / 3)
    assert scores["entity_f1"] == pytest.approx(2 / 3)


def test_entity_scores_without_predicted_entities_are_zero() -> None:
    scores = scoring.entity_scores([["O", "O"]], [["B-PER", "O"]])
    assert scores == {"entity_precision": 0.0, "entity_recall": 0.0, "entity_f1": 0.0}


def test_bleu_and_chrf_bounds() -> None:
    refs = ["the quick brown fox jumps over the lazy dog", "hello world again"]
    assert scoring.bleu(refs, refs) == pytest.approx(100.0)
    assert scoring.chrf(refs, refs) == pytest.approx(100.0)
    assert scoring.bleu(["zzz qqq", "xxx"], refs) == 0.0
    partial = scoring.bleu(["the quick brown fox jumps over a lazy dog", "hello world"], refs)
    assert 0.0 < partial < 100.0


def test_perplexity_from_summed_nll() -> None:
    assert scoring.perplexity(math.log(4) * 10, 10) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="at least one scored token"):
        scoring.perplexity(1.0, 0)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        scoring.accuracy([1, 2], [1])


def test_the_two_normalisers_on_the_issue_example() -> None:
    """mcval's ``basic`` keeps digits as written and splits at hyphens; Whisper's English
    normaliser standardises numbers, spellings and fillers, as its published WERs do."""
    assert scoring.normalize_transcript("1-2-345-678910.", "basic") == "1 2 345 678910"
    english = scoring.normalize_transcript
    assert english("Uh, I've got twenty-five colours!", "whisper-english") == (
        "i have got 25 colors"
    )
    refs, hyps = ["I have twenty five apples."], ["i have 25 apples"]
    assert scoring.error_rates(hyps, refs, "whisper-english")["wer"] == 0.0
    assert scoring.error_rates(hyps, refs, "basic")["wer"] == pytest.approx(2 / 5)
