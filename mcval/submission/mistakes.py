"""Mistakes students really made that the schema alone lets through, found without a model.

Each of these used to pass ``mcval check`` and fail only on the GPU runner, minutes later:
a placeholder left by the docs or by ``import-table`` (``TODO-team``, ``<sha>``), a web
address as the model id, an unknown column role, a zero weight size, BLEU written as a
0–1 score, a task the local model's ``config.json`` cannot do. Most checks read the raw
(unit-converted) data, so they are reported together with the schema's own errors: a
student gets every problem of a file in one round.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcval.errors import InputError
from mcval.metrics import METRICS, TASK_ROLES, TASKS, MetricKind
from mcval.submission.yamlsafe import FieldPath, YamlDocument

_PLACEHOLDER = re.compile(r"^\s*(?:todo(?![a-z0-9])|<[a-z][a-z0-9 _./-]*>\s*$)", re.IGNORECASE)
"""``TODO…`` (as ``import-table`` writes them) or ``<…>`` (as the docs write them)."""
_REVISION_FIX = (
    "write the {what}'s 40-character commit sha (submissions/README.md says where to find it)"
)
_PLACEHOLDER_FIX: dict[FieldPath, str] = {
    ("team",): "write your team's name (and move the file to submissions/<team>/)",
    ("model", "id"): "write the hub id 'org/name' or the model's directory in this repository",
    ("model", "revision"): _REVISION_FIX.format(what="model"),
    ("method", "name"): "write the method",
    ("method", "baseline"): "write the id 'team/name' of the submission this one compresses",
    ("evaluation", "dataset", "path"): "write the dataset you evaluated on",
    ("evaluation", "dataset", "revision"): _REVISION_FIX.format(what="dataset"),
}
_CONFIG_LIMIT = 1 << 20
"""A config.json larger than this is not read here (the runner reads it when loading)."""


def is_placeholder(text: str) -> bool:
    """Whether ``text`` is a placeholder left from a template or an import."""
    return _PLACEHOLDER.match(text) is not None


def _strings(value: Any, path: FieldPath) -> Iterator[tuple[FieldPath, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _section(data: dict[str, Any], *path: str) -> Any:
    value: Any = data
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _hub_id_of(url: str, kind: str) -> str | None:
    """The ``org/name`` a huggingface.co address points at, if it does."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if not (parts.hostname or "").endswith("huggingface.co"):
        return None
    segments = [s for s in parts.path.split("/") if s]
    if kind == "dataset":
        if segments[:1] != ["datasets"]:
            return None
        segments = segments[1:]
    elif segments[:1] in (["datasets"], ["spaces"]):
        return None
    return "/".join(segments[:2]) if len(segments) >= 2 else None


def _url_error(doc: YamlDocument, path: FieldPath, written: str, kind: str) -> InputError:
    hub_id = _hub_id_of(written, kind)
    fix = f"write the hub id {hub_id!r}" if hub_id else "write the hub id 'org/name'"
    return doc.error(f"{'.'.join(path)}: {written!r} is a web address; {fix}", path)


def _is_web_address(text: str) -> bool:
    return re.match(r"^\s*(?:[a-z][a-z0-9+.-]*://|www\.|huggingface\.co/)", text, re.I) is not None


def raw_mistakes(data: dict[str, Any], doc: YamlDocument) -> list[InputError]:
    """Every mistake of this module that the raw (unit-converted) data shows."""
    errors: list[InputError] = []
    for path, text in _strings(data, ()):
        if is_placeholder(text):
            fix = _PLACEHOLDER_FIX.get(path, "replace it with the real value")
            dotted = ".".join(map(str, path))
            errors.append(doc.error(f"{dotted}: {text!r} is a placeholder; {fix}", path))
    for path, kind in ((("model", "id"), "model"), (("evaluation", "dataset", "path"), "dataset")):
        written = _section(data, *path)
        if isinstance(written, str) and _is_web_address(written):
            errors.append(_url_error(doc, path, written, kind))
    weights = _section(data, "reported", "weights_mb")
    if isinstance(weights, int | float) and not isinstance(weights, bool) and weights == 0:
        errors.append(
            doc.error(
                "reported.weights_mb: a model cannot weigh 0 MB; write the size of its weights "
                "in MiB, or leave the field out if you did not measure it",
                ("reported", "weights_mb"),
            )
        )
    errors += _score_as_fraction(data, doc)
    errors += _unknown_roles(data, doc)
    return errors


