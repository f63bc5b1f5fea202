"""The repository's policy: one ``mcval.toml`` at the root, maintainers' only knob.

Tolerances, allowed tasks and datasets, measurement protocol and limits, table layout and
the paths a pull request may touch. Every default lives here, in code, so a repository
without ``mcval.toml`` behaves exactly as documented; the file only overrides.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcval.errors import InputError, InputErrors
from mcval.figures import FigureKey, Language
from mcval.metrics import TASKS, Normalizer, Task

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

POLICY_FILE = "mcval.toml"
DEFAULT_HEADING = "Таблица сравнения методов компрессии моделей"

TableColumn = Literal["model", "team", "method", FigureKey, "quality"]
"""The README table's columns: the text ones, every figure, then quality."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Tolerance(_Section):
    """How far a reported value may be from the measured one; either bound passes."""

    relative: Annotated[float, Field(ge=0)] | None = None
    absolute: Annotated[float, Field(ge=0)] | None = None


def _rel(value: float) -> Tolerance:
    return Tolerance(relative=value)


def _abs(value: float) -> Tolerance:
    return Tolerance(absolute=value)


class Tolerances(_Section):
    """Strict for size and quality (hardware-independent); latency/memory only on same hardware."""

    weights_mb: Tolerance = Field(
        # 0.01 MB absolute as well: the table shows two decimals, so a tiny model's size
        # copied from it must not fail on rounding alone.
        default_factory=lambda: Tolerance(relative=0.01, absolute=0.01)
    )
    latency_ms: Tolerance = Field(default_factory=lambda: _rel(0.15))
    memory_mb: Tolerance = Field(default_factory=lambda: _rel(0.15))
    implausible_factor: Annotated[float, Field(gt=1)] = Field(
        default=10.0,
        description="Latency/memory from other hardware is flagged only beyond this ratio.",
    )
    quality: dict[str, Tolerance] = Field(
        default_factory=lambda: {
            "accuracy": _abs(0.01),
            "macro_f1": _abs(0.01),
            "entity_f1": _abs(0.01),
            "entity_precision": _abs(0.01),
            "entity_recall": _abs(0.01),
            "top5_accuracy": _abs(0.01),
            "wer": _abs(0.01),
            "cer": _abs(0.01),
            "perplexity": _rel(0.02),
            "bleu": _abs(1.0),
            "chrf": _abs(1.0),
        }
    )


class MeasurePolicy(_Section):
    """The one latency/memory protocol every submission is measured with."""

    warmup_calls: Annotated[int, Field(ge=1)] = 3
    min_calls: Annotated[int, Field(ge=1)] = 10
    min_seconds: Annotated[float, Field(ge=0)] = 2.0
    max_seconds: Annotated[float, Field(gt=0)] = 60.0
    time_limit_s: Annotated[float, Field(gt=0)] = 1800.0
    memory_limit_mb: Annotated[int, Field(gt=0)] | None = None
    threads: Annotated[int, Field(gt=0)] | None = None
    max_download_gb: Annotated[float, Field(gt=0)] = 20.0
    default_samples: Annotated[int, Field(gt=0)] = 200
    fork_server: bool = Field(
        default=True,
        description="fork CPU measuring children from a server that imported torch and "
        "transformers once per run (Linux); false: a fresh interpreter per measurement",
    )
    max_other_load: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.10,
        description="share of the machine's CPU time other processes may use while the calls "
        "are timed; above it the window is disturbed and timed again",
    )
    max_spread: Annotated[float, Field(gt=1)] = Field(
        default=2.0, description="p90/p10 of the timed calls above which a window is disturbed"
    )
    stable_attempts: Annotated[int, Field(ge=1)] = Field(
        default=3, description="timed windows tried before a latency is marked unstable"
    )
    unstable_pause_s: Annotated[float, Field(ge=0)] = Field(
        default=2.0, description="pause before timing a disturbed window again"
    )
    hf_token: bool = Field(
        default=False,
        description="pass the runner's Hugging Face token to the measuring child (gated "
        "models such as LLaMA); false: the child sees no token at all",
    )
    normalizer: Normalizer = Field(
        default="basic",
        description="text normaliser of WER/CER when a submission sets no "
        "evaluation.normalizer: 'basic' (mcval's) or 'whisper-english' (Whisper's papers')",
    )


class LimitsPolicy(_Section):
    """Hard limits on what a pull request may bring."""

    max_submission_bytes: Annotated[int, Field(gt=0)] = 64 * 1024
    max_submissions_per_pr: Annotated[int, Field(gt=0)] = 20


