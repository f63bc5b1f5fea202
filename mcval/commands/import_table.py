"""``mcval import-table README.md``: a hand-written results table → submission files.

The reading and writing is ``mcval.importer``'s; this command finds the repository and
the policy, runs it and prints the report.
"""

from __future__ import annotations

from pathlib import Path

from mcval.errors import ExitCode


def import_table(
    readme: Path,
    *,
    out: Path | None = None,
    team_map: Path | None = None,
    default_team: str | None = None,
    force: bool = False,
    repo: Path | None = None,
) -> ExitCode:
    """Write one submission file per row of ``readme`` into ``out`` (default: the policy's
    submissions directory); ``team_map`` is a YAML 'model id: team' file, ``force``
    overwrites existing files. ``FAIL`` when files were written but some cells could not
    be converted (each is listed), ``OK`` when every cell converted."""
    from mcval import importer
    from mcval.policy import load_policy
    from mcval.submission.check import find_repo_root

    repo_root = repo if repo is not None else find_repo_root(Path.cwd())
    policy = load_policy(repo_root)
    report = importer.import_table(
        readme,
        out if out is not None else repo_root / policy.submissions_dir,
        policy,
        importer.load_team_map(team_map) if team_map is not None else {},
        default_team,
        force=force,
    )
    importer.print_report(report)
    return ExitCode.FAIL if report.issues else ExitCode.OK
