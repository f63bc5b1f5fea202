"""``mcval ci comment``: create or edit the bot's one comment on the pull request."""

from __future__ import annotations

from pathlib import Path

from mcval.ci.actions import Connect, write_step_summary
from mcval.ci.plan import resolve_pr_number
from mcval.ci.rules import comment_body
from mcval.ci.untrusted import MAX_MARKDOWN_BYTES, read_text
from mcval.errors import ExitCode
from mcval.policy import load_policy


def run_comment(repo: Path, *, connect: Connect, markdown: Path, pr: int | None = None) -> ExitCode:
    """Create or edit the one mcval comment on the PR; the same text goes to the job summary.

    The Markdown file was written by the report job from re-validated records, but it is
    still read bounded and shaped by ``comment_body`` (one marker, no mentions, size).
    """
    policy = load_policy(repo)
    text = read_text(markdown, MAX_MARKDOWN_BYTES, "the comment Markdown")
    client = connect(policy)
    number = resolve_pr_number(pr)
    result = client.upsert_comment(number, text)
    write_step_summary(comment_body(text))
    print(f"{'created' if result.created else 'updated'} comment {result.url}")
    return ExitCode.OK
