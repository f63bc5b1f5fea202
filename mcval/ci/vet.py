"""What the publish job accepts from the GPU runner's ``results/``: records, nothing else.

Why: the publish job's GPU runner re-measures merged submissions (hub models may be
unpinned, so a checkpoint can change after review) and the next job holds
``contents: write``. Whatever that runner leaves in ``results/`` is as untrusted as a
measuring job's artifact: a forged record for another team, a shell script, a workflow
file in a sub-folder, a huge blob. Only ``results/<team>/<name>.json`` for a submission
that exists on the merged commit passes, re-validated as ``ci report`` validates
artifacts (strict JSON, size cap, schema, id and team equal to the path).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from mcval.ci.actions import annotation, log_safe, running_in_actions, write_step_summary
from mcval.ci.untrusted import MAX_RESULT_BYTES, load_untrusted_json
from mcval.errors import ExitCode, InputError
from mcval.policy import Policy, load_policy
from mcval.results import ResultRecord
from mcval.submission.schema import NAME_PATTERN

MAX_RECORD_BYTES = 256 * 1024
"""A real record is a few KiB (distributions included); 256 KiB leaves room, 1 MB does not."""
assert MAX_RECORD_BYTES <= MAX_RESULT_BYTES


@dataclass
class Vetted:
    """Accepted records (repository-relative path → bytes) and every refusal with its reason."""

    accepted: dict[str, bytes] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)


def _submission_file(repo: Path, policy: Policy, team: str, name: str) -> Path | None:
    folder = repo / policy.submissions_dir / team
    for suffix in (".yaml", ".yml"):
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def vet_record(repo: Path, policy: Policy, team: str, name: str, file: Path) -> str | None:
    """Why ``file`` (claimed to be ``results/<team>/<name>.json``) is refused, or None."""
    if not (re.fullmatch(NAME_PATTERN, team) and re.fullmatch(NAME_PATTERN, name)):
        return "team or file name has characters a submission id cannot have"
    if file.is_symlink() or not file.is_file():
        return "not a regular file"
    size = file.stat().st_size
    if size > MAX_RECORD_BYTES:
        return f"{size} bytes; a result record has at most {MAX_RECORD_BYTES}"
    source = _submission_file(repo, policy, team, name)
    if source is None:
        return f"no submission {policy.submissions_dir}/{team}/{name}.yaml on the merged commit"
    try:
        record = ResultRecord.model_validate(load_untrusted_json(file.read_bytes()))
    except (ValueError, ValidationError) as exc:
        return f"not a valid result record: {str(exc).splitlines()[0]}"
    if record.id != f"{team}/{name}" or record.team != team:
        return f"the record is for {record.id!r} (team {record.team!r}), not for {team}/{name}"
    return None


def vet_results(repo: Path, source: Path, policy: Policy) -> Vetted:
    """Every file under ``source`` (a results tree from a runner), accepted or refused."""
    vetted = Vetted()
    root = policy.results_dir.strip("/")
    if source.is_symlink() or not source.is_dir():
        return vetted
    for item in sorted(source.rglob("*")):
        if item.is_dir() and not item.is_symlink():
            continue
        parts = item.relative_to(source).parts
        shown = "/".join((root, *parts))
        if len(parts) != 2 or not parts[1].endswith(".json"):
            vetted.refused.append((shown, f"only {root}/<team>/<name>.json files are published"))
            continue
        reason = vet_record(repo, policy, parts[0], parts[1].removesuffix(".json"), item)
        if reason:
            vetted.refused.append((shown, reason))
        else:
            vetted.accepted[shown] = item.read_bytes()
    return vetted


def install(repo: Path, policy: Policy, vetted: Vetted) -> None:
    """Overlay the accepted records on the checkout's committed ``results/`` (reviewed on
    the default branch); nothing else from the runner reaches the working tree."""
    target = repo / policy.results_dir
    if target.is_symlink() or target.is_file():
        raise InputError(f"{policy.results_dir} in the checkout is not a directory", target)
    for relpath, data in vetted.accepted.items():
        path = repo / relpath
        if path.is_symlink():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def report_refused(vetted: Vetted) -> None:
    """Each refused file as one log line and a warning annotation (names are untrusted)."""
    for path, reason in vetted.refused:
        message = f"not published: {path}: {reason}"
        print(f"warning: {log_safe(message)}", file=sys.stderr)
        if running_in_actions():
            print(annotation("warning", message))


def run_accept_results(repo: Path, *, source: Path) -> ExitCode:
    """``mcval ci results --from DIR``: the runner's results tree, vetted, into ``results/``.

    Exit 0 with the refused files reported (a refused file never stops the valid rows);
    the table is regenerated afterwards from exactly what was accepted.
    """
    policy = load_policy(repo)
    if source.is_symlink() or not source.is_dir():
        raise InputError("the results artifact is not a directory", source)
    vetted = vet_results(repo, source, policy)
    install(repo, policy, vetted)
    report_refused(vetted)
    print(f"accepted {len(vetted.accepted)} result record(s), refused {len(vetted.refused)}")
    write_step_summary(
        f"mcval accepted {len(vetted.accepted)} result record(s) from the runner and refused "
        f"{len(vetted.refused)}."
    )
    return ExitCode.OK
