#!/usr/bin/env bash
# Runs the whole test suite with the given interpreter. pytest's exit code 5 (no tests collected) is a
# failure here: the suite must always contain real tests.
set -uo pipefail
py=${1:-.venv/bin/python}
"$py" -m pytest "${@:2}"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests - the suite must never be empty" >&2
  exit 1
fi
exit "$rc"
