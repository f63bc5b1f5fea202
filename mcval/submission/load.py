"""Reading one submission file: strict YAML → unit conversion → schema → per-file rules.

Every problem becomes an ``InputError`` at ``path:line:col`` with a sentence a student
understands; all problems of a file are reported together so one push fixes them all.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ValidationError

from mcval.errors import InputError, InputErrors
from mcval.metrics import DEFAULT_METRICS, METRICS, TASK_METRICS, MetricKind, resolve_metric
from mcval.policy import Policy
from mcval.submission.datafiles import LOCAL_BUILDERS, data_file_problems
from mcval.submission.languages import fill_normalizer, language_problems
from mcval.submission.mistakes import (
    is_placeholder,
    nothing_reported,
    raw_mistakes,
    task_model_problem,
)
from mcval.submission.reported import convert_reported
from mcval.submission.schema import (
    NAME_PATTERN,
    Submission,
    input_shape_problem,
    is_commit_sha,
)
from mcval.submission.units import Conversion
from mcval.submission.yamlsafe import FieldPath, Position, YamlDocument, read_yaml

SUFFIXES = (".yaml", ".yml")

_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping (key: value lines)",
    "list_type": "a list (lines starting with '- ')",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
}


def is_local_model(model_id: str, repo_root: Path) -> bool:
    """A model id names a local directory when it starts with './' or exists in the repo."""
    return model_id.startswith("./") or (repo_root / model_id).is_dir()


@dataclass
class LoadedSubmission:
    """A validated submission with everything needed to point back into its file."""

    path: Path
    relpath: str
    id: str
    submission: Submission
    document: YamlDocument
    conversions: list[Conversion] = field(default_factory=list)
    warnings: list[InputError] = field(default_factory=list)

    @property
    def positions(self) -> dict[FieldPath, Position]:
        return self.document.positions

    def line_of(self, *path: str | int) -> int | None:
        """Line of a field (or its nearest present ancestor) in the YAML file."""
        pos = self.document.position(tuple(path))
        return pos[0] if pos else None


def submission_id(path: Path, repo_root: Path, policy: Policy) -> tuple[str, str]:
    """``(id, repo-relative path)`` of a file at ``submissions/<team>/<name>.yaml``."""
    root = repo_root.resolve()
    if path.is_symlink():
        raise InputError("a submission must be a regular file, not a symbolic link", path)
    resolved = path.resolve()
    try:
        relative = resolved.relative_to(root)
    except ValueError:
        raise InputError("the file is outside the repository", path) from None
    parts = relative.parts
    if len(parts) != 3 or parts[0] != policy.submissions_dir or resolved.suffix not in SUFFIXES:
        raise InputError(
            f"a submission lives at {policy.submissions_dir}/<team>/<name>.yaml; "
            "move the file there",
            relative.as_posix(),
        )
    name = resolved.stem
    if not re.match(NAME_PATTERN, name) or not re.match(NAME_PATTERN, parts[1]):
        raise InputError(
            "team and file names may use letters, digits, '.', '_' and '-' only",
            relative.as_posix(),
        )
    return f"{parts[1]}/{name}", relative.as_posix()


def load_submission(path: Path, repo_root: Path, policy: Policy | None = None) -> LoadedSubmission:
    """Read and validate one submission; raises ``InputErrors`` listing every problem."""
    policy = policy or Policy()
    sub_id, relpath = submission_id(path, repo_root, policy)
    doc = read_yaml(path, max_bytes=policy.limits.max_submission_bytes, display_path=relpath)
    if not isinstance(doc.data, dict):
        raise InputError(
            "a submission is a mapping of fields (schema:, team:, model: ...)", relpath, 1, 1
        )
    data: dict[str, Any] = doc.data
    errors: list[InputError] = []
    conversions = convert_reported(data, doc, errors)
    errors += raw_mistakes(data, doc)
    warning = nothing_reported(data, doc)
    try:
        submission = Submission.model_validate(data)
    except ValidationError as exc:
        errors.extend(_explain(err, doc) for err in exc.errors())
        raise InputErrors(_dedupe(errors)) from None
    loaded = LoadedSubmission(
        path=path.resolve(),
        relpath=relpath,
        id=sub_id,
        submission=submission,
        document=doc,
        conversions=conversions,
        warnings=[warning] if warning else [],
    )
    errors.extend(_apply_rules(loaded, policy, repo_root))
    if errors:
        raise InputErrors(_dedupe(errors))
    return loaded


def _dedupe(errors: list[InputError]) -> list[InputError]:
    seen: set[str] = set()
    unique = []
    for error in errors:
        if str(error) not in seen:
            seen.add(str(error))
            unique.append(error)
    return sorted(unique, key=lambda e: (e.line or 0, e.col or 0))


def _model_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model whose fields live at ``loc`` (for 'did you mean' hints)."""
    model: Any = Submission
    for part in loc:
        if not isinstance(part, str):
            continue
        fields = model.model_fields
        name = "schema_" if part == "schema" else part
        if name not in fields:
            return None
        annotation = fields[name].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if model is None:
            return None
    return model


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _explain(err: Any, doc: YamlDocument) -> InputError:
    """Turn one pydantic error into a sentence with a position."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    loc = tuple("schema" if p == "schema_" else p for p in loc)
    dotted = ".".join(str(p) for p in loc) or "submission"
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_for(loc[:-1])
        known = _field_names(parent) if parent else []
        hint = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        where = ".".join(str(p) for p in loc[:-1]) or "the top level"
        message = f"unknown field {loc[-1]!r} in {where}"
        message += f"; did you mean {hint[0]!r}?" if hint else f"; known fields: {', '.join(known)}"
        return doc.error(message, loc, key=True)
    if kind == "missing":
        return doc.error(f"missing required field {dotted!r}", loc[:-1])
    if kind in _TYPE_WORDS:
        got = err.get("input")
        got_word = {
            str: "text",
            int: "a number",
            float: "a number",
            bool: "true/false",
            list: "a list",
            dict: "a mapping",
            type(None): "nothing",
        }.get(type(got), "something else")
        hint = " (put it in quotes)" if kind == "string_type" and got is not None else ""
        return doc.error(f"{dotted}: expected {_TYPE_WORDS[kind]}, got {got_word}{hint}", loc)
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        options = re.findall(r"'([^']*)'", expected)
        hint = difflib.get_close_matches(str(err.get("input")), options, n=1)
        message = f"{dotted}: {err.get('input')!r} is not one of {expected}"
        return doc.error(message + (f"; did you mean {hint[0]!r}?" if hint else ""), loc)
    if kind == "string_pattern_mismatch":
        return doc.error(
            f"{dotted}: {err.get('input')!r} is not a valid value here "
            "(letters, digits, '.', '_' and '-'; ids are 'team/name')",
            loc,
        )
    msg = err["msg"].removeprefix("Value error, ")
    return doc.error(f"{dotted}: {msg}", loc)


def _apply_rules(loaded: LoadedSubmission, policy: Policy, repo_root: Path) -> list[InputError]:
    """Rules that span fields; fills the task's defaults in place."""
    sub = loaded.submission
    doc = loaded.document
    errors: list[InputError] = []
    task = sub.model.task
    team_dir = loaded.id.split("/")[0]
    if sub.team != team_dir:
        errors.append(
            doc.error(
                f"team {sub.team!r} does not match the directory {team_dir!r}; "
                f"a team's files live in {policy.submissions_dir}/{sub.team}/",
                ("team",),
            )
        )
    if task not in policy.allowed_tasks:
        errors.append(doc.error(f"task {task!r} is not allowed in this course", ("model", "task")))
    allowed = policy.allowed_datasets.get(task)
    if allowed and sub.evaluation.dataset.path not in allowed:
        errors.append(
            doc.error(
                f"dataset {sub.evaluation.dataset.path!r} is not allowed for {task}; "
                f"use one of: {', '.join(allowed)}",
                ("evaluation", "dataset", "path"),
            )
        )
    for i, data_file in enumerate(sub.evaluation.dataset.data_files or []):
        pure = PurePosixPath(data_file)
        if pure.is_absolute() or ".." in pure.parts or "\\" in data_file:
            errors.append(
                doc.error(
                    f"data file {data_file!r} must be a path inside the repository (no '..')",
                    ("evaluation", "dataset", "data_files", i),
                )
            )
        elif _leaves_repository(data_file, repo_root):
            errors.append(
                doc.error(
                    f"data file {data_file!r} {_LINK_OUTSIDE}",
                    ("evaluation", "dataset", "data_files", i),
                )
            )
    problem = dataset_path_problem(sub.evaluation.dataset.path, repo_root, policy)
    if problem:
        errors.append(doc.error(problem, ("evaluation", "dataset", "path")))
    if sub.evaluation.dataset.path in LOCAL_BUILDERS and not sub.evaluation.dataset.data_files:
        errors.append(
            doc.error(
                f"a local {sub.evaluation.dataset.path} dataset needs data_files",
                ("evaluation", "dataset"),
            )
        )
    possible = TASK_METRICS[task]
    if not sub.evaluation.metrics:
        sub.evaluation.metrics = list(DEFAULT_METRICS[task])
    for i, metric in enumerate(sub.evaluation.metrics):
        resolved = resolve_metric(metric, task)
        if resolved is not None and resolved != metric:  # 'F1', 'BLEU': say how it was read
            sub.evaluation.metrics[i] = resolved
            where = f"evaluation.metrics[{i}]"
            loaded.conversions.append(Conversion(field=where, written=None, metric=resolved))
        elif metric not in possible:
            errors.append(
                doc.error(
                    f"metric {metric!r} is not computed for {task}; "
                    f"choose from {', '.join(possible)}",
                    ("evaluation", "metrics", i),
                )
            )
    # Left out, the input stays None: the runner uses the task's default, shortened to the
    # model's maximum length when that is shorter (the student did not choose it).
    if sub.benchmark.input is not None:
        problem = input_shape_problem(task, sub.benchmark.input.given_shape())
        if problem:
            errors.append(doc.error(problem, ("benchmark", "input")))
    for metric, value in sub.reported.quality.items():
        path = ("reported", "quality", metric)
        info = METRICS.get(metric)
        if metric not in possible or info is None:
            hint = difflib.get_close_matches(metric, possible, n=1)
            errors.append(
                doc.error(
                    f"quality metric {metric!r} is not computed for {task}"
                    + (f"; did you mean {hint[0]!r}?" if hint else f"; use {', '.join(possible)}"),
                    path,
                    key=True,
                )
            )
            continue
        if value < info.minimum or (info.maximum is not None and value > info.maximum):
            if info.kind is MetricKind.FRACTION and value <= 100:
                fix = f'; it is a fraction: write {value / 100:g} or "{value:g}%"'
            else:
                top = "∞" if info.maximum is None else f"{info.maximum:g}"
                fix = f"; valid range is {info.minimum:g}..{top}"
            errors.append(doc.error(f"{metric} = {value:g} is out of range{fix}", path))
    if sub.method.baseline == loaded.id:
        errors.append(doc.error("a submission cannot be its own baseline", ("method", "baseline")))
    revision = sub.model.revision
    is_local = is_local_model(sub.model.id, repo_root)
    if is_local and _leaves_repository(sub.model.id, repo_root):
        errors.append(doc.error(f"model.id {sub.model.id!r} {_LINK_OUTSIDE}", ("model", "id")))
    elif is_local:
        shown = PurePosixPath(sub.model.id.removeprefix("./")).as_posix()
        problem = task_model_problem(task, repo_root / sub.model.id, shown)
        if problem:
            errors.append(doc.error(problem, ("model", "task")))
    if (
        not is_local
        and (revision is None or not is_commit_sha(revision))
        and not (revision and is_placeholder(revision))
    ):
        loaded.warnings.append(
            doc.error(
                "model.revision is not pinned to a 40-character commit sha; the hub repo can "
                "change under the result",
                ("model", "revision") if revision else ("model",),
            )
        )
    errors.extend(_check_recipe(loaded))
    inside = is_local and not _leaves_repository(sub.model.id, repo_root)
    model_dir = repo_root / sub.model.id if inside else None
    fill_normalizer(sub, policy)
    for message, at in language_problems(sub, model_dir) + data_file_problems(sub, repo_root):
        errors.append(doc.error(message, at))
    errors.extend(_check_runtime(loaded))
    return errors


