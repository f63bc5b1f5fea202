#!/usr/bin/env bash
# Lints .github/workflows (and dependabot.yml) with zizmor in offline mode; any finding
# fails (exit != 0).
# An inline `# zizmor: ignore[rule]` must carry a one-line justification after `--`.
set -euo pipefail
cd "$(dirname "$0")/.."

zizmor_bin="${ZIZMOR:-}"
if [ -z "$zizmor_bin" ]; then
  if [ -x .venv/bin/zizmor ]; then zizmor_bin=.venv/bin/zizmor; else zizmor_bin=zizmor; fi
fi

# Every ignore comment must say why.
if grep -rnE 'zizmor: *ignore\[[^]]*\] *$' .github/workflows; then
  echo "an inline zizmor ignore above has no justification (add: -- <reason>)" >&2
  exit 1
fi

"$zizmor_bin" --offline --no-progress .github/workflows .github/dependabot.yml 2>/dev/null || status=$?
status="${status:-0}"
if [ "$status" -ne 0 ]; then
  echo "zizmor reported findings (exit $status)" >&2
  exit "$status"
fi
echo "zizmor: no findings in .github/workflows"
