"""``mcval table``: regenerate the README table and the plot from submissions/ + results/.

The rows and the plot are drawn by ``mcval.render``; this command picks the records, reads
and writes the files (atomically, under the checkout lock) and reports what changed.

Only results with a passing verdict whose submission file still exists are verified rows
(a deleted submission takes its row with it even if its result file stays behind). A
submission without a passing result (just imported by ``mcval import-table``, or not
measured yet) is shown in a second table, "reported, not verified", with its team's own
numbers (:mod:`mcval.render.pending`); a file that is not valid cannot be shown and is
named on stderr.

**Rows are never dropped silently.** When the table to be replaced is a hand-written one
(no mcval marker) and the new block would have fewer rows, nothing is written: exit 2 with
both counts, unless ``--force``. Replacing mcval's own table with fewer rows (a submission
deleted in a reviewed pull request, as on merge) goes ahead with a warning on stderr: the
merge workflow must not stop on a deliberate deletion, and the rows it drops are in git.

With ``--check`` nothing is written: the exit code is 1 when README.md or the plot would
change (CI uses it to catch a hand-edited or stale table), and the table lines that would
change are printed as a unified diff.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mcval.errors import ExitCode, InputError, InputErrors, McvalError
from mcval.figures import FIGURE_KEYS
from mcval.lock import checkout_lock
from mcval.policy import Policy, load_policy
from mcval.render.pending import PendingRow
from mcval.render.plot import render_plot
from mcval.render.readme import (
    GENERATED_MARKER,
    TableNotFound,
    current_block,
    locate_table,
    parse_markdown,
    replace_table,
)
from mcval.render.table import render_block
from mcval.results import ResultRecord, load_all
from mcval.runtimes import method_label, runtime_or_none
from mcval.submission.check import collect_files, find_repo_root
from mcval.submission.load import load_submission, submission_id


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
    pending: int = 0
    """Rows shown as reported but not verified."""
    old_rows: int = 0
    """Body rows of the table(s) that are replaced."""
    old_is_ours: bool = False
    """Whether the replaced block is mcval's own (carries its marker)."""
    warnings: list[str] = field(default_factory=list)
    """Submission files that could not be shown (invalid), one line each."""

    @property
    def drops_rows(self) -> bool:
        """Whether the new block has fewer rows than the block it replaces."""
        return self.rows + self.pending < self.old_rows

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


def submission_files(repo_root: Path, policy: Policy) -> dict[str, Path]:
    """Id → path of the submission files present now (validity is checked where needed)."""
    directory = repo_root / policy.submissions_dir
    if not directory.is_dir():
        return {}
    files = {}
    for path in collect_files([directory]):
        try:
            files[submission_id(path, repo_root, policy)[0]] = path
        except InputError:
            continue
    return files


def submission_ids(repo_root: Path, policy: Policy) -> set[str]:
    """Ids of the submission files present now (validity is `mcval check`'s business)."""
    return set(submission_files(repo_root, policy))


def pending_rows(
    repo_root: Path,
    policy: Policy,
    files: dict[str, Path],
    records: Sequence[ResultRecord],
) -> tuple[list[PendingRow], list[str]]:
    """The submissions without a passing result, with their reported numbers, and one
    warning line per file that is not valid (it cannot be shown)."""
    by_id = {r.id: r for r in records}
    rows, warnings = [], []
    for sub_id, path in sorted(files.items()):
        record = by_id.get(sub_id)
        if record is not None and record.verdict == "pass":
            continue
        try:
            loaded = load_submission(path, repo_root, policy)
        except (InputError, InputErrors) as exc:
            errors = exc.errors if isinstance(exc, InputErrors) else [exc]
            relative = path.relative_to(repo_root).as_posix()
            warnings.append(
                f"{errors[0]}: not shown in the table ({len(errors)} problem(s); "
                f"`mcval check {relative}` lists them)"
            )
            continue
        sub = loaded.submission
        rows.append(
            PendingRow(
                id=sub_id,
                team=sub.team,
                model_id=sub.model.id,
                method_name=method_label(sub.method.name, runtime_or_none(sub.model.runtime)),
                baseline=sub.method.baseline,
                reported={key: getattr(sub.reported, key) for key in FIGURE_KEYS},
                quality=dict(sub.reported.quality),
                status="not_measured" if record is None else record.verdict,
            )
        )
    return rows, warnings


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
    files = submission_files(repo_root, policy)
    all_records = load_all(results)
    records = table_records(all_records, set(files))
    pending, warnings = pending_rows(repo_root, policy, files, all_records)
    block = render_block(records, policy, plot_link(readme_path, plot_path), pending)
    old_text = _read_text(readme_path)
    try:
        new_text = replace_table(old_text, policy.table.heading, block)
        old_rows, old_is_ours = replaced_rows(old_text, policy.table.heading)
    except TableNotFound as exc:
        raise TableNotFound(exc.message, readme_path) from None
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
        pending=len(pending),
        old_rows=old_rows,
        old_is_ours=old_is_ours,
        warnings=warnings,
    )


