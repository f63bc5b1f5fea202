"""``mcval ci <step>``: the steps of the GitHub Actions workflows, one module per step.

- ``actions``: every read and write of the Actions environment (``GITHUB_*`` variables,
  step outputs, the step summary, workflow commands, untrusted text in the log).
- ``rules``: the pull-request rules that need no network (allowed paths, team ownership,
  the sticky comment's body).
- ``branches``: the course branches the bot serves (``[github] branches``) and the PR
  title convention, also without a network.
- ``plan`` (``ci changed``), ``fetch``, ``report``, ``comment``, ``status``, ``publish``:
  one plain function per step, typed keyword arguments, no argparse (``mcval.cli`` holds
  the ``mcval ci`` flags and calls them).

The package stays light (no PyGithub, no torch at import): ``mcval.github`` is imported
only by the steps that talk to GitHub.
"""
