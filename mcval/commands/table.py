"""``mcval table``: regenerate the README table and the plot from submissions/ + results/.

The rows and the plot are drawn by ``mcval.render``; this command picks the records, reads
and writes the files (atomically, under the checkout lock) and reports what changed.

Only results with a passing verdict whose submission file still exists are shown (a
deleted submission takes its row with it even if its result file stays behind). With
``--check`` nothing is written: the exit code is 1 when README.md or the plot would
change (CI uses it to catch a hand-edited or stale table), and the table lines that would
change are printed as a unified diff.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mcval.errors import ExitCode, InputError, McvalError
from mcval.lock import checkout_lock
from mcval.policy import Policy, load_policy
from mcval.render.plot import render_plot
from mcval.render.readme import current_block, replace_table
from mcval.render.table import render_block
from mcval.results import ResultRecord, load_all
from mcval.submission.check import collect_files, find_repo_root
from mcval.submission.load import submission_id


@dataclass
class TableUpdate:
    """What regenerating would produce, next to what is on disk now."""

    readme_path: Path
    plot_path: Path
    old_readme: str
    new_readme: str
    old_plot: bytes | None
    new_plot: bytes
    old_block: list[str]
    new_block: list[str]
    rows: int

    @property
    def readme_changed(self) -> bool:
        return self.old_readme != self.new_readme

    @property
    def plot_changed(self) -> bool:
        return self.old_plot != self.new_plot

    def diff(self) -> str:
        """Unified diff of the table block (the only lines of README.md that change)."""
        name = self.readme_path.name
        return "".join(
            line if line.endswith("\n") else line + "\n"
            for line in difflib.unified_diff(
                self.old_block,
                self.new_block,
                f"{name} (table now)",
                f"{name} (regenerated)",
                lineterm="",
            )
        )


def submission_ids(repo_root: Path, policy: Policy) -> set[str]:
    """Ids of the submission files present now (validity is `mcval check`'s business)."""
    directory = repo_root / policy.submissions_dir
    if not directory.is_dir():
        return set()
    ids = set()
    for path in collect_files([directory]):
        try:
            ids.add(submission_id(path, repo_root, policy)[0])
        except InputError:
            continue
    return ids


def table_records(records: Sequence[ResultRecord], present: set[str]) -> list[ResultRecord]:
    """The rows of the table: passing results of submissions that still exist."""
    return [r for r in records if r.verdict == "pass" and r.id in present]


def plot_link(readme_path: Path, plot_path: Path) -> str:
    """The plot's path relative to the README's directory, with forward slashes."""
    relative = os.path.relpath(plot_path.resolve(), readme_path.resolve().parent)
    return PurePosixPath(*Path(relative).parts).as_posix()


def _read_text(path: Path) -> str:
    """The file's text exactly (no newline translation); empty when it does not exist."""
    if not path.exists():
        return ""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", path) from None


def compute_update(
    repo_root: Path,
    policy: Policy,
    readme: Path | None = None,
    results_dir: Path | None = None,
) -> TableUpdate:
    """Compute the new README text and plot without writing anything."""
    readme_path = readme if readme is not None else repo_root / policy.table.readme
    results = results_dir if results_dir is not None else repo_root / policy.results_dir
    plot_path = repo_root / policy.table.plot
    records = table_records(load_all(results), submission_ids(repo_root, policy))
    block = render_block(records, policy, plot_link(readme_path, plot_path))
    old_text = _read_text(readme_path)
    new_text = replace_table(old_text, policy.table.heading, block)
    return TableUpdate(
        readme_path=readme_path,
        plot_path=plot_path,
        old_readme=old_text,
        new_readme=new_text,
        old_plot=plot_path.read_bytes() if plot_path.exists() else None,
        new_plot=render_plot(records, policy),
        old_block=current_block(old_text, policy.table.heading),
        new_block=current_block(new_text, policy.table.heading),
        rows=len(records),
    )


def _write_bytes(path: Path, data: bytes) -> None:
    """Atomic write of exact bytes (temporary file + rename); a failure (a full disk) names
    the file, which is left as it was, and leaves no temporary file behind."""
    import tempfile

    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise McvalError(
                f"cannot write {path}: {exc.strerror or exc}; it is left as it was"
            ) from None
        raise


def write_update(update: TableUpdate) -> list[Path]:
    """Write what changed (README and/or plot), atomically; the paths written."""
    written = []
    if update.readme_changed:
        _write_bytes(update.readme_path, update.new_readme.encode("utf-8"))
        written.append(update.readme_path)
    if update.plot_changed:
        _write_bytes(update.plot_path, update.new_plot)
        written.append(update.plot_path)
    return written


def regenerate(
    repo_root: Path,
    policy: Policy,
    readme: Path | None = None,
    results_dir: Path | None = None,
    *,
    write: bool = True,
) -> TableUpdate:
    """Regenerate the README table and the plot; writes the files that change unless
    ``write`` is false (``--check``). Returns what was (or would be) written."""
    if not write:
        return compute_update(repo_root, policy, readme, results_dir)
    # Read, compute and write as one unit: a run that read results/ before another run's
    # new row must not write its older table after that run (mcval.lock).
    with checkout_lock(repo_root):
        update = compute_update(repo_root, policy, readme, results_dir)
        write_update(update)
    return update


def table(
    *,
    readme: Path | None = None,
    results: Path | None = None,
    check: bool = False,
    repo: Path | None = None,
) -> ExitCode:
    """Regenerate the table (``readme``: default the policy's ``table.readme``) from
    ``results`` (default: the policy's). ``check``: write nothing, print the diff and
    return ``FAIL`` when README.md or the plot would change (CI catches a stale table).
    Paths are relative to the current directory, like every other mcval path argument."""
    repo_root = repo if repo is not None else find_repo_root(Path.cwd())
    policy = load_policy(repo_root)
    update = regenerate(repo_root, policy, readme, results, write=not check)
    if check:
        stale = False
        if update.readme_changed:
            stale = True
            print(f"{update.readme_path}: the table is out of date; run `mcval table`")
            sys.stdout.write(update.diff())
        if update.plot_changed:
            stale = True
            print(f"{update.plot_path}: the plot is out of date; run `mcval table`")
        if not stale:
            print(
                f"{update.readme_path} and {update.plot_path} are up to date ({update.rows} rows)"
            )
        return ExitCode.FAIL if stale else ExitCode.OK
    if update.readme_changed:
        print(f"{update.readme_path}: table regenerated ({update.rows} rows)")
    else:
        print(f"{update.readme_path}: unchanged ({update.rows} rows)")
    if update.plot_changed:
        print(f"{update.plot_path}: plot regenerated")
    return ExitCode.OK


__all__ = [
    "TableUpdate",
    "compute_update",
    "plot_link",
    "regenerate",
    "submission_ids",
    "table",
    "table_records",
    "write_update",
]