def replaced_rows(text: str, heading: str) -> tuple[int, bool]:
    """How many body rows the tables that :func:`replace_table` would replace have, and
    whether that block is mcval's own (it carries :data:`GENERATED_MARKER`)."""
    parsed = parse_markdown(text)
    where = locate_table(parsed, heading)
    rows = sum(
        sum(1 for line in block.token["row_lines"] if line.strip())
        for block in parsed.blocks
        if block.type == "table" and where.start <= block.start < where.end
    )
    ours = any(GENERATED_MARKER in line for line in parsed.lines[where.start : where.end])
    return rows, ours


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
    force: bool = False,
) -> TableUpdate:
    """Regenerate the README table and the plot; writes the files that change unless
    ``write`` is false (``--check``). Returns what was (or would be) written.

    Raises :class:`RowsWouldBeLost` (nothing written) when a hand-written table would be
    replaced by fewer rows, unless ``force``."""
    if not write:
        return compute_update(repo_root, policy, readme, results_dir)
    # Read, compute and write as one unit: a run that read results/ before another run's
    # new row must not write its older table after that run (mcval.lock).
    with checkout_lock(repo_root):
        update = compute_update(repo_root, policy, readme, results_dir)
        if update.drops_rows and not update.old_is_ours and not force:
            raise RowsWouldBeLost(update)
        write_update(update)
    return update


class RowsWouldBeLost(InputError):
    """A hand-written table would be replaced by a block with fewer rows."""

    def __init__(self, update: TableUpdate) -> None:
        new = update.rows + update.pending
        super().__init__(
            f"the hand-written table under the [table] heading has {update.old_rows} rows and "
            f"the regenerated one would have {new} ({update.rows} verified, {update.pending} "
            f"reported but not verified): {update.old_rows - new} would be lost; import them "
            "first (`mcval import-table`, then fix the files `mcval check` rejects) or rerun "
            "with --force to replace the table anyway",
            update.readme_path,
        )


def _drop_warning(update: TableUpdate) -> str:
    new = update.rows + update.pending
    return (
        f"warning: {update.readme_path}: the table goes from {update.old_rows} to {new} rows "
        f"({update.old_rows - new} fewer)"
    )


def table(
    *,
    readme: Path | None = None,
    results: Path | None = None,
    check: bool = False,
    repo: Path | None = None,
    force: bool = False,
) -> ExitCode:
    """Regenerate the table (``readme``: default the policy's ``table.readme``) from
    ``results`` (default: the policy's). ``check``: write nothing, print the diff and
    return ``FAIL`` when README.md or the plot would change (CI catches a stale table).
    ``force``: replace a hand-written table even by fewer rows.
    Paths are relative to the current directory, like every other mcval path argument."""
    repo_root = repo if repo is not None else find_repo_root(Path.cwd())
    policy = load_policy(repo_root)
    update = regenerate(repo_root, policy, readme, results, write=not check, force=force)
    for warning in update.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if update.drops_rows:
        print(_drop_warning(update), file=sys.stderr)
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
    rows = f"{update.rows} rows"
    if update.pending:
        rows += f", {update.pending} reported but not verified"
    if update.readme_changed:
        print(f"{update.readme_path}: table regenerated ({rows})")
    else:
        print(f"{update.readme_path}: unchanged ({rows})")
    if update.plot_changed:
        print(f"{update.plot_path}: plot regenerated")
    return ExitCode.OK


__all__ = [
    "RowsWouldBeLost",
    "TableUpdate",
    "compute_update",
    "pending_rows",
    "plot_link",
    "regenerate",
    "submission_files",
    "submission_ids",
    "table",
    "table_records",
    "write_update",
]
