"""The verified results store: ``results/<team>/<name>.json``, one file per submission.

Each record keeps the runner's figures with their distributions, the environment, the
verdict and a fingerprint of everything that affects the measurement. An unchanged
submission on an equivalent runner is not measured again: its fingerprint matches.
Writes are atomic (temporary file + rename) so a crash or a full disk never leaves
half a JSON file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from mcval import __version__
from mcval.errors import InputError
from mcval.policy import Policy
from mcval.runtimes import method_label
from mcval.submission.load import LoadedSubmission, is_local_model
from mcval.verdict import MeasuredFigures, Verdict, VerdictStatus

RECORD_VERSION = 2
"""2: a verdict row keeps its difference and tolerance as numbers (1: English text)."""
_HASH_CHUNK = 1 << 20


class RecordEnvironment(BaseModel):
    """The runner as the table footnote and the fingerprint see it."""

    summary: str = Field(description="one line, e.g. 'Intel Xeon 8480 · NVIDIA H100 · torch 2.13'")
    environment_class: str
    details: dict[str, Any] = Field(default_factory=dict, description="full Environment record")


class ResultRecord(BaseModel):
    """One submission's verified result, as stored in ``results/``."""

    record_version: int = RECORD_VERSION
    id: str
    team: str
    model_id: str
    task: str
    method_name: str
    runtime: str | None = Field(
        default=None, description="model.runtime when not PyTorch (e.g. 'onnxruntime')"
    )
    baseline: str | None
    submission_fingerprint: str
    fingerprint_inputs: dict[str, Any] = Field(default_factory=dict)
    measured_at: datetime
    mcval_version: str = __version__
    measured: MeasuredFigures
    environment: RecordEnvironment
    verdict: VerdictStatus
    report: Verdict
    measurement: dict[str, Any] = Field(
        default_factory=dict, description="the full Measurement: distributions, errors, details"
    )

    @property
    def method_label(self) -> str:
        """The "Метод" cell: the method name, with the runtime when it is not PyTorch
        (``INT8 dynamic · ONNX Runtime``)."""
        return method_label(self.method_name, self.runtime)

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """Read a version 1 record: its rows' difference and tolerance were English text.
        They are dropped, not parsed: a verdict is judged again whenever a record is reused,
        and the table reads only the measured figures."""
        if not isinstance(data, dict) or data.get("record_version", RECORD_VERSION) != 1:
            return data
        report = data.get("report")
        if isinstance(report, dict):
            metrics = [
                {**m, "delta": None, "tolerance": None} if isinstance(m, dict) else m
                for m in report.get("metrics", [])
            ]
            data = {**data, "report": {**report, "metrics": metrics}}
        return {**data, "record_version": RECORD_VERSION}


def _hash_file(path: Path, digest: Any) -> None:
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)


def _local_content_hash(root: Path, relative: str) -> str:
    """Hash of a repository file or directory tree (names and bytes), for local models/data."""
    target = (root / relative).resolve()
    digest = hashlib.sha256()
    if target.is_file():
        _hash_file(target, digest)
    elif target.is_dir():
        for file in sorted(p for p in target.rglob("*") if p.is_file()):
            digest.update(file.relative_to(target).as_posix().encode() + b"\0")
            _hash_file(file, digest)
    else:
        return "missing"
    return digest.hexdigest()


def fingerprint_inputs(
    loaded: LoadedSubmission, repo_root: Path, policy: Policy, environment_class: str
) -> dict[str, Any]:
    """Everything that changes what the runner would measure (not the reported numbers)."""
    sub = loaded.submission
    measured_part = sub.model_dump(mode="json", by_alias=True, exclude={"reported"})
    local: dict[str, str] = {}
    if is_local_model(sub.model.id, repo_root):
        local[sub.model.id] = _local_content_hash(repo_root, sub.model.id)
    for data_file in sub.evaluation.dataset.data_files or []:
        local[data_file] = _local_content_hash(repo_root, data_file)
    return {
        "submission": measured_part,
        "local_files": local,
        "measure_policy": policy.measure.model_dump(mode="json"),
        "environment_class": environment_class,
        "mcval_version": __version__,
    }


def fingerprint(inputs: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``fingerprint_inputs``."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_path(results_dir: Path, submission_id: str) -> Path:
    """``results/<team>/<name>.json``; ids are validated names, so this stays inside."""
    team, name = submission_id.split("/", 1)
    return results_dir / team / f"{name}.json"


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and rename: all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_record(results_dir: Path, record: ResultRecord) -> Path:
    """Store a record; the JSON is stable (sorted keys) so unchanged results diff clean."""
    path = record_path(results_dir, record.id)
    payload = record.model_dump(mode="json")
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return path


def load_record(path: Path) -> ResultRecord:
    """Read and validate one record (records are data from a previous run: re-validated)."""
    try:
        return ResultRecord.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"not a valid mcval result ({where}: {first['msg']})", path) from None
    except OSError as exc:
        raise InputError(f"cannot read the result: {exc.strerror}", path) from None


def find_record(results_dir: Path, submission_id: str) -> ResultRecord | None:
    """The stored record of a submission, or None (a corrupt file counts as none)."""
    path = record_path(results_dir, submission_id)
    if not path.exists():
        return None
    try:
        return load_record(path)
    except InputError:
        return None


def load_all(results_dir: Path) -> list[ResultRecord]:
    """Every valid record under ``results_dir``, sorted by id."""
    records = []
    for path in sorted(results_dir.glob("*/*.json")):
        with contextlib.suppress(InputError):
            records.append(load_record(path))
    return sorted(records, key=lambda r: r.id)