class TablePolicy(_Section):
    """Where and how the README table is written."""

    readme: str = "README.md"
    heading: str = DEFAULT_HEADING
    language: Language = "ru"
    columns: list[TableColumn] = Field(
        default_factory=lambda: list(TableColumn.__args__)  # type: ignore[attr-defined]
    )
    plot: str = "results.svg"


class GithubPolicy(_Section):
    """What the bot is and who may change what."""

    bot_login: str = Field(
        default="github-actions[bot]",
        description="Login of the bot's comments (GET /user is 403 for the workflow token).",
    )
    allowed_paths: list[str] = Field(
        default_factory=lambda: ["submissions/**"],
        description="Glob patterns of the paths a pull request may touch.",
    )
    teams: dict[str, list[str]] = Field(
        default_factory=dict, description="Team → GitHub logins allowed to change its files."
    )
    ownership: Literal["teams", "off"] = Field(
        default="teams",
        description="'teams': a PR may change only its author's team directory ([github.teams] "
        "required, `ci changed` refuses to run without it); 'off': any author may change any "
        "team's files (say so explicitly).",
    )
    maintainers: list[str] = Field(
        default_factory=list,
        description="Logins that may change any team's files and files directly under "
        "submissions/ (never inferred from a PR's author association).",
    )
    maintainers_from_permissions: bool = Field(
        default=True,
        description="Also count as maintainers the logins whose repository role is admin or "
        "maintain (GitHub's collaborator-permission API).",
    )
    branches: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=lambda: ["main", "lesson-*"],
        min_length=1,
        description="Glob patterns of the base branches the bot serves (one table each); a "
        "pull request into another branch gets a neutral status, a push elsewhere is never "
        "published.",
    )
    title_pattern: str = Field(
        default="<team> HW-<n>",
        description="Expected pull-request title; <team> and <n> (the homework number, the "
        "first number in a branch's name) are compared and a mismatch is a warning.",
    )


class Policy(_Section):
    """The whole ``mcval.toml``; ``Policy()`` is the documented default policy."""

    submissions_dir: str = "submissions"
    results_dir: str = "results"
    allowed_tasks: list[Task] = Field(default_factory=lambda: list(TASKS))
    allowed_datasets: dict[Task, list[str]] = Field(
        default_factory=dict,
        description="Task → allowed dataset paths; a task not listed allows any dataset.",
    )
    tolerances: Tolerances = Field(default_factory=Tolerances)
    measure: MeasurePolicy = Field(default_factory=MeasurePolicy)
    limits: LimitsPolicy = Field(default_factory=LimitsPolicy)
    table: TablePolicy = Field(default_factory=TablePolicy)
    github: GithubPolicy = Field(default_factory=GithubPolicy)


def _toml_line(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Line of the key at ``loc`` in a TOML text (tomllib keeps no positions)."""
    tables = [str(p) for p in loc if isinstance(p, str)]
    lines = text.splitlines()
    for depth in range(len(tables), 0, -1):
        *section, key = tables[:depth]
        in_section = not section
        for number, line in enumerate(lines, start=1):
            stripped = line.strip()
            header = re.fullmatch(r"\[+\s*([^\]]+?)\s*\]+", stripped)
            if header:
                in_section = header.group(1).replace('"', "") == ".".join(section)
                continue
            if in_section and re.match(rf'"?{re.escape(key)}"?\s*=', stripped):
                return number
    return None


def load_policy(repo_root: Path) -> Policy:
    """Read ``mcval.toml`` from ``repo_root`` (defaults when absent); errors name the line."""
    path = repo_root / POLICY_FILE
    if not path.exists():
        return Policy()
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+), column (\d+)", str(exc))
        line, col = (int(match[1]), int(match[2])) if match else (None, None)
        raise InputError(
            f"invalid TOML: {str(exc).split(' (at')[0]}", POLICY_FILE, line, col
        ) from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = err["loc"]
            dotted = ".".join(str(p) for p in loc)
            message = f"{dotted}: {err['msg']}"
            if err["type"] == "extra_forbidden":
                parent = Policy
                for part in loc[:-1]:
                    field = parent.model_fields.get(str(part)) if isinstance(part, str) else None
                    annotation = field.annotation if field else None
                    parent = annotation if isinstance(annotation, type) else None
                    if parent is None:
                        break
                known = list(parent.model_fields) if parent else []
                hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
                message = f"unknown setting {dotted!r}" + (
                    f"; did you mean {hint[0]!r}?" if hint else ""
                )
            errors.append(InputError(message, POLICY_FILE, _toml_line(text, loc)))
        raise InputErrors(errors) from None