_LINK_OUTSIDE = (
    "resolves outside the repository (through a symbolic link); commit the files themselves "
    "instead of a link"
)
_GLOB_CHARS = re.compile(r"[*?\[]")


_HUB_DATASET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_DATASET_FIX = (
    "use a hub dataset id 'org/name', or json / csv / parquet / text with data_files inside "
    "the repository"
)


def dataset_path_problem(path: str, repo_root: Path, policy: Policy) -> str | None:
    """Why ``evaluation.dataset.path`` could make ``load_dataset`` read unchecked files.

    ``load_dataset`` treats a name as a local folder when one exists relative to the working
    directory, and a bare name may be a loader built into ``datasets`` (``fasta``,
    ``conll``…) that reads files it finds: neither is confined nor fingerprinted. Only the
    four file loaders with ``data_files`` or a strict ``org/name`` hub id pass."""
    if path in LOCAL_BUILDERS:
        return None
    if not _HUB_DATASET_ID.fullmatch(path) or ".." in path:
        return (
            f"evaluation.dataset.path {path!r} is not a hub dataset id ('org/name'); {_DATASET_FIX}"
        )
    org = path.split("/")[0]
    root = repo_root.resolve()
    if org == policy.submissions_dir or (root / org).exists() or (root / org).is_symlink():
        return (
            f"evaluation.dataset.path {path!r} names a folder of the repository, which would "
            f"be read unchecked; {_DATASET_FIX}"
        )
    return None


