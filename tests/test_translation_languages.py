"""Translation languages applied the way each family expects (issue 19): NLLB's source
language token and forced first target token, T5's task prefix, and refusals that say what
to add."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcval.submission.schema import Evaluation
from mcval.tasks import get_task
from mcval.tasks.base import TaskDataError
from mcval.tasks.translation import language_setup
from tests.tiny_models import build_tiny_nllb, build_tiny_t5


def _evaluation(**fields: Any) -> Evaluation:
    return Evaluation.model_validate(
        {"dataset": {"path": "json", "data_files": ["mt.jsonl"]}, "batch_size": 2, **fields}
    )


@pytest.fixture(scope="module")
def nllb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    path = build_tiny_nllb(tmp_path_factory.mktemp("nllb") / "m")
    task = get_task("translation")
    return task.model_class().from_pretrained(path).eval(), task.load_preprocessor(path, None, None)


def test_nllb_gets_source_token_and_forced_target_token(
    nllb: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tok = nllb
    (tmp_path / "mt.jsonl").write_text(
        "".join(json.dumps({"source": s, "target": "salut"}) + "\n" for s in ("hi", "a b c"))
    )
    calls: list[tuple[Any, Any]] = []
    original = model.generate

    def spy(**kwargs: Any) -> Any:
        out = original(**kwargs)
        calls.append((kwargs["input_ids"], out))
        return out

    monkeypatch.setattr(model, "generate", spy)
    evaluation = _evaluation(source_language="deu_Latn", target_language="fra_Latn")
    scores = get_task("translation").evaluate(model, tok, evaluation, tmp_path, "cpu")
    fra, deu = tok.convert_tokens_to_ids(["fra_Latn", "deu_Latn"])
    ((inputs, outputs),) = calls
    assert inputs[:, 0].tolist() == [deu, deu]  # NLLB puts the source language first
    assert outputs[:, 1].tolist() == [fra, fra]  # after the decoder start: the target language
    assert scores.details == {
        "source_language": "deu_Latn",
        "target_language": "fra_Latn",
        "forced_bos_token": "fra_Latn",
    }


def test_nllb_without_languages_or_with_an_unknown_code_is_refused(nllb: tuple[Any, Any]) -> None:
    model, tok = nllb
    with pytest.raises(TaskDataError) as missing:
        language_setup(model, tok, _evaluation(target_language="fra_Latn"))
    assert str(missing.value) == (
        "a m2m_100 model translates into the language its first generated token names: add "
        "evaluation.source_language and evaluation.target_language"
    )
    with pytest.raises(TaskDataError) as unknown:
        language_setup(model, tok, _evaluation(source_language="eng_Latn", target_language="fr"))
    assert str(unknown.value).startswith(
        "evaluation.target_language: 'fr' is not a language code of this model's tokenizer"
    )


def test_t5_gets_its_task_prefix_from_the_language_codes(tmp_path: Path) -> None:
    path = build_tiny_t5(tmp_path / "t5")
    task = get_task("translation")
    model, tok = task.model_class().from_pretrained(path), task.load_preprocessor(path, None, None)
    prefix, forced, applied = language_setup(
        model, tok, _evaluation(source_language="en", target_language="de")
    )
    assert prefix == "translate English to German: "
    assert forced is None
    assert applied["source_prefix"] == "translate English to German: "
    own = _evaluation(source_language="en", target_language="de", source_prefix="de: ")
    assert language_setup(model, tok, own)[0] == "de: "
    with pytest.raises(TaskDataError, match=r"T5 translates between en, de, fr, ro only"):
        language_setup(model, tok, _evaluation(source_language="en", target_language="ru"))
