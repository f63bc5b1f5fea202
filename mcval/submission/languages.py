"""Languages, speech task and normaliser: which fields a model family needs, without torch.

A multilingual Whisper left alone detects the language per clip (and may translate into
the wrong one); NLLB, M2M100 and mBART-50 emit whatever language their first generated
token says. So ``mcval check`` reads a local model's ``config.json`` (and Whisper's
``generation_config.json``) and asks for ``evaluation.language`` / ``source_language`` /
``target_language`` where the family needs them; for a hub model the runner asks, since
its config is not here. Fields of the other task are refused (a typo of intent).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcval.policy import Policy
from mcval.submission.schema import Submission
from mcval.submission.yamlsafe import FieldPath

ASR = "automatic-speech-recognition"
TRANSLATION = "translation"
_TASK_FIELDS: dict[str, tuple[str, ...]] = {
    ASR: ("language", "task", "normalizer"),
    TRANSLATION: ("source_language", "target_language"),
}
_CONFIG_LIMIT = 1 << 20
ENGLISH = ("en", "english")
WHISPER_ENGLISH_VOCAB = 51864
"""Vocabulary size of the English-only (``.en``) Whisper models; multilingual ones have more."""
FORCED_BOS_FAMILIES = {"m2m_100": "M2M100 / NLLB", "mbart": "mBART"}
"""Translation families whose output language is the first generated token."""

Problem = tuple[str, FieldPath]


def _json(path: Path) -> dict[str, Any]:
    """A small JSON object file, or ``{}`` when it is missing, large or unreadable (the
    runner reports those when it loads the model)."""
    if not path.is_file() or path.stat().st_size > _CONFIG_LIMIT:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def whisper_is_multilingual(config: dict[str, Any], generation: dict[str, Any]) -> bool:
    """Whether a Whisper config describes a multilingual model (not a ``.en`` one)."""
    flag = generation.get("is_multilingual")
    if isinstance(flag, bool):
        return flag
    return int(config.get("vocab_size") or WHISPER_ENGLISH_VOCAB) > WHISPER_ENGLISH_VOCAB


def fill_normalizer(sub: Submission, policy: Policy) -> None:
    """Speech recognition: the policy's normaliser when the submission names none, so the
    choice is part of the submission the runner receives and the fingerprint sees."""
    if sub.model.task == ASR and sub.evaluation.normalizer is None:
        sub.evaluation.normalizer = policy.measure.normalizer


def language_problems(sub: Submission, model_dir: Path | None) -> list[Problem]:
    """Problems with the language fields; ``model_dir`` is a local model's directory
    (``None`` for a hub model, whose family the runner checks)."""
    task = sub.model.task
    evaluation = sub.evaluation
    problems: list[Problem] = []
    for other, fields in _TASK_FIELDS.items():
        if other == task:
            continue
        for name in fields:
            if getattr(evaluation, name) is not None:
                problems.append(
                    (
                        f"evaluation.{name} applies to {other} only, not to {task}; remove it",
                        ("evaluation", name),
                    )
                )
    if model_dir is None:
        return problems
    config = _json(model_dir / "config.json")
    family = config.get("model_type")
    if task == ASR and family == "whisper":
        generation = _json(model_dir / "generation_config.json")
        problems += _whisper_problems(sub, config, generation)
    elif task == TRANSLATION and family in FORCED_BOS_FAMILIES:
        missing = [
            name
            for name in ("source_language", "target_language")
            if getattr(evaluation, name) is None
        ]
        if missing:
            example = _code_example(model_dir, family)
            problems.append(
                (
                    f"{FORCED_BOS_FAMILIES[family]} translates into the language its first "
                    f"generated token names: add {' and '.join(f'evaluation.{m}' for m in missing)}"
                    f" ({example})",
                    ("evaluation",),
                )
            )
    return problems


def _code_example(model_dir: Path, family: str) -> str:
    tokenizer = _json(model_dir / "tokenizer_config.json").get("tokenizer_class", "")
    if "Nllb" in str(tokenizer):
        return "NLLB codes, e.g. source_language: eng_Latn, target_language: fra_Latn"
    if family == "mbart":
        return "mBART-50 codes, e.g. source_language: en_XX, target_language: fr_XX"
    return "M2M100 codes, e.g. source_language: en, target_language: fr"


def _whisper_problems(
    sub: Submission, config: dict[str, Any], generation: dict[str, Any]
) -> list[Problem]:
    evaluation = sub.evaluation
    if not whisper_is_multilingual(config, generation):
        problems: list[Problem] = []
        if evaluation.language is not None and evaluation.language.lower() not in ENGLISH:
            problems.append(
                (
                    f"evaluation.language: {evaluation.language!r}, but this English-only "
                    "Whisper (.en) transcribes English only; remove evaluation.language",
                    ("evaluation", "language"),
                )
            )
        if evaluation.task == "translate":
            problems.append(
                (
                    "evaluation.task: an English-only Whisper (.en) cannot translate; remove "
                    "evaluation.task",
                    ("evaluation", "task"),
                )
            )
        return problems
    if evaluation.language is None:
        return [
            (
                "this Whisper is multilingual: without evaluation.language it detects the "
                "language clip by clip and may transcribe or translate into another one; add "
                "evaluation.language (the language spoken in the clips, e.g. 'language: en') "
                "and, to translate into English, 'task: translate'",
                ("evaluation",),
            )
        ]
    codes = generation.get("lang_to_id")
    language = evaluation.language.lower()
    if isinstance(codes, dict) and len(language) <= 3 and f"<|{language}|>" not in codes:
        known = ", ".join(sorted(k.strip("<|>") for k in codes)[:12])
        return [
            (
                f"evaluation.language: {evaluation.language!r} is not a language of this "
                f"Whisper; use its code ({known}, ...) or its English name",
                ("evaluation", "language"),
            )
        ]
    return []
