"""``mcval ci <step>``: the steps of the GitHub Actions workflows, one module per step.

- ``actions``: every read and write of the Actions environment (``GITHUB_*`` variables,
  step outputs, the step summary, workflow commands, untrusted text in the log).
- ``rules``: the pull-request rules that need no network (allowed paths, team ownership,
  the sticky comment's body).
- ``plan`` (``ci changed``), ``fetch``, ``report``, ``comment``, ``status``, ``publish``:
  one plain function per step, typed keyword arguments, no argparse.
- ``cli``: the ``mcval ci`` argparse tree, the only place that knows the flags.

The package stays light (no PyGithub, no torch at import): ``mcval.cli`` builds its parser
from it, and ``mcval.github`` is imported only by the steps that talk to GitHub.
"""