def _leaves_repository(relative: str, repo_root: Path) -> bool:
    """Whether an existing repository path (or a file a glob matches) resolves outside the
    repository. The measuring child refuses such paths too; checking here makes ``mcval
    check`` say so in seconds and keeps the parent from hashing files outside the repo."""
    root = repo_root.resolve()
    candidates = list(root.glob(relative)) if _GLOB_CHARS.search(relative) else [root / relative]
    for candidate in candidates:
        if not (candidate.exists() or candidate.is_symlink()):
            continue
        resolved = candidate.resolve()
        if resolved != root and not resolved.is_relative_to(root):
            return True
    return False


def _check_recipe(loaded: LoadedSubmission) -> list[InputError]:
    """Recipe step names and parameters, validated without importing torch."""
    if not loaded.submission.method.recipe:
        return []
    from mcval.models.recipe_params import recipe_errors

    doc = loaded.document
    recipe, runtime = loaded.submission.method.recipe, loaded.submission.model.runtime
    return [
        doc.error(message, ("method", "recipe", index))
        for index, message in recipe_errors(recipe, runtime)
    ]


def _check_runtime(loaded: LoadedSubmission) -> list[InputError]:
    """The runtime supports the task, the input shape, the library and ``model.file``."""
    from mcval.submission.runtime_rules import runtime_problems

    doc = loaded.document
    return [doc.error(message, field) for field, message in runtime_problems(loaded.submission)]