def _score_as_fraction(data: dict[str, Any], doc: YamlDocument) -> list[InputError]:
    """BLEU/chrF written as 0.62: sacrebleu's scores are 0–100, a 0–1 one is a slip."""
    quality = _section(data, "reported", "quality")
    errors = []
    for metric, value in quality.items() if isinstance(quality, dict) else ():
        info = METRICS.get(metric)
        if info is None or info.kind is not MetricKind.SCORE100:
            continue
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1:
            errors.append(
                doc.error(
                    f"{metric} = {value:g} looks like a 0–1 score; {info.label} is 0–100 here: "
                    f"write {value * 100:g}",
                    ("reported", "quality", metric),
                )
            )
    return errors


def _unknown_roles(data: dict[str, Any], doc: YamlDocument) -> list[InputError]:
    """``evaluation.columns`` keys are the task's roles (``mcval.metrics.TASK_ROLES``)."""
    task = _section(data, "model", "task")
    columns = _section(data, "evaluation", "columns")
    if not (isinstance(task, str) and task in TASKS and isinstance(columns, dict)):
        return []
    roles = list(TASK_ROLES[task])
    errors = []
    for role in columns:
        if role in roles:
            continue
        hint = difflib.get_close_matches(str(role), roles, n=1)
        fix = f"did you mean {hint[0]!r}?" if hint else f"roles: {', '.join(roles)}"
        errors.append(
            doc.error(
                f"evaluation.columns: unknown role {role!r} for {task}; {fix}",
                ("evaluation", "columns", role),
                key=True,
            )
        )
    return errors


_NEEDS_ENCODER_DECODER = {
    "translation": True,
    "causal-lm": False,
    "automatic-speech-recognition": True,
}
"""Tasks whose model class fixes the architecture: ``AutoModelForSeq2SeqLM`` and
``AutoModelForSpeechSeq2Seq`` load only encoder-decoder models, ``AutoModelForCausalLM``
only decoder-only ones."""
_INSTEAD = {
    "translation": "use causal-lm or another model",
    "causal-lm": "use translation or another model",
    "automatic-speech-recognition": "speech models are measured as sequence-to-sequence "
    "(AutoModelForSpeechSeq2Seq): use an encoder-decoder model such as Whisper",
}


def task_model_problem(task: str, model_dir: Path, shown: str) -> str | None:
    """Why the local model in ``model_dir`` cannot do ``task``, read from its config.json
    (no transformers import); None when it can, or when the config does not tell."""
    needs = _NEEDS_ENCODER_DECODER.get(task)
    config_file = model_dir / "config.json"
    if needs is None or not config_file.is_file() or config_file.stat().st_size > _CONFIG_LIMIT:
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the runner reports an unreadable config when it loads the model
    if not isinstance(config, dict) or not ({"architectures", "model_type"} & set(config)):
        return None
    is_encoder_decoder = config.get("is_encoder_decoder") is True
    if is_encoder_decoder == needs:
        return None
    architectures = config.get("architectures")
    named = (
        ", ".join(map(str, architectures))
        if isinstance(architectures, list) and architectures
        else f"a {config.get('model_type')} model"
    )
    has = "encoder-decoder" if is_encoder_decoder else "not encoder-decoder"
    if task == "translation":
        has = "decoder-only"
    wants = "an encoder-decoder" if needs else "a decoder-only"
    return (
        f"model.task: {task} needs {wants} model, and {shown}/config.json describes {named} "
        f"({has}); {_INSTEAD[task]}"
    )


def nothing_reported(data: dict[str, Any], doc: YamlDocument) -> InputError | None:
    """A warning when ``reported`` holds no number at all (an imported row, a forgotten
    copy of ``mcval measure``'s output): the bot has nothing of the team's to check."""
    reported = _section(data, "reported")
    if not isinstance(reported, dict):
        reported = {}
    quality = reported.get("quality")
    figures = [v for k, v in reported.items() if k not in {"quality", "hardware"}]
    if any(v is not None for v in figures) or (isinstance(quality, dict) and quality):
        return None
    return doc.error(
        "reported: no number is reported; the bot will measure the row but has nothing of "
        "yours to check (run `mcval measure` and copy its figures here)",
        ("reported",),
        key=True,
    )
